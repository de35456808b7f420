"""Losses and metrics: pure functions of arrays, averaged over the batch.

Shapes: logits [batch, classes], labels [batch] int; predictions and targets [batch, ...] float.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

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
    return 0.5 * sum(leaves)
