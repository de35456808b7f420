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
        start = ((step % num_examples) * batch_size) % num_examples  # no int32 overflow
        return (start + jnp.arange(batch_size)) % num_examples
    per_epoch = num_examples // batch_size
    perm = jax.random.permutation(jax.random.fold_in(key, step // per_epoch), num_examples)
    return jax.lax.dynamic_slice(perm, ((step % per_epoch) * batch_size,), (batch_size,))


def take(arrays: dict, idx: jax.Array) -> dict:
    """{'x': [n, ...], ...} -> {'x': [len(idx), ...], ...}."""
    return {k: jnp.take(v, idx, axis=0) for k, v in arrays.items()}


def batch_at(arrays: dict, step: jax.Array, batch_size: int, shuffle: bool,
             key: jax.Array) -> dict:
    """The batch for `step`: {'x': [batch_size, ...], ...}, examples as `batch_indices` picks them.

    In stored order with batch_size dividing the data set, a batch never wraps, so it is cut with
    `dynamic_slice` (measured here: about 40 us a step cheaper than a gather on a 2-core CPU).
    """
    n = len(next(iter(arrays.values())))
    if not shuffle and n % batch_size == 0:
        start = ((step % n) * batch_size) % n  # as batch_indices: no int32 overflow
        return {k: jax.lax.dynamic_slice_in_dim(v, start, batch_size) for k, v in arrays.items()}
    return take(arrays, batch_indices(step, n, batch_size, shuffle, key))
