"""MNIST-1D (Greydanus & Kobak, ICML 2024), generated locally and cached as .npz.

`mnist1d.data.make_dataset` is the reference generator; its `get_dataset` would try a download and
cache a pickle, so it is never called. Every generator argument is a config key (`data.*`), and the
cache file name hashes them, so a changed argument never reads a stale file.
"""
from __future__ import annotations

import hashlib
import json

import numpy as np

from dlcore.data import arrays as array_data
from dlcore.data.cache import cache_path, load_npz, save_npz

# The generator's own defaults (mnist1d.data.get_dataset_args), seed 42: 4000 train / 1000 test.
GENERATOR_ARGS = dict(num_samples=5000, train_split=0.8, template_len=12, padding=(36, 60),
                      scale_coeff=0.4, max_translation=48, corr_noise_scale=0.25,
                      iid_noise_scale=2e-2, shear_scale=0.75, shuffle_seq=False,
                      final_seq_length=40, seed=42)


def generate(args: dict) -> dict[str, np.ndarray]:
    """Run the reference generator: {'x': [n, L] f32, 'y': [n] i32, 'x_test', 'y_test'}."""
    from mnist1d.data import make_dataset
    from mnist1d.utils import ObjectView

    state = np.random.get_state()  # make_dataset seeds numpy's global generator; put it back
    try:
        d = make_dataset(ObjectView({**args, "padding": list(args["padding"])}))
    finally:
        np.random.set_state(state)
    return {"x": d["x"].astype(np.float32), "y": d["y"].astype(np.int32),
            "x_test": d["x_test"].astype(np.float32), "y_test": d["y_test"].astype(np.int32)}


def defaults() -> dict:
    """The `data` section: every generator argument, and the keys of array data."""
    return {**GENERATOR_ARGS, **array_data.defaults()}


def load(cfg: dict):
    """The `Data` of a `data` section: {'x': [b, 40], 'y': [b]} batches, ten classes."""
    return array_data.from_arrays(arrays(cfg), cfg, "mnist1d")


def arrays(cfg: dict) -> dict[str, np.ndarray]:
    """The arrays for the generator arguments found in `cfg` (other keys are ignored)."""
    args = {k: cfg.get(k, v) for k, v in GENERATOR_ARGS.items()}
    args["padding"] = tuple(args["padding"])
    digest = hashlib.sha256(json.dumps(args, sort_keys=True).encode()).hexdigest()[:16]
    path = cache_path(f"mnist1d-{digest}.npz")
    if path.exists():
        try:
            return load_npz(path, ("x", "y", "x_test", "y_test"))
        except ValueError:
            path.unlink()  # a torn cache file: regenerate rather than fail
    arrays = generate(args)
    save_npz(path, arrays)
    return arrays
