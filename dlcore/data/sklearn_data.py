"""Data sets that ship inside scikit-learn: nothing is downloaded."""
from __future__ import annotations

import numpy as np

from dlcore.config import check


def digits(cfg: dict) -> dict[str, np.ndarray]:
    """8x8 handwritten digits (1797 images, 10 classes), pixels scaled to [0, 1].

    The split is fixed and documented: stratified, test fraction `data.test_fraction` (default 0.2,
    giving 1437 train / 360 test), shuffled with `data.split_seed` (default 0).
    x: [n, 8, 8, 1] float32, y: [n] int32.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)[..., None]
    y = d.target.astype(np.int32)
    x, x_test, y, y_test = train_test_split(x, y, test_size=cfg.get("test_fraction", 0.2),
                                            stratify=y, random_state=cfg.get("split_seed", 0))
    return {"x": x, "y": y, "x_test": x_test, "y_test": y_test}


def diabetes(cfg: dict) -> dict[str, np.ndarray]:
    """Diabetes progression regression (442 patients, 10 features), a real regression benchmark.

    Features and target are standardised with the training split's statistics.
    x: [n, 10] float32, y: [n, 1] float32. Split as for `digits` (not stratified).
    """
    from sklearn.datasets import load_diabetes
    from sklearn.model_selection import train_test_split

    d = load_diabetes()
    x, x_test, y, y_test = train_test_split(
        d.data.astype(np.float32), d.target.astype(np.float32)[:, None],
        test_size=cfg.get("test_fraction", 0.2), random_state=cfg.get("split_seed", 0))
    mx, sx, my, sy = x.mean(0), x.std(0), y.mean(0), y.std(0)
    return {"x": (x - mx) / sx, "y": (y - my) / sy,
            "x_test": (x_test - mx) / sx, "y_test": (y_test - my) / sy}


def digits_classes(cfg: dict) -> dict[str, dict[str, np.ndarray]]:
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
