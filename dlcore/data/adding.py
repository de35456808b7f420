"""The adding problem, a procedural sequence task generated from a seed (nothing cached or downloaded)."""
from __future__ import annotations

import numpy as np

from dlcore.config import check
from dlcore.data import arrays as array_data


def defaults() -> dict:
    return {"seq_len": 100, "train_size": 20000, "test_size": 2000, "data_seed": 0,
            **array_data.defaults()}


def load(cfg: dict):
    """{'x': [b, T, 2], 'y': [b, 1]} batches of the adding problem."""
    return array_data.from_arrays(arrays(cfg), cfg, "adding")


def arrays(cfg: dict) -> dict[str, np.ndarray]:
    """The adding problem (Hochreiter & Schmidhuber 1997, in the form of Le et al. 2015).

    Each step carries two features: a value drawn from U[0, 1] and a marker that is 1 at exactly two
    steps (one in each half of the sequence) and 0 elsewhere. The target is the sum of the two
    marked values. Predicting the constant 1 gives MSE Var(u1 + u2) = 2/12 = 1/6 ~= 0.167, so a
    model below that has carried information across up to `seq_len` steps.

    Keys: seq_len (T, default 100), train_size (default 20000), test_size (default 2000),
    data_seed (default 0). x: [n, T, 2] float32, y: [n, 1] float32.
    """
    t = cfg.get("seq_len", 100)
    check(type(t) is int and t >= 2, "data.seq_len", f"must be an integer >= 2; got {t!r}")
    sizes = {"train_size": cfg.get("train_size", 20000), "test_size": cfg.get("test_size", 2000)}
    for key, n in sizes.items():
        check(type(n) is int and n > 0, f"data.{key}", f"must be a positive integer; got {n!r}")
    seed = cfg.get("data_seed", 0)
    check(type(seed) is int and seed >= 0, "data.data_seed", f"must be an integer >= 0; got {seed!r}")

    def make(n, stream):  # train and test from separate streams: sizes do not change each other
        rng = np.random.default_rng([seed, stream])
        values = rng.uniform(0.0, 1.0, (n, t)).astype(np.float32)
        first = rng.integers(0, t // 2, n)
        second = rng.integers(t // 2, t, n)
        marks = np.zeros((n, t), np.float32)
        marks[np.arange(n), first] = 1.0
        marks[np.arange(n), second] = 1.0
        y = values[np.arange(n), first] + values[np.arange(n), second]
        return np.stack([values, marks], -1), y[:, None].astype(np.float32)

    x, y = make(sizes["train_size"], 0)
    x_test, y_test = make(sizes["test_size"], 1)
    return {"x": x, "y": y, "x_test": x_test, "y_test": y_test}
