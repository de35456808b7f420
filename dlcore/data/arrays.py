"""Arrays of examples as a `Data` value: what every example-based source shares.

    data = from_arrays({'x': [n, ...], 'y': [n] or [n, d], optional 'x_test', 'y_test'}, cfg)
    data = arrays(x, y, x_test=None, y_test=None, batch_size=100, ...)   # from Python

Keys of a section (`defaults()`):
    batch_size, shuffle            the batch at step t (dlcore.data.batching): stored order, or a
                                   fresh permutation per epoch drawn from the data key
    test_fraction                  only when the arrays have no test split: that fraction of the
                                   examples, stratified by class for labels, drawn with split_seed
    validation_fraction            the last fraction of the training examples, held out
    augment_shift, augment_noise   random circular shifts along the first axis and Gaussian noise,
                                   applied to training batches only (dlcore.data.augment)

Integer targets make a classification task (labels 0..C-1; num_outputs C), float targets a
regression (num_outputs d). Every split is checked before anything compiles: shapes, dtypes,
counts, NaN/Inf, negative labels; a ConfigError names the split and the problem.
"""
from __future__ import annotations

import jax
import numpy as np

from dlcore.config import ConfigError, check
from dlcore.core import Data
from dlcore.data import augment
from dlcore.data.batching import batch_at


def defaults(test_fraction: float | None = None) -> dict:
    """The keys of an array source (test_fraction only for sources that may lack a test split)."""
    cfg = {"batch_size": 100, "shuffle": False, "validation_fraction": 0.0, "augment_shift": 0,
           "augment_noise": 0.0}
    if test_fraction is not None:
        cfg.update(test_fraction=test_fraction, split_seed=0)
    return cfg


def arrays(x, y, x_test=None, y_test=None, **cfg) -> Data:
    """`Data` from arrays in memory (keys as in `defaults`, e.g. batch_size=64, test_fraction=0.2)."""
    given = {"x": x, "y": y, **({"x_test": x_test, "y_test": y_test} if x_test is not None else {})}
    unknown = set(cfg) - set(defaults(0.2))
    if unknown:
        raise ConfigError(f"arrays(): unknown keys {sorted(unknown)}; known: {sorted(defaults(0.2))}")
    return from_arrays(given, {**defaults(0.2), **cfg})


def from_arrays(a: dict, cfg: dict, name: str | None = None) -> Data:
    """Check, split and describe arrays; the batch is {'x', 'y'} at each step."""
    name = name or str(cfg.get("name", "arrays"))
    for key in ("x", "y"):
        if key not in a:
            raise ConfigError(f"data '{name}': no '{key}' array (found {sorted(a)})")
    if ("x_test" in a) != ("y_test" in a):
        raise ConfigError(f"data '{name}': 'x_test' and 'y_test' come together (found {sorted(a)})")
    x, y = np.asarray(a["x"]), np.asarray(a["y"])
    if "x_test" in a:
        splits = {"train": {"x": x, "y": y}, "test": {"x": np.asarray(a["x_test"]),
                                                      "y": np.asarray(a["y_test"])}}
    else:
        splits = _split_off_test(x, y, cfg, name)
    spec = check_arrays(splits, name)
    vf = cfg.get("validation_fraction", 0.0)
    check(isinstance(vf, (int, float)) and 0.0 <= vf < 1.0, "data.validation_fraction",
          f"must be in [0, 1); got {vf}")
    if vf > 0:  # the last fraction of the training set, so the test set stays untouched
        n_val = max(1, int(round(len(splits["train"]["x"]) * vf)))
        check(n_val < len(splits["train"]["x"]), "data.validation_fraction",
              f"{vf} leaves no training examples of {len(splits['train']['x'])}")
        tr = splits["train"]
        splits["validation"] = {k: v[-n_val:] for k, v in tr.items()}
        splits["train"] = {k: v[:-n_val] for k, v in tr.items()}
    n = len(splits["train"]["x"])
    bs = cfg.get("batch_size")
    check(isinstance(bs, int) and not isinstance(bs, bool) and bs > 0, "data.batch_size",
          f"must be a positive integer; got {bs}")
    check(bs <= n, "data.batch_size", f"{bs} is larger than the {n} training examples")
    return Data({k: splits[k] for k in ("train", "validation", "test") if k in splits},
                {**spec, "num_examples": n}, sampler(cfg))


