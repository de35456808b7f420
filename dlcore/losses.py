"""Losses and metrics: pure functions of arrays, averaged over the batch.

Shapes: logits [batch, classes], labels [batch] int; predictions and targets [batch, ...] float.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from dlcore.config import check
from dlcore.optim import decay_mask


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Mean softmax cross-entropy; labels are integer classes."""
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def accuracy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Fraction of argmax predictions equal to the labels."""
    return (jnp.argmax(logits, -1) == labels).mean()


def mse(predictions: jax.Array, targets: jax.Array) -> jax.Array:
    """Mean squared error over every element."""
    return jnp.mean((predictions - targets.reshape(predictions.shape)) ** 2)


def l2_penalty(params) -> jax.Array:
    """0.5 * sum of squared weights, biases and norm scales excluded (see optim.decay_mask)."""
    mask = decay_mask(params)
    leaves = jax.tree.leaves(jax.tree.map(lambda p, m: jnp.sum(p ** 2) if m else 0.0, params, mask))
    return 0.5 * sum(leaves, jnp.zeros(()))


def check_labels(data) -> None:
    """ConfigError unless every split's labels are [n] integers in 0..num_outputs-1: a label past
    the output layer would make cross-entropy read outside the logits, silently. Array data has
    checked this already; a Data built by hand has not."""
    c = data.spec["num_outputs"]
    for split, arrays in data.splits.items():
        y = np.asarray(arrays.get("y")) if isinstance(arrays, dict) and "y" in arrays else None
        if y is None or y.size == 0:
            continue
        check(np.issubdtype(y.dtype, np.integer) and y.ndim == 1, "data.name",
              f"{split} labels must be [n] integers for classification; got {y.dtype} {y.shape}")
        low, high = int(y.min()), int(y.max())
        check(0 <= low and high < c, "data.name", f"{split} labels run from {low} to {high}, "
              f"outside the {c} classes 0..{c - 1} of spec['num_outputs']")
