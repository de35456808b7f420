"""N-way K-shot episodes drawn from class-major arrays, in pure JAX (jittable, vmappable).

A class-major array x has shape [C, M, ...]: C classes with M examples each (`glyphs.load`,
`sklearn_data.digits_classes`). An episode draws N of the C classes without replacement, relabels
them 0..N-1 in the order drawn, and draws K support and Q query examples of each class, all
distinct. Because it is a pure function of a key, a batch of episodes is a `vmap`, and sampling can
run on device inside a jitted step.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from dlcore.config import check as _check

__all__ = ["sample", "sample_batch", "check", "nearest_neighbour_accuracy", "mean_ci95"]


def sample(key: jax.Array, x: jax.Array, n_way: int, k_shot: int, q_query: int) -> dict:
    """One episode from x [C, M, ...] (n_way, k_shot, q_query are Python ints, static under jit).

    Returns {'support': {'x': [N*K, ...], 'y': [N*K] int32}, 'query': {'x': [N*Q, ...], 'y': [N*Q]
    int32}, 'classes': [N] int32}: label i stands for class classes[i]; both sets are class-major
    (y = 0,..,0, 1,..,1, ...), and no example appears twice in an episode.
    """
    x = jnp.asarray(x)  # a numpy array cannot be indexed by traced indices under jit or vmap
    num_classes, per_class = x.shape[:2]
    # The indices of the largest of i.i.d. uniforms are a uniformly random set of distinct indices
    # in random order. One draw serves classes and examples: random bits dominate compile time.
    u = jax.random.uniform(key, (num_classes + n_way * per_class,))
    _, classes = jax.lax.top_k(u[:num_classes], n_way)  # [N]
    _, picks = jax.lax.top_k(u[num_classes:].reshape(n_way, per_class),
                             k_shot + q_query)  # [N, K+Q]
    chosen = x[classes[:, None], picks]  # [N, K+Q, ...]
    feature_shape = x.shape[2:]

    def part(block, per):
        return {"x": block.reshape((n_way * per,) + feature_shape),
                "y": jnp.repeat(jnp.arange(n_way, dtype=jnp.int32), per)}

    return {"support": part(chosen[:, :k_shot], k_shot),
            "query": part(chosen[:, k_shot:], q_query), "classes": classes.astype(jnp.int32)}


def sample_batch(key: jax.Array, x: jax.Array, batch: int, n_way: int, k_shot: int,
                 q_query: int) -> dict:
    """`batch` independent episodes, every leaf with a leading axis [batch]."""
    one = functools.partial(sample, n_way=n_way, k_shot=k_shot, q_query=q_query)
    return jax.vmap(one, in_axes=(0, None))(jax.random.split(key, batch), x)


def check(splits: dict, n_way: int, k_shot: int, q_query: int, prefix: str = "") -> None:
    """ConfigError, before anything compiles, for an episode shape some split cannot provide.

    splits: {'train': {'x': [C, M, ...], ...}, 'test': {...}, ...}; prefix: of the config keys
    named in the message ('test_' for data.test_n_way, ...).
    """
    for key, value, low in (("n_way", n_way, 2), ("k_shot", k_shot, 1), ("q_query", q_query, 1)):
        _check(type(value) is int and value >= low, f"data.{prefix}{key}",
               f"must be an integer >= {low}; got {value!r}")
    for name, split in splits.items():
        num_classes, per_class = split["x"].shape[:2]
        _check(n_way <= num_classes, f"data.{prefix}n_way",
               f"{n_way}-way episodes need {n_way} classes; "
               f"the '{name}' split has only {num_classes}")
        _check(k_shot + q_query <= per_class, f"data.{prefix}k_shot",
               f"{k_shot} support + {q_query} query examples per class, but the '{name}' classes "
               f"have only {per_class} each")


def nearest_neighbour_accuracy(episode: dict) -> jax.Array:
    """Fraction of query examples whose nearest support example (Euclidean, raw pixels) has their
    label: the baseline a learned method must beat. One episode as `sample` returns it; a scalar."""
    s = episode["support"]["x"].reshape(episode["support"]["x"].shape[0], -1)  # [N*K, D]
    q = episode["query"]["x"].reshape(episode["query"]["x"].shape[0], -1)  # [N*Q, D]
    # |q|^2 is the same for every support example, so it cannot change the argmin: leave it out.
    # Full precision: TPUs and recent GPUs would otherwise multiply in bf16 / tf32, swapping ties.
    d2 = jnp.sum(s * s, axis=1)[None, :] - 2.0 * jnp.matmul(q, s.T, precision="highest")
    predicted = episode["support"]["y"][jnp.argmin(d2, axis=1)]
    return jnp.mean(predicted == episode["query"]["y"])


def mean_ci95(values) -> tuple[float, float]:
    """(mean, 1.96 * std / sqrt(n)) over per-episode values [n] (std with ddof=1): the normal 95%
    interval that few-shot papers report. The half width is nan for fewer than two values."""
    v = np.asarray(values, np.float64).ravel()
    if v.size < 2:
        return float(v.mean()) if v.size else float("nan"), float("nan")
    return float(v.mean()), float(1.96 * v.std(ddof=1) / np.sqrt(v.size))
