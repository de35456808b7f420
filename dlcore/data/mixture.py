"""The 2-D Gaussian mixtures of PacGAN (Lin et al., NeurIPS 2018), for counting a GAN's modes.

`data.kind`:
    "ring"  8 modes equally spaced on the unit circle (angles 2*pi*k/8), sigma 0.01;
    "grid"  25 modes at {-4, -2, 0, 2, 4}^2 (row-major, x slowest), sigma 0.05.
`data.sigma` (None: the kind's published value) overrides the standard deviation of every mode.

Each sample picks its mode uniformly at random and adds N(0, sigma^2 I). x: [n, 2] float32,
y: [n] int32, the mode's index. The splits are drawn with numpy from `data.data_seed`, training and
test from independent streams: `data.num_samples` (100,000) train, `data.test_samples` (2,500)
test; `data.validation_fraction` holds out the end of the training split. spec adds 'modes', a
tuple of (x, y) float tuples, and 'sigma'; `mode_metrics` scores generated samples against them.
"""
from __future__ import annotations

import math
from functools import partial

import jax.numpy as jnp
import numpy as np

from dlcore.config import check, one_of
from dlcore.data import arrays as array_data

SIGMA = {"ring": 0.01, "grid": 0.05}  # PacGAN's values
MAX_SAMPLES = 10_000_000  # 10M points are 80 MB; more is a typo, not a wish


def defaults() -> dict:
    return {"kind": "ring", "sigma": None, "num_samples": 100_000, "test_samples": 2500,
            # stored order: the samples are drawn in random order already, and a fresh permutation
            # of 100,000 indices at every step would cost more than a 2-D GAN's step
            "data_seed": 0, **array_data.defaults(), "batch_size": 100, "shuffle": False}


def mode_centres(kind: str) -> np.ndarray:
    """The mode centres of `kind`: [8, 2] for "ring", [25, 2] for "grid" (float64)."""
    if kind == "ring":
        angles = 2 * np.pi * np.arange(8) / 8
        # rounded so that cos(pi/2) is 0.0, not 6e-17 (+ 0.0 turns -0.0 into 0.0)
        return np.round(np.stack([np.cos(angles), np.sin(angles)], axis=1), 12) + 0.0
    side = np.arange(-4.0, 5.0, 2.0)
    return np.stack(np.meshgrid(side, side, indexing="ij"), axis=-1).reshape(-1, 2)


def _settings(cfg: dict) -> tuple:
    cfg = {**defaults(), **cfg}
    kind = one_of(cfg["kind"], "data.kind", SIGMA)
    sigma = SIGMA[kind] if cfg["sigma"] is None else cfg["sigma"]
    check(type(sigma) in (int, float) and math.isfinite(sigma) and sigma > 0, "data.sigma",
          f"must be a finite number > 0, or None for the kind's own ({SIGMA[kind]}); got {sigma!r}")
    for key in ("num_samples", "test_samples"):
        n = cfg[key]
        check(type(n) is int and 1 <= n <= MAX_SAMPLES, f"data.{key}",
              f"must be an integer in [1, {MAX_SAMPLES:,}]; got {n!r}")
    seed = cfg["data_seed"]
    check(type(seed) is int and 0 <= seed < 2**32, "data.data_seed",
          f"must be an integer in [0, 2**32); got {seed!r}")
    return kind, float(sigma), cfg["num_samples"], cfg["test_samples"], seed


def arrays(cfg: dict) -> dict[str, np.ndarray]:
    """{'x': [num_samples, 2], 'y': [num_samples], 'x_test': [test_samples, 2], 'y_test'}."""
    kind, sigma, n_train, n_test, seed = _settings(cfg)
    centres = mode_centres(kind)
    train_rng, test_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))

    def draw(rng, n):
        y = rng.integers(len(centres), size=n)
        x = centres[y] + sigma * rng.standard_normal((n, 2))
        return x.astype(np.float32), y.astype(np.int32)

    x, y = draw(train_rng, n_train)
    # the classes are the training labels' (arrays.check_arrays): every mode must be drawn there
    missing = np.flatnonzero(np.bincount(y, minlength=len(centres)) == 0)
    if missing.size:
        check(False, "data.num_samples",
              f"{n_train} samples drew none of mode {missing[0]} ({missing.size} of "
              f"{len(centres)} modes missing); use more, e.g. {20 * len(centres)}")
    x_test, y_test = draw(test_rng, n_test)
    return {"x": x, "y": y, "x_test": x_test, "y_test": y_test}


def load(cfg: dict):
    """The `Data`: {'x': [b, 2], 'y': [b]} batches; spec adds 'modes', 'sigma' and
    'score_samples' (generated samples [n, 2] -> `mode_metrics`, what a GAN reports)."""
    kind, sigma, *_ = _settings(cfg)
    data = array_data.from_arrays(arrays(cfg), cfg, "mixture")
    centres = tuple((float(a), float(b)) for a, b in mode_centres(kind))
    return data._replace(spec={**data.spec, "modes": centres, "sigma": sigma,
                               "score_samples": partial(mode_metrics, modes=centres, sigma=sigma)})


def mode_metrics(samples, modes, sigma) -> dict:
    """PacGAN's mode metrics of generated samples [n >= 1, 2] against mode centres [K, 2]; jittable.

    Each sample is assigned to its nearest mode; it is high quality when within 3 sigma of it
    (Euclidean distance). Returns scalars:
        'modes'         int32, the number of modes with at least one high-quality sample;
        'high_quality'  the fraction of samples that are high quality;
        'reverse_kl'    KL(q || p), q the normalised histogram of the high-quality samples over
                        the modes (0 log 0 = 0), p uniform over the K modes. Without any
                        high-quality sample it is log K, the largest value any q can have (all
                        mass on one mode): finite, so means over seeds and plots still work.
    """
    x = jnp.asarray(samples, jnp.float32)
    centres = jnp.asarray(modes, jnp.float32)
    k = centres.shape[0]
    dist = jnp.linalg.norm(x[:, None, :] - centres[None, :, :], axis=-1)  # [n, K]
    good = jnp.min(dist, axis=1) <= 3 * sigma
    counts = jnp.zeros(k, jnp.float32).at[jnp.argmin(dist, axis=1)].add(good.astype(jnp.float32))
    total = counts.sum()
    q = counts / jnp.maximum(total, 1.0)
    kl = jnp.sum(jnp.where(q > 0, q * jnp.log(jnp.where(q > 0, q, 1.0) * k), 0.0))
    return {"modes": jnp.sum(counts > 0).astype(jnp.int32),
            "high_quality": jnp.mean(good.astype(jnp.float32)),
            "reverse_kl": jnp.where(total > 0, kl, jnp.log(float(k)))}
