"""scikit-learn's digits as class-major splits for few-shot learning: N-way K-shot episodes
(dlcore.data.episodes) of the training digits, evaluated on episodes of the others."""
from __future__ import annotations

import numpy as np

from dlcore.config import check
from dlcore.data import episodes


def defaults() -> dict:
    return {**episodes.defaults(), "train_classes": (0, 1, 2, 3, 4)}


def load(cfg: dict):
    return episodes.episodic(splits(cfg), cfg)


def splits(cfg: dict) -> dict[str, dict[str, np.ndarray]]:
    """scikit-learn's digits as class-major splits for few-shot learning.

    {'train': {'x': [C_tr, M, 8, 8, 1]}, 'test': {'x': [10 - C_tr, M, 8, 8, 1]}}, float32 pixels in
    [0, 1]; C_tr = 5 and M = 174 by default.

    The class split is fixed and documented: meta-train classes `data.train_classes` (default digits
    0-4, in that order), meta-test classes the other digits in increasing order (default 5-9). Every
    class keeps its first M examples in data set order, M being the smallest class's count (174), so
    the arrays are rectangular and the same on every run.
    """
    from sklearn.datasets import load_digits

    train = cfg.get("train_classes", (0, 1, 2, 3, 4))
    ok = (isinstance(train, (tuple, list)) and all(type(c) is int for c in train)
          and set(train) <= set(range(10)) and len(set(train)) == len(train))
    check(ok, "data.train_classes", f"must be distinct digits in 0..9; got {train!r}")
    test = [c for c in range(10) if c not in train]
    check(len(train) >= 2, "data.train_classes", f"must name at least 2 classes; got {train!r}")
    check(len(test) >= 2, "data.train_classes",
          f"must leave at least 2 of the 10 digits as test classes; {list(train)} leaves {test}")
    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)[..., None]
    m = int(np.bincount(d.target).min())
    by_class = np.stack([x[d.target == c][:m] for c in range(10)])  # [10, m, 8, 8, 1]
    return {"train": {"x": by_class[list(train)]}, "test": {"x": by_class[test]}}
