"""Data augmentation as a pure function of (batch, key), applied inside the jitted training step.

In the spirit of the MNIST-1D generator, which makes each example by translating a template and
adding noise: a random circular shift along the first axis after the batch axis (time or height)
and additive Gaussian noise. Evaluation never augments.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from dlcore.config import check


def validate(cfg: dict) -> None:
    """ConfigError for a negative or ill-typed `data.augment_shift` / `data.augment_noise`."""
    shift, noise = cfg.get("augment_shift", 0), cfg.get("augment_noise", 0.0)
    # shifts are drawn as int32 inside the step: a larger bound would overflow there
    check(type(shift) is int and 0 <= shift < 2**31 - 1, "data.augment_shift",
          f"must be an integer >= 0 (largest shift in steps); got {shift!r}")
    check(type(noise) in (int, float) and math.isfinite(noise) and noise >= 0, "data.augment_noise",
          f"must be a finite number >= 0 (noise standard deviation); got {noise!r}")


def shift_and_noise(x: jax.Array, key: jax.Array, max_shift: int, noise: float) -> jax.Array:
    """x: [b, L, ...] -> [b, L, ...], each example rolled by its own shift in [-max_shift, max_shift]
    along axis 1, plus N(0, noise^2) per element."""
    k_shift, k_noise = jax.random.split(key)
    if max_shift > 0:
        shifts = jax.random.randint(k_shift, (x.shape[0],), -max_shift, max_shift + 1)
        x = jax.vmap(lambda xi, s: jnp.roll(xi, s, axis=0))(x, shifts)
    if noise > 0:
        x = x + noise * jax.random.normal(k_noise, x.shape, x.dtype)
    return x
