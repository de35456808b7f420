"""Sinusoid regression tasks (Finn et al. 2017, "Model-Agnostic Meta-Learning"): each task is
y = A sin(x - phase) with A ~ U[0.1, 5], phase ~ U[0, pi], x ~ U[-5, 5].

Tasks are drawn from a key inside the jitted step, so training sees a fresh batch of tasks every
step; the test tasks are drawn once, from `data.eval_seed`, and stored as arrays, so every
algorithm and every seed is scored on the same tasks.

A batch of tasks: {'support': {'x': [B, K, 1], 'y': [B, K, 1]},
                   'query':   {'x': [B, Q, 1], 'y': [B, Q, 1]}, 'amplitude': [B], 'phase': [B]}
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from dlcore.config import check

DEFAULTS = {"amplitude": (0.1, 5.0), "phase": (0.0, math.pi), "x_range": (-5.0, 5.0)}


def task(key: jax.Array, k_shot: int, q_query: int, amplitude=DEFAULTS["amplitude"],
         phase=DEFAULTS["phase"], x_range=DEFAULTS["x_range"]) -> dict:
    """One task: K support and Q query points of one random sinusoid."""
    k_amp, k_phase, k_x = jax.random.split(key, 3)
    amp = jax.random.uniform(k_amp, (), minval=amplitude[0], maxval=amplitude[1])
    ph = jax.random.uniform(k_phase, (), minval=phase[0], maxval=phase[1])
    x = jax.random.uniform(k_x, (k_shot + q_query, 1), minval=x_range[0], maxval=x_range[1])
    y = amp * jnp.sin(x - ph)
    return {"support": {"x": x[:k_shot], "y": y[:k_shot]},
            "query": {"x": x[k_shot:], "y": y[k_shot:]}, "amplitude": amp, "phase": ph}


def sample_batch(key: jax.Array, batch: int, k_shot: int, q_query: int, **ranges) -> dict:
    """`batch` independent tasks, leading axis [batch]."""
    return jax.vmap(lambda k: task(k, k_shot, q_query, **ranges))(jax.random.split(key, batch))


def ranges(cfg: dict) -> dict:
    """The amplitude, phase and x ranges of `cfg`, checked: each a pair (low, high), low < high."""
    out = {}
    for name, default in DEFAULTS.items():
        r = cfg.get(name, default)
        check(isinstance(r, (list, tuple)) and len(r) == 2
              and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                      for v in r) and r[0] < r[1],
              f"data.{name}", f"must be a pair [low, high] of numbers with low < high; got {r!r}")
        out[name] = tuple(float(v) for v in r)
    return out


def defaults() -> dict:
    """Finn et al.'s settings: meta-batches of 25 tasks of K = 10 support and 10 query points;
    600 fixed test tasks with 100 query points each, scored `eval_chunk` at a time."""
    return {"batch_size": 25, "k_shot": 10, "q_query": 10, "amplitude": DEFAULTS["amplitude"],
            "phase": DEFAULTS["phase"], "x_range": DEFAULTS["x_range"], "eval_tasks": 600,
            "eval_query": 100, "eval_chunk": 600, "eval_seed": 1000}


def load(cfg: dict):
    """No training split (tasks are drawn per step); the test split is `eval_tasks` fixed tasks with
    `k_shot` support and `eval_query` query points (a larger query set than in training only makes
    the estimate of each task's error less noisy). spec['eval_tasks'] = (n, chunk, tasks(split, i)
    -> the i-th chunk of those tasks)."""
    from dlcore.core import Data
    for key in ("batch_size", "k_shot", "q_query", "eval_tasks", "eval_query", "eval_chunk"):
        check(type(cfg[key]) is int and cfg[key] > 0, f"data.{key}",
              f"must be a positive integer; got {cfg[key]!r}")
    check(type(cfg["eval_seed"]) is int, "data.eval_seed",
          f"must be an integer; got {cfg['eval_seed']!r}")
    r = ranges(cfg)
    n, chunk = cfg["eval_tasks"], min(cfg["eval_chunk"], cfg["eval_tasks"])
    padded = -(-n // chunk) * chunk  # whole chunks; the evaluation scores the first n
    # XLA aborts the process (no exception) on an array it cannot allocate or index with int32
    for tasks, points in (("eval_tasks", "eval_query"), ("batch_size", "q_query")):
        size = (padded if tasks == "eval_tasks" else cfg[tasks]) * (cfg["k_shot"] + cfg[points])
        check(size < 2**31, f"data.{tasks}", f"{cfg[tasks]:,} tasks of data.k_shot + data.{points} "
              f"points make {size:,} values, more than one array can index (2**31)")
    test = sample_batch(jax.random.key(cfg["eval_seed"]), padded, cfg["k_shot"],
                        cfg["eval_query"], **r)

    def tasks(split, i):  # the split holds the tasks: cut chunk i out of it
        return jax.tree.map(lambda a: jax.lax.dynamic_slice_in_dim(a, i * chunk, chunk), split)

    def sample(split, step, key):
        return sample_batch(jax.random.fold_in(key, step), cfg["batch_size"], cfg["k_shot"],
                            cfg["q_query"], **r)

    spec = {"task": "regression", "input_shape": (1,), "num_outputs": 1,
            "eval_tasks": (n, chunk, tasks)}
    return Data({"train": {}, "test": jax.tree.map(np.asarray, test)}, spec, sample,
                evaluate_train=False)
