"""Action and observation spaces, with gymnax's names and methods (`Discrete(n)`, `Box(low, high,
shape, dtype)`, `.sample(key)`, `.contains(x)`), so code written against either works with both."""
from __future__ import annotations

import jax
import jax.numpy as jnp


class Discrete:
    """The integers 0 .. n-1."""

    def __init__(self, n: int):
        self.n = int(n)
        self.shape = ()
        self.dtype = jnp.int32

    def sample(self, key: jax.Array) -> jax.Array:
        """One action, int32 scalar."""
        return jax.random.randint(key, (), 0, self.n, dtype=self.dtype)

    def contains(self, x) -> jax.Array:
        return jnp.logical_and(x >= 0, x < self.n)

    def __repr__(self) -> str:
        return f"Discrete({self.n})"


class Box:
    """Arrays of `shape` with low <= x <= high elementwise (bounds scalar or of `shape`; may be
    infinite, as for CartPole's velocities)."""

    def __init__(self, low, high, shape: tuple = (), dtype=jnp.float32):
        self.low = jnp.broadcast_to(jnp.asarray(low, dtype), shape)
        self.high = jnp.broadcast_to(jnp.asarray(high, dtype), shape)
        self.shape = tuple(shape)
        self.dtype = dtype

    def sample(self, key: jax.Array) -> jax.Array:
        """Uniform within finite bounds. Along an unbounded dimension, where no uniform exists, the
        same uniform draw u is mapped to a logistic variable, log(u / (1 - u)), or, bounded on one
        side, to an exponential one beyond the bound."""
        u = jax.random.uniform(key, self.shape, jnp.float32, 1e-6, 1.0)
        lo_ok, hi_ok = jnp.isfinite(self.low), jnp.isfinite(self.high)
        lo, hi = jnp.where(lo_ok, self.low, 0.0), jnp.where(hi_ok, self.high, 0.0)
        x = jnp.where(lo_ok & hi_ok, lo + u * (hi - lo),
                      jnp.where(lo_ok, lo - jnp.log(u),
                                jnp.where(hi_ok, hi + jnp.log(u), jnp.log(u / (1 - u)))))
        return x.astype(self.dtype)

    def contains(self, x) -> jax.Array:
        x = jnp.asarray(x)
        if x.shape != self.shape:  # shapes are static, so this is no branch on a traced value
            return jnp.asarray(False)
        return jnp.all((x >= self.low) & (x <= self.high))

    def __repr__(self) -> str:
        return f"Box(shape={self.shape}, dtype={jnp.dtype(self.dtype).name})"
