"""dlcore.envs: parity with Gymnasium, auto-reset semantics, jit/vmap, make() errors, pictures.

Compilation dominates the time, so each environment's batched `reset` and `step` are jitted once
(the `compiled` cache) and reused by every test."""
import functools
import sys
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dlcore.config import ConfigError
from dlcore.envs import NAMES, classic, make
from dlcore.envs.spaces import Box, Discrete

pytestmark = pytest.mark.timeout(120)

B = 8  # every test steps a batch of B environments: one compiled vmapped step serves them all


@functools.cache
def compiled(name):
    """(env, default params, jitted batched reset, jitted batched step) for `name`, built once
    per test session: reset(keys [B], params), step(keys [B], states, actions [B, ...], params)."""
    env, params = make(name)
    reset = jax.jit(jax.vmap(env.reset, in_axes=(0, None)))
    step = jax.jit(jax.vmap(env.step, in_axes=(0, 0, 0, None)))
    return env, params, reset, step


def keys(seed):
    return jax.random.split(jax.random.key(seed), B)


# The state as a flat vector, both ways: Gymnasium keeps it in `env.unwrapped.state`.
FIELDS = {"CartPole-v1": (classic.CartPoleState, ("x", "x_dot", "theta", "theta_dot")),
          "Acrobot-v1": (classic.AcrobotState, ("theta1", "theta2", "dtheta1", "dtheta2")),
          "MountainCar-v0": (classic.MountainCarState, ("position", "velocity")),
          "Pendulum-v1": (classic.PendulumState, ("theta", "theta_dot"))}

# Broad ranges of states, past every threshold, wall and clip, to check single steps from.
BROAD = {"CartPole-v1": [(-2.6, 2.6), (-3, 3), (-0.25, 0.25), (-3, 3)],
         "Acrobot-v1": [(-np.pi, np.pi), (-np.pi, np.pi), (-4 * np.pi, 4 * np.pi),
                        (-9 * np.pi, 9 * np.pi)],
         "MountainCar-v0": [(-1.2, 0.6), (-0.07, 0.07)],
         "Pendulum-v1": [(-10, 10), (-8, 8)]}


def to_vectors(name, states):
    """[B, state_dim] float64, Gymnasium's state layout."""
    return np.stack([np.asarray(getattr(states, f), np.float64) for f in FIELDS[name][1]], 1)


def from_vectors(name, v):
    cls, fields = FIELDS[name]
    return cls(**{f: jnp.asarray(v[:, i], jnp.float32) for i, f in enumerate(fields)},
               time=jnp.zeros(len(v), jnp.int32))


def random_actions(env, rng):
    if env.discrete:
        return rng.integers(env.num_actions, size=B).astype(np.int32)
    return rng.uniform(-3, 3, (B, 1)).astype(np.float32)  # beyond max_torque: the clip is tested


def rollout(name, steps, action=None, params=None, seed=0):
    """`steps` batched steps from a reset: every output stacked over time, [steps, B, ...]."""
    env, default, reset, step = compiled(name)
    params = default if params is None else params
    rng = np.random.default_rng(seed)
    obs, state = reset(keys(seed), params)
    out = []
    for t in range(steps):
        a = random_actions(env, rng) if action is None else np.full(B, action, np.int32)
        obs, state, *rest = step(keys(1000 * seed + t), state, a, params)
        out.append((obs, state, *rest))
    return jax.tree.map(lambda *x: np.stack(x), *out)


