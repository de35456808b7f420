"""scikit-learn's 8x8 handwritten digits (1797 images, 10 classes), shipped inside scikit-learn.

Pixels are scaled to [0, 1]; x: [n, 8, 8, 1] float32, y: [n] int32. The split is fixed and
documented: stratified, test fraction `data.test_fraction` (default 0.2, giving 1437 train / 360
test), drawn with `data.split_seed` (default 0).
"""
from __future__ import annotations

import numpy as np

from dlcore.data import arrays as array_data


def defaults() -> dict:
    return array_data.defaults(test_fraction=0.2)


def arrays() -> dict[str, np.ndarray]:
    """All 1797 digits: {'x': [1797, 8, 8, 1], 'y': [1797]}."""
    from sklearn.datasets import load_digits
    d = load_digits()
    return {"x": (d.images / 16.0).astype(np.float32)[..., None], "y": d.target.astype(np.int32)}


def load(cfg: dict):
    return array_data.from_arrays(arrays(), cfg, "digits")