def sampler(cfg: dict):
    """sample(train_split, step, key) -> {'x', 'y'}: the examples of `step` (batching.batch_at),
    augmented from their own stream of the data key when the section asks for it."""
    augment.validate(cfg)
    bs, shuffle = cfg["batch_size"], cfg.get("shuffle", False)
    check(isinstance(shuffle, bool), "data.shuffle", f"must be true or false; got {shuffle!r}")
    shift, noise = cfg.get("augment_shift", 0), cfg.get("augment_noise", 0.0)

    def sample(split, step, key):
        batch = batch_at(split, step, bs, shuffle, key)
        if shift or noise:
            k_aug = jax.random.fold_in(jax.random.fold_in(key, 0x5EED), step)
            batch = {**batch, "x": augment.shift_and_noise(batch["x"], k_aug, shift, noise)}
        return batch
    return sample


def _split_off_test(x, y, cfg: dict, name: str) -> dict:
    """A test split of `test_fraction` of the examples (stratified for class labels)."""
    from sklearn.model_selection import train_test_split
    tf = cfg.get("test_fraction")
    if tf is None:
        raise ConfigError(f"data '{name}' has no test split ('x_test', 'y_test') and its section "
                          "has no data.test_fraction to make one")
    check(isinstance(tf, (int, float)) and 0.0 < tf < 1.0, "data.test_fraction",
          f"must be in (0, 1) when the data has no test split; got {tf}")
    if len(x) != len(y):
        raise ConfigError(f"data '{name}': {len(x)} inputs but {len(y)} targets")
    labels = np.issubdtype(y.dtype, np.integer)
    try:
        xt, xs, yt, ys = train_test_split(x, y, test_size=tf, random_state=cfg.get("split_seed", 0),
                                          stratify=y if labels else None)
    except ValueError as e:  # too few examples of a class to stratify, or to split at all
        raise ConfigError(f"config key 'data.test_fraction': cannot split data '{name}' ({e})") from None
    return {"train": {"x": xt, "y": yt}, "test": {"x": xs, "y": ys}}


def check_arrays(splits: dict, name: str) -> dict:
    """Shapes, dtypes and finiteness of every split (converted in place to float32 inputs and
    int32 labels or float32 targets); returns the spec. ConfigError names the problem."""
    x, y = np.asarray(splits["train"]["x"]), np.asarray(splits["train"]["y"])
    classification = np.issubdtype(y.dtype, np.integer)
    for split, d in splits.items():
        xs, ys = np.asarray(d["x"]), np.asarray(d["y"])
        if xs.ndim == 0 or ys.ndim == 0:
            raise ConfigError(f"data '{name}' {split}: inputs and targets need a leading example "
                              f"axis; got shapes {xs.shape} and {ys.shape}")
        if len(xs) != len(ys):
            raise ConfigError(f"data '{name}' {split}: {len(xs)} inputs but {len(ys)} targets")
        if len(xs) == 0:
            raise ConfigError(f"data '{name}' {split}: no examples")
        if xs.shape[1:] != x.shape[1:]:
            raise ConfigError(f"data '{name}' {split}: inputs of shape {xs.shape[1:]}, "
                              f"train has {x.shape[1:]}")
        if ys.shape[1:] != y.shape[1:]:
            raise ConfigError(f"data '{name}' {split}: targets of shape {ys.shape[1:]}, "
                              f"train has {y.shape[1:]}")
        if not (np.issubdtype(xs.dtype, np.floating) or np.issubdtype(xs.dtype, np.integer)
                or xs.dtype == bool):
            raise ConfigError(f"data '{name}' {split}: inputs of dtype {xs.dtype} are not numeric")
        if not np.all(np.isfinite(xs)):
            raise ConfigError(f"data '{name}' {split}: inputs contain NaN or Inf")
        if not (np.issubdtype(ys.dtype, np.floating) or np.issubdtype(ys.dtype, np.integer)):
            raise ConfigError(f"data '{name}' {split}: targets of dtype {ys.dtype} are not numeric")
        if np.issubdtype(ys.dtype, np.floating) and not np.all(np.isfinite(ys)):
            raise ConfigError(f"data '{name}' {split}: targets contain NaN or Inf")
        if np.issubdtype(ys.dtype, np.integer) != classification:
            raise ConfigError(f"data '{name}' {split}: targets of dtype {ys.dtype}, train has "
                              f"{y.dtype} (integer labels are classes, floats regression targets)")
        if classification and ys.ndim != 1:
            raise ConfigError(f"data '{name}' {split}: class labels must be [n]; got {ys.shape}")
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
