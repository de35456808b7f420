"""Reinforcement-learning environments as pure JAX functions (gymnax's functional API):

    env, params = make("CartPole-v1")
    obs, state = env.reset(key, params)
    obs, state, reward, terminated, truncated, info = env.step(key, state, action, params)

`step` resets by itself when an episode ends (info["final_observation"] keeps the observation
reached). Built in: Gymnasium's classic-control tasks (see `classic`). "gymnax:<name>" loads a
gymnax environment, if gymnax is installed, behind the same six-value `step`.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import jax.numpy as jnp

from dlcore.config import ConfigError
from dlcore.envs import spaces
from dlcore.envs.classic import Acrobot, CartPole, Environment, MountainCar, Pendulum

ENVS = {cls.name: cls for cls in (CartPole, Acrobot, MountainCar, Pendulum)}
NAMES = tuple(ENVS)

__all__ = ["NAMES", "ENVS", "make", "Environment", "CartPole", "Acrobot", "MountainCar",
           "Pendulum", "GymnaxEnv", "spaces"]


def make(name: str, **params) -> tuple[Any, Any]:
    """(env, params) for `name`; keyword arguments replace default parameters, e.g.
    make("CartPole-v1", max_steps_in_episode=200)."""
    if name.startswith("gymnax:"):
        env, defaults = _gymnax_make(name[len("gymnax:"):])
    elif name in ENVS:
        env = ENVS[name]()
        defaults = env.default_params
    else:
        raise ConfigError(f"unknown environment '{name}'; available: {', '.join(NAMES)}, "
                          "or 'gymnax:<name>' for a gymnax environment")
    fields = {f.name for f in dataclasses.fields(defaults)}
    unknown = sorted(set(params) - fields)
    if unknown:
        raise ConfigError(f"environment '{name}' has no parameter {', '.join(unknown)}; "
                          f"its parameters: {', '.join(sorted(fields))}")
    return env, defaults.replace(**params) if params else defaults


def _gymnax_make(name: str):
    try:
        import gymnax
    except ImportError as e:
        raise ConfigError(f"environment 'gymnax:{name}' needs gymnax: pip install gymnax "
                          f"({e})") from None
    env, params = gymnax.make(name)
    return GymnaxEnv(env), params


@dataclasses.dataclass(frozen=True)
class GymnaxEnv(Environment):
    """A gymnax environment behind dlcore's `step`. gymnax's own `step` returns five values
    (obs, state, reward, done, info) with the time limit folded into `done`; here the time limit
    (state.time >= max_steps_in_episode, where the state counts time) becomes `truncated` and the
    rest of `done` `terminated`. A natural end on the very step the time runs out reads as a
    truncation: gymnax does not tell the two apart."""

    env: Any

    name = property(lambda self: self.env.name)
    num_actions = property(lambda self: self.env.num_actions)
    default_params = property(lambda self: self.env.default_params)
    discrete = property(lambda self: hasattr(self.env.action_space(self.env.default_params), "n"))

    def observation_space(self, params=None):
        return self.env.observation_space(self.default_params if params is None else params)

    def action_space(self, params=None):
        return self.env.action_space(self.default_params if params is None else params)

    def reset_env(self, key, params):
        return self.env.reset_env(key, params)

    def step_env(self, key, state, action, params):
        obs, new, reward, done, _ = self.env.step_env(key, state, action, params)
        done = jnp.asarray(done, bool)
        if hasattr(new, "time") and hasattr(params, "max_steps_in_episode"):
            truncated = done & (new.time >= params.max_steps_in_episode)
        else:
            truncated = jnp.zeros((), bool)
        return obs, new, jnp.asarray(reward, jnp.float32), done & ~truncated, truncated
