"""An environment as the data of an RL run (dlcore.envs; `data.env` is its id, e.g. 'CartPole-v1',
or 'gymnax:<id>').

An RL step collects its own experience from `num_envs` environments held in its state, so the
training batch is None. The test split holds the ids of the fixed greedy-evaluation episodes
({'episode': [eval_episodes]}, drawn from `eval_seed`), the same for every seed and algorithm.
spec: dlcore.rl.env_spec (observation and action shapes, discrete or not, ...), plus 'max_steps'
(the episode limit) and 'eval_seed'.
"""
from __future__ import annotations

import sys

import numpy as np

from dlcore.config import check
from dlcore.core import Data


def defaults() -> dict:
    return {"env": "CartPole-v1", "num_envs": 4, "eval_episodes": 32, "eval_seed": 1000}


def load(cfg: dict) -> Data:
    from dlcore import envs, rl
    if not rl.guard():  # before JAX computes anything, if it still can
        print("dlcore: warning: JAX started before dlcore could turn off XLA's concurrency-"
              "optimised CPU scheduler, which deadlocks some RL programs; set XLA_FLAGS="
              f"{rl.GUARD_FLAG} before importing jax (README: 'A deadlock guard'). A hung "
              "run is ended after loop.watchdog_seconds.", file=sys.stderr, flush=True)
    check(isinstance(cfg.get("env"), str), "data.env",
          f"must be an environment id such as 'CartPole-v1'; got {cfg.get('env')!r}")
    env, params = envs.make(cfg["env"])  # ConfigError for an unknown id, before anything compiles
    for key in ("num_envs", "eval_episodes"):
        check(type(cfg.get(key)) is int and cfg[key] > 0, f"data.{key}",
              f"must be a positive integer; got {cfg.get(key)!r}")
    check(type(cfg.get("eval_seed")) is int, "data.eval_seed",
          f"must be an integer; got {cfg.get('eval_seed')!r}")
    spec = {**rl.env_spec(cfg["env"], env.observation_space(params), env.action_space(params),
                          cfg["num_envs"]),
            "max_steps": int(params.max_steps_in_episode), "eval_seed": int(cfg["eval_seed"])}
    splits = {"train": {}, "test": {"episode": np.arange(cfg["eval_episodes"], dtype=np.int32)}}
    return Data(splits, spec, lambda split, step, key: None, evaluate_train=False)
