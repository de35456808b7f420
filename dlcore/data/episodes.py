"""N-way K-shot episodes drawn from class-major arrays, in pure JAX (jittable, vmappable).

A class-major array x has shape [C, M, ...]: C classes with M examples each (`glyphs.load`,
`digits_classes.splits`). An episode draws N of the C classes without replacement, relabels
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

__all__ = ["defaults", "episodic", "sample", "sample_batch", "check", "nearest_neighbour_accuracy",
           "mean_ci95"]


def defaults() -> dict:
    """The keys of an episodic source: episodes of N classes (n_way), K support (k_shot) and Q query
    (q_query) examples each, batch_size episodes per step; the evaluation's `eval_tasks` fixed
    episodes (eval_seed), `eval_chunk` at a time, test_n_way / test_k_shot / test_q_query of them
    (0 = as in training)."""
    return {"batch_size": 4, "n_way": 5, "k_shot": 1, "q_query": 15, "test_n_way": 0,
            "test_k_shot": 0, "test_q_query": 0, "eval_tasks": 600, "eval_chunk": 50,
            "eval_seed": 2000}


def episodic(splits: dict, cfg: dict):
    """`Data` of class-major splits {'train': {'x': [C, M, ...], optional 'attributes': [C, A]},
    'test': ..., optional 'validation': ...}, classes disjoint between splits.

    Training batches are `batch_size` episodes from the training classes (sample_batch), with each
    episode's class descriptions [B, N, A] when the data has attributes (zero-shot). The spec's
    'eval_tasks' is (n, chunk, tasks(split, i) -> the i-th chunk of the fixed evaluation episodes),
    the same for every algorithm and seed (data.eval_seed)."""
    from dlcore.core import Data
    check({"train": splits["train"]}, cfg["n_way"], cfg["k_shot"], cfg["q_query"])
    test_way = cfg.get("test_n_way") or cfg["n_way"]
    k_test, q_test = cfg.get("test_k_shot") or cfg["k_shot"], cfg.get("test_q_query") or cfg["q_query"]
    check({k: v for k, v in splits.items() if k != "train"}, test_way, k_test, q_test, prefix="test_")
    for key in ("batch_size", "eval_tasks", "eval_chunk"):
        _check(type(cfg[key]) is int and cfg[key] > 0, f"data.{key}",
               f"must be a positive integer; got {cfg[key]!r}")
    _check(type(cfg["eval_seed"]) is int, "data.eval_seed",
           f"must be an integer; got {cfg['eval_seed']!r}")
    n, chunk = cfg["eval_tasks"], min(cfg["eval_chunk"], cfg["eval_tasks"])

    def tasks(split, i):
        key = jax.random.fold_in(jax.random.key(cfg["eval_seed"]), i)
        return _with_attributes(sample_batch(key, split["x"], chunk, test_way, k_test, q_test), split)

    def sample(split, step, key):
        batch = sample_batch(jax.random.fold_in(key, step), split["x"], cfg["batch_size"],
                             cfg["n_way"], cfg["k_shot"], cfg["q_query"])
        return _with_attributes(batch, split)

    x = splits["train"]["x"]
    spec = {"task": "classification", "input_shape": tuple(x.shape[2:]),
            "num_outputs": cfg["n_way"], "test_n_way": test_way, "num_train_classes": len(x),
            "attribute_dim": splits["train"]["attributes"].shape[1]
            if "attributes" in splits["train"] else 0,
            "eval_tasks": (n, chunk, tasks)}
    # the training classes' episodes would cost a second full evaluation and say little
    return Data(splits, spec, sample, evaluate_train=False)


def _with_attributes(batch: dict, split: dict) -> dict:
    """Add each episode's class descriptions [B, N, A] when the data has them (zero-shot)."""
    if "attributes" in split:
        batch["attributes"] = jnp.take(split["attributes"], batch["classes"], axis=0)
    return batch


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
