"""Gymnasium 1.4's classic-control environments (CartPole-v1, Acrobot-v1, MountainCar-v0,
Pendulum-v1) as pure JAX functions, with gymnax's functional API:

    obs, state = env.reset(key, params)
    obs, state, reward, terminated, truncated, info = env.step(key, state, action, params)

The dynamics, rewards, termination and time limits are Gymnasium's, line for line, in float32
(Gymnasium integrates in float64; one step from the same state agrees to ~1e-6). Reset states are
drawn from the same uniform ranges, from a JAX key instead of NumPy's generator.

An environment object holds no data (a frozen dataclass without fields), so it is hashable and
can be closed over inside `jit`; everything that varies lives in `params` (a pytree of the physics
constants and `max_steps_in_episode`) and `state` (a pytree with a step counter `time`). Every
function is jit- and vmap-able: no Python branch looks at a traced value.
"""
from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
from flax import struct

from dlcore.envs.spaces import Box, Discrete


class Environment:
    """Shared reset/step logic. A subclass defines `name`, `discrete`, `num_actions`, `Params`,
    `reset_env(key, params) -> (obs, state)`, `get_obs(state) -> obs` and
    `transition(state, action, params) -> (state, reward, terminated)` (without the step count)."""

    name: str = ""
    discrete: bool = True
    Params: type = None

    @property
    def default_params(self):
        return self.Params()

    def reset(self, key: jax.Array, params=None):
        """A fresh episode: (obs [obs_dim] float32, state)."""
        return self.reset_env(key, self.default_params if params is None else params)

    def step_env(self, key: jax.Array, state, action, params):
        """One transition without auto-reset: (obs, state, reward, terminated, truncated).
        terminated is the natural end; truncated the time limit, reached when
        state.time >= max_steps_in_episode after this step (Gymnasium's TimeLimit); both can
        hold at once, as in Gymnasium."""
        del key  # the classic-control dynamics are deterministic
        new, reward, terminated = self.transition(state, action, params)
        new = new.replace(time=state.time + 1)
        truncated = new.time >= params.max_steps_in_episode
        return (self.get_obs(new), new, jnp.asarray(reward, jnp.float32),
                jnp.asarray(terminated, bool), jnp.asarray(truncated, bool))

    def step(self, key: jax.Array, state, action, params=None):
        """One transition, resetting when the episode ends.

        Returns (obs, state, reward, terminated, truncated, info). When terminated | truncated, obs
        and state are a fresh reset (drawn from `key`) and info["final_observation"] is
        the observation the transition reached, which a learner needs to bootstrap through a
        truncation. info also holds "terminated", "truncated" and gymnax's "discount"
        (0 at a natural end, else 1).
        """
        params = self.default_params if params is None else params
        # the dynamics are deterministic (step_env ignores its key), so the reset may take the
        # key as it is: one threefry fewer per environment step, measurable in a PPO rollout
        obs_st, state_st, reward, terminated, truncated = self.step_env(key, state, action, params)
        obs_re, state_re = self.reset_env(key, params)
        done = terminated | truncated
        state = jax.tree.map(lambda r, s: jnp.where(done, r, s), state_re, state_st)
        obs = jnp.where(done, obs_re, obs_st)
        info = {"final_observation": obs_st, "terminated": terminated, "truncated": truncated,
                "discount": 1.0 - terminated.astype(jnp.float32)}
        return obs, state, reward, terminated, truncated, info


# ------------------------------------------------------------------------------------ CartPole


@struct.dataclass
class CartPoleParams:
    gravity: float = 9.8
    masscart: float = 1.0
    masspole: float = 0.1
    length: float = 0.5  # half the pole's length
    force_mag: float = 10.0
    tau: float = 0.02  # seconds per step
    theta_threshold_radians: float = 12 * 2 * math.pi / 360
    x_threshold: float = 2.4
    max_steps_in_episode: int = 500


@struct.dataclass
class CartPoleState:
    x: jax.Array
    x_dot: jax.Array
    theta: jax.Array
    theta_dot: jax.Array
    time: jax.Array


