"""MNIST-1D (Greydanus & Kobak, ICML 2024), generated locally and cached as .npz.

`mnist1d.data.make_dataset` is the reference generator; its `get_dataset` would try a download and
cache a pickle, so it is never called. Every generator argument is a config key (`data.*`), and the
cache file name hashes them, so a changed argument never reads a stale file.
"""
from __future__ import annotations

import hashlib
import json

import numpy as np

from dlcore.config import check
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


def check_args(args: dict) -> None:
    """ConfigError for a generator argument the reference generator would crash on, loop on, or
    turn into an empty split (it checks none of them)."""
    def integer(key, low, what=""):
        v = args[key]
        check(type(v) is int and v >= low, f"data.{key}",
              f"must be an integer >= {low}{what}; got {v!r}")

    def number(key, low=0.0):
        v = args[key]
        check(isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v)
              and v >= low, f"data.{key}", f"must be a number >= {low}; got {v!r}")

    integer("num_samples", 10, " (the generator makes num_samples // 10 examples per class)")
    for key in ("template_len", "max_translation", "final_seq_length"):
        integer(key, 1)
    for key in ("scale_coeff", "corr_noise_scale", "iid_noise_scale", "shear_scale"):
        number(key)
    ts = args["train_split"]
    check(isinstance(ts, (int, float)) and not isinstance(ts, bool) and 0 < ts < 1,
          "data.train_split", f"must be a fraction in (0, 1); got {ts!r}")
    n = 10 * (args["num_samples"] // 10)
    check(n * args["final_seq_length"] < 2**31, "data.num_samples",
          f"{n:,} sequences of data.final_seq_length {args['final_seq_length']} are more values "
          "than one array can index (2**31)")
    check(0 < int(n * ts) < n, "data.train_split",
          f"{ts} of {n} examples leaves the train or the test split empty")
    pad = args["padding"]
    check(isinstance(pad, (list, tuple)) and len(pad) == 2
          and all(type(p) is int and p >= 0 for p in pad) and pad[0] <= pad[1], "data.padding",
          f"must be two integers 0 <= low <= high (zeros appended to a template); got {pad!r}")
    check(isinstance(args["shuffle_seq"], bool), "data.shuffle_seq",
          f"must be true or false; got {args['shuffle_seq']!r}")
    seed = args["seed"]
    check(type(seed) is int and 0 <= seed < 2**32, "data.seed",
          f"must be an integer in [0, 2**32); got {seed!r}")


def defaults() -> dict:
    """The `data` section: every generator argument, and the keys of array data."""
    return {**GENERATOR_ARGS, **array_data.defaults()}


def load(cfg: dict):
    """The `Data` of a `data` section: {'x': [b, 40], 'y': [b]} batches, ten classes."""
    return array_data.from_arrays(arrays(cfg), cfg, "mnist1d")


def arrays(cfg: dict) -> dict[str, np.ndarray]:
    """The arrays for the generator arguments found in `cfg` (other keys are ignored)."""
    args = {k: cfg.get(k, v) for k, v in GENERATOR_ARGS.items()}
    check_args(args)
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
