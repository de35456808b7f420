"""scikit-learn's two interleaving half circles (`sklearn.datasets.make_moons`), two classes.

x: [n, 2] float32, y: [n] int32 (which moon). `data.num_samples` points (default 1000) with
Gaussian noise of standard deviation `data.noise` (0.1), generated from `data.data_seed` (0). The
split is stratified, `data.test_fraction` 0.2 drawn with `data.split_seed` 0: 800 train / 200 test.
"""
from __future__ import annotations

import math

import numpy as np

from dlcore.config import check
from dlcore.data import arrays as array_data

MAX_SAMPLES = 10_000_000  # far beyond any use of a toy set; more is a typo, not a wish


def defaults() -> dict:
    return {"num_samples": 1000, "noise": 0.1, "data_seed": 0,
            **array_data.defaults(test_fraction=0.2)}


def arrays(cfg: dict) -> dict[str, np.ndarray]:
    """{'x': [num_samples, 2] float32, 'y': [num_samples] int32} for the section's keys."""
    from sklearn.datasets import make_moons
    cfg = {**defaults(), **cfg}
    n, noise, seed = cfg["num_samples"], cfg["noise"], cfg["data_seed"]
    check(type(n) is int and 10 <= n <= MAX_SAMPLES, "data.num_samples",
          f"must be an integer in [10, {MAX_SAMPLES:,}] (the stratified split needs a few points "
          f"of each moon); got {n!r}")
    check(type(noise) in (int, float) and math.isfinite(noise) and noise >= 0, "data.noise",
          f"must be a finite number >= 0 (noise standard deviation); got {noise!r}")
    check(type(seed) is int and 0 <= seed < 2**32, "data.data_seed",
          f"must be an integer in [0, 2**32); got {seed!r}")
    x, y = make_moons(n_samples=n, noise=noise, random_state=seed)
    return {"x": x.astype(np.float32), "y": y.astype(np.int32)}


def load(cfg: dict):
    """The `Data`: {'x': [b, 2], 'y': [b]} batches, two classes."""
    return array_data.from_arrays(arrays(cfg), cfg, "moons")