@dataclasses.dataclass(frozen=True)
class CartPole(Environment):
    """Push the cart left (0) or right (1) to keep the pole up; +1 per step, including the step
    that ends the episode. obs = [x, x_dot, theta, theta_dot]."""

    name = "CartPole-v1"
    num_actions = 2
    Params = CartPoleParams

    def reset_env(self, key, params):
        s = jax.random.uniform(key, (4,), jnp.float32, -0.05, 0.05)
        state = CartPoleState(*s, time=jnp.zeros((), jnp.int32))
        return self.get_obs(state), state

    def get_obs(self, state):
        return jnp.stack([state.x, state.x_dot, state.theta, state.theta_dot]).astype(jnp.float32)

    def transition(self, state, action, p):
        total_mass = p.masspole + p.masscart
        polemass_length = p.masspole * p.length
        force = jnp.where(action == 1, p.force_mag, -p.force_mag)
        cos, sin = jnp.cos(state.theta), jnp.sin(state.theta)
        temp = (force + polemass_length * state.theta_dot ** 2 * sin) / total_mass
        thetaacc = (p.gravity * sin - cos * temp) / (
            p.length * (4.0 / 3.0 - p.masspole * cos ** 2 / total_mass))
        xacc = temp - polemass_length * thetaacc * cos / total_mass
        # Gymnasium's default "euler" integrator: positions advance with the old velocities
        new = state.replace(x=state.x + p.tau * state.x_dot, x_dot=state.x_dot + p.tau * xacc,
                            theta=state.theta + p.tau * state.theta_dot,
                            theta_dot=state.theta_dot + p.tau * thetaacc)
        terminated = ((new.x < -p.x_threshold) | (new.x > p.x_threshold)
                      | (new.theta < -p.theta_threshold_radians)
                      | (new.theta > p.theta_threshold_radians))
        return new, 1.0, terminated

    def observation_space(self, params=None):
        p = self.default_params if params is None else params
        high = jnp.array([p.x_threshold * 2, jnp.inf, p.theta_threshold_radians * 2, jnp.inf])
        return Box(-high, high, (4,), jnp.float32)

    def action_space(self, params=None):
        return Discrete(2)


# ------------------------------------------------------------------------------------- Acrobot


@struct.dataclass
class AcrobotParams:
    dt: float = 0.2
    link_length_1: float = 1.0
    link_mass_1: float = 1.0
    link_mass_2: float = 1.0
    link_com_pos_1: float = 0.5  # centre of mass of each link, from its joint
    link_com_pos_2: float = 0.5
    link_moi: float = 1.0  # moment of inertia, both links
    gravity: float = 9.8
    max_vel_1: float = 4 * math.pi
    max_vel_2: float = 9 * math.pi
    max_steps_in_episode: int = 500


@struct.dataclass
class AcrobotState:
    theta1: jax.Array
    theta2: jax.Array
    dtheta1: jax.Array
    dtheta2: jax.Array
    time: jax.Array


def _wrap(x, m, M):
    """Gymnasium's `wrap`: shift x by whole periods M - m into [m, M]; x already inside (M
    included) is left alone, which a plain modulo would not do."""
    diff = M - m
    x = jnp.where(x > M, x - diff * jnp.ceil((x - M) / diff), x)
    return jnp.where(x < m, x + diff * jnp.ceil((m - x) / diff), x)