@pytest.mark.parametrize("name", NAMES)
def test_parity_with_gymnasium(name):
    """Each step from the same state (float32 here, float64 in Gymnasium) gives the same
    observation, reward, terminated and truncated: along 250 steps of B random-action episodes
    with Gymnasium's own episode ends and time limit, then from 160 states spread over broad
    ranges."""
    gym = pytest.importorskip("gymnasium")
    env, params, reset, step = compiled(name)
    gyms = [gym.make(name) for _ in range(B)]
    for g in gyms:
        g.reset(seed=0)
    rng = np.random.default_rng(0)

    def check(state, seed):
        actions = random_actions(env, rng)
        for g, v in zip(gyms, to_vectors(name, state)):
            g.unwrapped.state = v
        _, new, reward, terminated, truncated, info = step(keys(seed), state, actions, params)
        ours = jax.device_get((info["final_observation"], reward, terminated, truncated))
        theirs = [g.step(int(a) if env.discrete else a)[:4] for g, a in zip(gyms, actions)]
        g_obs, g_reward, g_terminated, g_truncated = map(np.array, zip(*theirs))
        # float32 against float64: ~1e-7 mostly; Acrobot's fastest swings (|dtheta| ~ 25) lose
        # ~1e-5 relative over their RK4 step, hence the rtol
        np.testing.assert_allclose(ours[0], g_obs, atol=1e-4, rtol=1e-4)
        np.testing.assert_allclose(ours[1], g_reward, atol=1e-4, rtol=1e-5)
        np.testing.assert_array_equal(ours[2], g_terminated)
        np.testing.assert_array_equal(ours[3], g_truncated)
        return new, ours[2] | ours[3]

    _, state = reset(keys(0), params)
    for t in range(250):
        state, done = check(state, t)
        for g in np.array(gyms)[done]:
            g.reset()  # restarts Gymnasium's step count; the state is ours, set in check()
    lows, highs = np.array(BROAD[name]).T
    for t in range(20):
        for g in gyms:
            g.reset()
        check(from_vectors(name, rng.uniform(lows, highs, (B, len(lows)))), t)


def test_cartpole_termination_resets():
    """Pushing right always tips the pole: terminated, not truncated, the final observation is
    past a threshold, and the returned observation and state are a fresh reset."""
    _, params, _, _ = compiled("CartPole-v1")
    obs, state, reward, terminated, truncated, info = rollout("CartPole-v1", 40, action=1)
    assert terminated.any(0).all() and not truncated.any() and (reward == 1.0).all()
    t, b = np.nonzero(terminated)
    final = info["final_observation"][t, b]
    assert ((np.abs(final[:, 0]) > params.x_threshold)
            | (np.abs(final[:, 2]) > params.theta_threshold_radians)).all()
    assert (info["discount"][t, b] == 0.0).all() and (info["discount"][~terminated] == 1.0).all()
    assert (state.time[t, b] == 0).all() and (np.abs(obs[t, b]) <= 0.05).all()
    np.testing.assert_array_equal(obs[~terminated], info["final_observation"][~terminated])


def test_truncation_at_time_limit():
    """CartPole with a 5-step limit and Pendulum with its 200: truncated exactly at the limit,
    never terminated; the final observation is the one reached (what the step gives without
    the limit), and the episode starts again."""
    _, params, _, _ = compiled("CartPole-v1")
    short = rollout("CartPole-v1", 5, params=params.replace(max_steps_in_episode=5))
    full = rollout("CartPole-v1", 5)  # same keys and actions
    obs, state, _, terminated, truncated, info = short
    assert not terminated.any() and (truncated[:4] == False).all() and truncated[4].all()  # noqa
    np.testing.assert_array_equal(info["final_observation"], full[0])
    assert (state.time[4] == 0).all() and not np.isclose(obs[4], full[0][4]).all(-1).any()
    assert (info["discount"] == 1.0).all()  # a truncation still bootstraps

    _, params, _, _ = compiled("Pendulum-v1")
    assert params.max_steps_in_episode == 200
    _, state, _, terminated, truncated, _ = rollout("Pendulum-v1", 200)
    assert not terminated.any() and not truncated[:199].any() and truncated[199].all()
    assert (state.time[199] == 0).all() and (state.time[198] == 199).all()


