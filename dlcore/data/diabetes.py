"""Diabetes progression regression (442 patients, 10 features), shipped inside scikit-learn.

Split as `digits` (not stratified: `data.test_fraction`, `data.split_seed`); features and target
are standardised with the training split's statistics. x: [n, 10] float32, y: [n, 1] float32.
"""
from __future__ import annotations

import numpy as np

from dlcore.config import check
from dlcore.data import arrays as array_data


def defaults() -> dict:
    return {**array_data.defaults(), "test_fraction": 0.2, "split_seed": 0}


def arrays(cfg: dict) -> dict[str, np.ndarray]:
    from sklearn.datasets import load_diabetes
    from sklearn.model_selection import train_test_split
    tf = cfg.get("test_fraction", 0.2)
    check(isinstance(tf, (int, float)) and not isinstance(tf, bool) and 0 < tf < 1,
          "data.test_fraction", f"must be in (0, 1); got {tf!r}")
    seed = cfg.get("split_seed", 0)
    check(type(seed) is int and 0 <= seed < 2**32, "data.split_seed",
          f"must be an integer in [0, 2**32); got {seed!r}")
    d = load_diabetes()
    x, x_test, y, y_test = train_test_split(
        d.data.astype(np.float32), d.target.astype(np.float32)[:, None],
        test_size=tf, random_state=seed)
    mx, sx, my, sy = x.mean(0), x.std(0), y.mean(0), y.std(0)
    return {"x": (x - mx) / sx, "y": (y - my) / sy,
            "x_test": (x_test - mx) / sx, "y_test": (y_test - my) / sy}


def load(cfg: dict):
    return array_data.from_arrays(arrays(cfg), cfg, "diabetes")