@dataclasses.dataclass(frozen=True)
class Acrobot(Environment):
    """Torque -1, 0, +1 (actions 0, 1, 2) on the middle joint of a two-link chain to swing its tip
    above the bar; -1 per step, 0 on the step that reaches the goal. RK4 over dt = 0.2 with the
    "book" dynamics. obs = [cos t1, sin t1, cos t2, sin t2, dt1, dt2]."""

    name = "Acrobot-v1"
    num_actions = 3
    Params = AcrobotParams

    def reset_env(self, key, params):
        s = jax.random.uniform(key, (4,), jnp.float32, -0.1, 0.1)
        state = AcrobotState(*s, time=jnp.zeros((), jnp.int32))
        return self.get_obs(state), state

    def get_obs(self, state):
        return jnp.stack([jnp.cos(state.theta1), jnp.sin(state.theta1), jnp.cos(state.theta2),
                          jnp.sin(state.theta2), state.dtheta1, state.dtheta2]).astype(jnp.float32)

    def transition(self, state, action, p):
        torque = jnp.asarray(action, jnp.float32) - 1.0  # Gymnasium's [-1, 0, 1][action]
        s = jnp.stack([state.theta1, state.theta2, state.dtheta1, state.dtheta2])
        m1, m2, l1, lc1, lc2 = (p.link_mass_1, p.link_mass_2, p.link_length_1, p.link_com_pos_1,
                                p.link_com_pos_2)
        i1 = i2 = p.link_moi
        g = p.gravity

        def dsdt(s):
            theta1, theta2, dtheta1, dtheta2 = s
            d1 = (m1 * lc1 ** 2 + m2 * (l1 ** 2 + lc2 ** 2 + 2 * l1 * lc2 * jnp.cos(theta2))
                  + i1 + i2)
            d2 = m2 * (lc2 ** 2 + l1 * lc2 * jnp.cos(theta2)) + i2
            phi2 = m2 * lc2 * g * jnp.cos(theta1 + theta2 - jnp.pi / 2.0)
            phi1 = (-m2 * l1 * lc2 * dtheta2 ** 2 * jnp.sin(theta2)
                    - 2 * m2 * l1 * lc2 * dtheta2 * dtheta1 * jnp.sin(theta2)
                    + (m1 * lc1 + m2 * l1) * g * jnp.cos(theta1 - jnp.pi / 2) + phi2)
            ddtheta2 = ((torque + d2 / d1 * phi1 - m2 * l1 * lc2 * dtheta1 ** 2 * jnp.sin(theta2)
                         - phi2) / (m2 * lc2 ** 2 + i2 - d2 ** 2 / d1))
            ddtheta1 = -(d2 * ddtheta2 + phi1) / d1
            return jnp.stack([dtheta1, dtheta2, ddtheta1, ddtheta2])

        # one classical Runge-Kutta step over dt, the torque held constant (Gymnasium's `rk4`)
        dt = p.dt
        k1 = dsdt(s)
        k2 = dsdt(s + dt / 2.0 * k1)
        k3 = dsdt(s + dt / 2.0 * k2)
        k4 = dsdt(s + dt * k3)
        ns = s + dt / 6.0 * (k1 + 2 * k2 + 2 * k3 + k4)
        new = state.replace(theta1=_wrap(ns[0], -jnp.pi, jnp.pi),
                            theta2=_wrap(ns[1], -jnp.pi, jnp.pi),
                            dtheta1=jnp.clip(ns[2], -p.max_vel_1, p.max_vel_1),
                            dtheta2=jnp.clip(ns[3], -p.max_vel_2, p.max_vel_2))
        terminated = -jnp.cos(new.theta1) - jnp.cos(new.theta2 + new.theta1) > 1.0
        return new, jnp.where(terminated, 0.0, -1.0), terminated

    def observation_space(self, params=None):
        p = self.default_params if params is None else params
        high = jnp.array([1.0, 1.0, 1.0, 1.0, p.max_vel_1, p.max_vel_2])
        return Box(-high, high, (6,), jnp.float32)

    def action_space(self, params=None):
        return Discrete(3)


# --------------------------------------------------------------------------------- MountainCar


@struct.dataclass
class MountainCarParams:
    min_position: float = -1.2
    max_position: float = 0.6
    max_speed: float = 0.07
    goal_position: float = 0.5
    goal_velocity: float = 0.0
    force: float = 0.001
    gravity: float = 0.0025
    max_steps_in_episode: int = 200


@struct.dataclass
class MountainCarState:
    position: jax.Array
    velocity: jax.Array
    time: jax.Array


