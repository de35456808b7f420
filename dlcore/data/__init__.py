"""Data sets as dicts of numpy arrays, split into 'train', optional 'validation', and 'test'.

`load(cfg)` returns (splits, spec): splits = {'train': {'x': [n, ...], 'y': [n] or [n, d]}, ...};
spec = {'input_shape', 'task' ('classification' | 'regression'), 'num_outputs'}.
"""
from __future__ import annotations

import numpy as np

from dlcore.config import ConfigError, check, one_of
from dlcore.data import files, mnist1d, sequences, sklearn_data

SOURCES = {
    "mnist1d": mnist1d.load,
    "digits": sklearn_data.digits,
    "diabetes": sklearn_data.diabetes,
    "adding": sequences.adding,
    "npz": files.npz,
    "mnist_idx": files.mnist_idx,
    "cifar10_binary": files.cifar10_binary,
}


def load(cfg: dict) -> tuple[dict[str, dict[str, np.ndarray]], dict]:
    """Load, check and split the data named by `cfg['name']`."""
    source = SOURCES[one_of(cfg["name"], "data.name", SOURCES)]
    check(isinstance(cfg["batch_size"], int) and cfg["batch_size"] > 0, "data.batch_size",
          f"must be a positive integer; got {cfg['batch_size']}")
    vf = cfg.get("validation_fraction", 0.0)
    check(0.0 <= vf < 1.0, "data.validation_fraction", f"must be in [0, 1); got {vf}")
    a = source(cfg)
    splits = {"train": {"x": a["x"], "y": a["y"]}, "test": {"x": a["x_test"], "y": a["y_test"]}}
    spec = check_arrays(splits, cfg["name"])
    if vf > 0:  # the last fraction of the training set, so the test set stays untouched
        n_val = max(1, int(round(len(a["x"]) * vf)))
        tr = splits["train"]
        splits["validation"] = {k: v[-n_val:] for k, v in tr.items()}
        splits["train"] = {k: v[:-n_val] for k, v in tr.items()}
    n = len(splits["train"]["x"])
    check(cfg["batch_size"] <= n, "data.batch_size",
          f"{cfg['batch_size']} is larger than the {n} training examples")
    return splits, spec


def check_arrays(splits: dict, name: str) -> dict:
    """Shapes, dtypes and finiteness of every split; returns the spec. ConfigError names the problem."""
    x, y = splits["train"]["x"], splits["train"]["y"]
    classification = np.issubdtype(y.dtype, np.integer)
    for split, d in splits.items():
        xs, ys = d["x"], d["y"]
        if len(xs) != len(ys):
            raise ConfigError(f"data '{name}' {split}: {len(xs)} inputs but {len(ys)} targets")
        if len(xs) == 0:
            raise ConfigError(f"data '{name}' {split}: no examples")
        if xs.shape[1:] != x.shape[1:]:
            raise ConfigError(f"data '{name}' {split}: inputs of shape {xs.shape[1:]}, "
                              f"train has {x.shape[1:]}")
        if not np.issubdtype(xs.dtype, np.floating) and not np.issubdtype(xs.dtype, np.integer):
            raise ConfigError(f"data '{name}' {split}: inputs of dtype {xs.dtype} are not numeric")
        if not np.all(np.isfinite(xs)):
            raise ConfigError(f"data '{name}' {split}: inputs contain NaN or Inf")
        if np.issubdtype(ys.dtype, np.floating) and not np.all(np.isfinite(ys)):
            raise ConfigError(f"data '{name}' {split}: targets contain NaN or Inf")
        if np.issubdtype(ys.dtype, np.integer) != classification:
            raise ConfigError(f"data '{name}' {split}: targets of dtype {ys.dtype}, train has {y.dtype}")
        if classification and ys.min() < 0:
            raise ConfigError(f"data '{name}' {split}: negative class label {ys.min()}")
        d["x"] = xs.astype(np.float32)
        d["y"] = ys.astype(np.int32) if classification else ys.astype(np.float32)
    if classification:
        num_outputs = int(max(d["y"].max() for d in splits.values())) + 1
    else:
        num_outputs = int(np.prod(y.shape[1:])) if y.ndim > 1 else 1
    return {"input_shape": tuple(x.shape[1:]), "num_outputs": num_outputs,
            "task": "classification" if classification else "regression"}