@pytest.mark.parametrize("name", NAMES)
def test_batches_and_spaces(name):
    """A batch of keys gives different resets; the batched step keeps shapes and dtypes; the
    spaces describe what comes out; the env is hashable (closed over inside jit)."""
    env, params, reset, step = compiled(name)
    obs_space, act_space = env.observation_space(params), env.action_space(params)
    obs, state = reset(keys(4), params)
    assert obs.shape == (B, *obs_space.shape) and obs.dtype == jnp.float32
    assert len({tuple(o) for o in np.asarray(obs).tolist()}) == B
    obs2, _, reward, terminated, truncated, _ = step(keys(5), state,
                                                      random_actions(env, np.random.default_rng(0)),
                                                      params)
    assert obs2.shape == obs.shape and obs2.dtype == jnp.float32 and reward.shape == (B,)
    assert reward.dtype == jnp.float32 and terminated.dtype == truncated.dtype == jnp.bool_
    assert ((obs >= obs_space.low) & (obs <= obs_space.high)).all()
    assert isinstance(act_space, Discrete if env.discrete else Box)
    assert env.num_actions == (act_space.n if env.discrete else act_space.shape[0])
    assert hash(env) == hash(type(env)()) and env == type(env)() and env.name == name


def test_spaces():
    """Samples lie in their space, also along unbounded dimensions (CartPole's velocities)."""
    d = Discrete(3)
    assert d.n == 3 and bool(d.contains(d.sample(jax.random.key(0)))) and not bool(d.contains(3))
    box = Box(jnp.array([-1.0, -jnp.inf, 0.0]), jnp.array([1.0, jnp.inf, jnp.inf]), (500, 3))
    x = np.asarray(jax.jit(box.sample)(jax.random.key(1)))  # 500 rows of the 3-dim box
    assert np.isfinite(x).all() and ((x >= box.low) & (x <= box.high)).all()
    assert (x[:, 1] < 0).any() and (x[:, 1] > 0).any() and x[:, 0].std() > 0.4
    assert not bool(box.contains(jnp.zeros(2)))


def test_make_errors():
    with pytest.raises(ConfigError, match="available: CartPole-v1, Acrobot-v1"):
        make("CartPole-v0")
    with pytest.raises(ConfigError, match="no parameter gravty"):
        make("CartPole-v1", gravty=9.0)


def test_gymnax_names(monkeypatch):
    """Without gymnax: a ConfigError that says how to get it. With it (a stand-in speaking its
    five-value API, time limit folded into `done`): the time limit comes back as `truncated`."""
    monkeypatch.setitem(sys.modules, "gymnax", None)  # makes `import gymnax` fail
    with pytest.raises(ConfigError, match="pip install gymnax"):
        make("gymnax:SpaceInvaders-MinAtar")

    class FiveValueCartPole(classic.CartPole):
        def step_env(self, key, state, action, params):
            obs, state, reward, terminated, truncated = super().step_env(key, state, action, params)
            return obs, state, reward, terminated | truncated, {"discount": 1.0}

    fake = types.SimpleNamespace(make=lambda n: (FiveValueCartPole(), classic.CartPoleParams()))
    monkeypatch.setitem(sys.modules, "gymnax", fake)
    env, params = make("gymnax:CartPole-v1", max_steps_in_episode=3)
    assert env.name == "CartPole-v1" and env.discrete and env.num_actions == 2
    step = jax.jit(env.step)
    _, state = env.reset(jax.random.key(6), params)
    for t in range(3):
        _, state, _, terminated, truncated, _ = step(jax.random.key(t), state, t % 2, params)
    assert not bool(terminated) and bool(truncated) and int(state.time) == 0


def test_filmstrip(tmp_path):
    """A PNG for each environment, from the first of B random-action episodes."""
    from dlcore.envs.render import filmstrip
    for name in NAMES:
        obs, _, reward, *_ = rollout(name, 30, seed=7)
        path = filmstrip(tmp_path / f"{name}.png", name, obs[:, 0], reward[:, 0])
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    filmstrip(tmp_path / "every.png", name, obs[:, 0], every=10, max_frames=3)
