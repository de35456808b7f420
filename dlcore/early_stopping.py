"""Early stopping: the best state so far, kept on the device per seed, and when to stop.

    stopper = init(states, seeds, mode)             # seeds: the vmapped seed count, or None
    stopper = update(stopper, states, value, t, mode) # value: the monitored metric, [] or [seeds]
    spent(stopper, patience)                        # every seed `patience` evaluations without gain

The stopper is part of every checkpoint of the run, so a resumed run knows its best state and how
long it has waited, exactly as the uninterrupted run did.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def init(states, seeds: int | None, mode: str) -> dict:
    shape = (seeds,) if seeds else ()
    return {"state": jax.tree.map(jnp.copy, states),  # a copy: `states` is donated to the step
            "best": np.full(shape, -np.inf if mode == "max" else np.inf),
            "since": np.zeros(shape, np.int64), "best_step": np.zeros(shape, np.int64)}


@jax.jit
def _select(improved, new, old):
    """Per seed, `new` where it improved, else `old` (improved: [] or [seeds])."""
    def pick(a, b):
        return jnp.where(improved.reshape(improved.shape + (1,) * (a.ndim - improved.ndim)), a, b)
    return jax.tree.map(pick, new, old)


def update(stopper: dict, states, value, t: int, mode: str) -> dict:
    value = np.asarray(value, np.float64)
    improved = value > stopper["best"] if mode == "max" else value < stopper["best"]
    return {"state": _select(jnp.asarray(improved), states, stopper["state"]),
            "best": np.where(improved, value, stopper["best"]),
            "since": np.where(improved, 0, stopper["since"] + 1),
            "best_step": np.where(improved, t, stopper["best_step"])}


def spent(stopper: dict, patience: int) -> bool:
    """Stop when every seed has gone `patience` evaluations without improving."""
    return bool(np.all(stopper["since"] >= patience))