@dataclasses.dataclass(frozen=True)
class MountainCar(Environment):
    """Accelerate left (0), not at all (1) or right (2) to drive an underpowered car up the right
    hill (position >= 0.5); -1 per step. obs = [position, velocity]."""

    name = "MountainCar-v0"
    num_actions = 3
    Params = MountainCarParams

    def reset_env(self, key, params):
        state = MountainCarState(position=jax.random.uniform(key, (), jnp.float32, -0.6, -0.4),
                                 velocity=jnp.zeros((), jnp.float32),
                                 time=jnp.zeros((), jnp.int32))
        return self.get_obs(state), state

    def get_obs(self, state):
        return jnp.stack([state.position, state.velocity]).astype(jnp.float32)

    def transition(self, state, action, p):
        velocity = state.velocity + ((action - 1) * p.force
                                     + jnp.cos(3 * state.position) * (-p.gravity))
        velocity = jnp.clip(velocity, -p.max_speed, p.max_speed)
        position = jnp.clip(state.position + velocity, p.min_position, p.max_position)
        # the left wall is inelastic: the car stops there
        velocity = jnp.where((position == p.min_position) & (velocity < 0), 0.0, velocity)
        terminated = (position >= p.goal_position) & (velocity >= p.goal_velocity)
        new = state.replace(position=position, velocity=velocity.astype(state.velocity.dtype))
        return new, -1.0, terminated

    def observation_space(self, params=None):
        p = self.default_params if params is None else params
        return Box(jnp.array([p.min_position, -p.max_speed]),
                   jnp.array([p.max_position, p.max_speed]), (2,), jnp.float32)

    def action_space(self, params=None):
        return Discrete(3)


# ------------------------------------------------------------------------------------ Pendulum


@struct.dataclass
class PendulumParams:
    max_speed: float = 8.0
    max_torque: float = 2.0
    dt: float = 0.05
    g: float = 10.0
    m: float = 1.0
    l: float = 1.0  # noqa: E741 (Gymnasium's name)
    max_steps_in_episode: int = 200


@struct.dataclass
class PendulumState:
    theta: jax.Array  # not wrapped (as in Gymnasium); the cost normalises it
    theta_dot: jax.Array
    time: jax.Array


def angle_normalize(x):
    """x mapped into [-pi, pi)."""
    return ((x + jnp.pi) % (2 * jnp.pi)) - jnp.pi


@dataclasses.dataclass(frozen=True)
class Pendulum(Environment):
    """Swing a pendulum up and hold it there with a torque in [-2, 2] (action: shape (1,) or
    scalar, clipped); reward -(theta^2 + 0.1 theta_dot^2 + 0.001 u^2) with theta in [-pi, pi),
    never terminates, truncated at 200 steps. obs = [cos theta, sin theta, theta_dot]."""

    name = "Pendulum-v1"
    discrete = False
    num_actions = 1  # the action's dimension, as in gymnax
    Params = PendulumParams

    def reset_env(self, key, params):
        s = jax.random.uniform(key, (2,), jnp.float32, jnp.array([-jnp.pi, -1.0]),
                               jnp.array([jnp.pi, 1.0]))
        state = PendulumState(theta=s[0], theta_dot=s[1], time=jnp.zeros((), jnp.int32))
        return self.get_obs(state), state

    def get_obs(self, state):
        return jnp.stack([jnp.cos(state.theta), jnp.sin(state.theta),
                          state.theta_dot]).astype(jnp.float32)

    def transition(self, state, action, p):
        u = jnp.clip(jnp.asarray(action, jnp.float32).reshape(()), -p.max_torque, p.max_torque)
        th, thdot = state.theta, state.theta_dot
        costs = angle_normalize(th) ** 2 + 0.1 * thdot ** 2 + 0.001 * u ** 2
        newthdot = thdot + (3 * p.g / (2 * p.l) * jnp.sin(th) + 3.0 / (p.m * p.l ** 2) * u) * p.dt
        newthdot = jnp.clip(newthdot, -p.max_speed, p.max_speed)
        new = state.replace(theta=th + newthdot * p.dt, theta_dot=newthdot)
        return new, -costs, False

    def observation_space(self, params=None):
        p = self.default_params if params is None else params
        high = jnp.array([1.0, 1.0, p.max_speed])
        return Box(-high, high, (3,), jnp.float32)

    def action_space(self, params=None):
        p = self.default_params if params is None else params
        return Box(-p.max_torque, p.max_torque, (1,), jnp.float32)
