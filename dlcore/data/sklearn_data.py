"""Data sets that ship inside scikit-learn: nothing is downloaded."""
from __future__ import annotations

import numpy as np


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
