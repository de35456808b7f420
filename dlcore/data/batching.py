"""Which examples form the batch at a given step: a pure, jittable function of (step, key).

Because the batch is a function of the step alone, a resumed run sees exactly the batches the
uninterrupted run saw, and the data can stay on the device and be indexed inside the jitted step.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp


def batch_indices(step: jax.Array, num_examples: int, batch_size: int, shuffle: bool,
                  key: jax.Array) -> jax.Array:
    """Indices [batch_size] of the examples used at `step`.

    shuffle=False: consecutive examples in stored order, wrapping around (the MNIST-1D recipe).
    shuffle=True: a fresh permutation each epoch, drawn from fold_in(key, epoch); the last
    num_examples % batch_size examples of a permutation are dropped, so each batch is full.
    """
    if not shuffle:
        start = (step * batch_size) % num_examples
        return (start + jnp.arange(batch_size)) % num_examples
    per_epoch = num_examples // batch_size
    perm = jax.random.permutation(jax.random.fold_in(key, step // per_epoch), num_examples)
    return jax.lax.dynamic_slice(perm, ((step % per_epoch) * batch_size,), (batch_size,))


def take(arrays: dict, idx: jax.Array) -> dict:
    """{'x': [n, ...], ...} -> {'x': [len(idx), ...], ...}."""
    return {k: jnp.take(v, idx, axis=0) for k, v in arrays.items()}
