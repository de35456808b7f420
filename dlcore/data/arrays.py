"""Arrays of examples as a `Data` value: what every example-based source shares.

    data = from_arrays({'x': [n, ...], 'y': [n] or [n, d], optional 'x_test', 'y_test'}, cfg)
    data = arrays(x, y, x_test=None, y_test=None, batch_size=100, ...)   # from Python

Keys of a section (`defaults()`):
    batch_size, shuffle            the batch at step t (dlcore.data.batching): stored order, or a
                                   fresh permutation per epoch drawn from the data key
    test_fraction                  only when the arrays have no test split: that fraction of the
                                   examples, stratified by class for labels, drawn with split_seed
    validation_fraction            the last fraction of the training examples, held out
    classes                        None: every class. A list of class labels, e.g. [5, 6, 7, 8,
                                   9]: only their examples are kept, in every split, relabelled
                                   0..k-1 in the list's order (num_outputs k). Applied after the
                                   test split is drawn, so the test examples are those of the
                                   whole source's split; before validation_fraction and labels
    augment_shift, augment_noise   random circular shifts along the first axis and Gaussian noise,
                                   applied to training batches only (dlcore.data.augment)
    labels, unlabeled_batch_size   None: every training label. N: only N training examples keep
                                   their labels (stratified, drawn with split_seed), and the batch
                                   adds 'x_unlabeled' from all of them (dlcore.data.few_labels)

Integer targets make a classification task (labels 0..C-1; num_outputs C, C from the training
labels), float targets a regression (num_outputs d). Every split is checked when it is loaded,
before anything is written or compiled: shapes, dtypes, counts, NaN/Inf and values float32 cannot
hold, labels that are negative, outside the training split's classes or no class indices at all;
a ConfigError names the data (a file's path), the split and the problem.
"""
from __future__ import annotations

import jax
import numpy as np

from dlcore.config import ConfigError, check
from dlcore.core import Data
from dlcore.data import augment, few_labels
from dlcore.data.batching import batch_at


def defaults(test_fraction: float | None = None) -> dict:
    """The keys of an array source (test_fraction only for sources that may lack a test split)."""
    cfg = {"batch_size": 100, "shuffle": False, "validation_fraction": 0.0, "augment_shift": 0,
           "augment_noise": 0.0, "labels": None, "unlabeled_batch_size": None, "split_seed": 0,
           "classes": None}
    if test_fraction is not None:
        cfg.update(test_fraction=test_fraction)
    return cfg


def arrays(x, y, x_test=None, y_test=None, **cfg) -> Data:
    """`Data` from arrays in memory (keys as in `defaults`, e.g. batch_size=64, test_fraction=0.2)."""
    given = {"x": x, "y": y, **({"x_test": x_test, "y_test": y_test} if x_test is not None else {})}
    unknown = set(cfg) - set(defaults(0.2))
    if unknown:
        raise ConfigError(f"arrays(): unknown keys {sorted(unknown)}; known: {sorted(defaults(0.2))}")
    return from_arrays(given, {**defaults(0.2), **cfg})


def from_arrays(a: dict, cfg: dict, name: str | None = None) -> Data:
    """Check, split and describe arrays; the batch is {'x', 'y'} at each step. name: what
    messages call the data (a file's path for data read from one)."""
    name = name or str(cfg.get("name", "arrays"))
    if not isinstance(a, dict):
        raise ConfigError(f"data '{name}': expected a dict of arrays {{'x', 'y'[, 'x_test', "
                          f"'y_test']}}; got {type(a).__name__}")
    for key in ("x", "y"):
        if key not in a:
            raise ConfigError(f"data '{name}': no '{key}' array (found {sorted(map(str, a))})")
    if ("x_test" in a) != ("y_test" in a):
        raise ConfigError(f"data '{name}': 'x_test' and 'y_test' come together (found {sorted(a)})")
    given = {k: _as_array(a[k], k, name) for k in ("x", "y", "x_test", "y_test") if k in a}
    if "x_test" in given:
        splits = {"train": {"x": given["x"], "y": given["y"]},
                  "test": {"x": given["x_test"], "y": given["y_test"]}}
        spec = check_arrays(splits, name)
    else:  # every example is checked before the labels decide a stratified split
        whole = {"train": {"x": given["x"], "y": given["y"]}}
        spec = check_arrays(whole, name)
        splits = _split_off_test(whole["train"]["x"], whole["train"]["y"], cfg, name)
    splits, spec = keep_classes(splits, spec, cfg.get("classes"), name)
    vf = cfg.get("validation_fraction", 0.0)
    check(_is_number(vf) and 0.0 <= vf < 1.0, "data.validation_fraction",
          f"must be in [0, 1); got {vf!r}")
    if vf > 0:  # the last fraction of the training set, so the test set stays untouched
        n_val = max(1, int(round(len(splits["train"]["x"]) * vf)))
        check(n_val < len(splits["train"]["x"]), "data.validation_fraction",
              f"{vf} leaves no training examples of {len(splits['train']['x'])}")
        tr = splits["train"]
        splits["validation"] = {k: v[-n_val:] for k, v in tr.items()}
        splits["train"] = {k: v[:-n_val] for k, v in tr.items()}
    bs = cfg.get("batch_size")
    check(isinstance(bs, int) and not isinstance(bs, bool) and bs > 0, "data.batch_size",
          f"must be a positive integer; got {bs!r}")
    splits["train"], spec = few_labels.restrict(splits["train"], spec, cfg, name)
    n = len(splits["train"]["x"])
    check(bs <= n, "data.batch_size", f"{bs} is larger than the {n} training examples" +
          (" that keep their labels (data.labels)" if "labels" in spec else ""))
    return Data({k: splits[k] for k in ("train", "validation", "test") if k in splits},
                {**spec, "num_examples": n}, sampler(cfg))


def keep_classes(splits: dict, spec: dict, classes, name: str) -> tuple[dict, dict]:
    """(splits, spec) with only the examples of `classes` (data.classes), their labels mapped to
    their positions in the list: {'x': [n, ...], 'y': [n]} per split -> [m, ...], [m] with labels
    0..k-1, spec['num_outputs'] k. None: unchanged. ConfigError for a regression, a repeated or
    unknown class, or a split left without examples."""
    if classes is None:
        return splits, spec
    ok = (isinstance(classes, (list, tuple)) and len(classes) > 0
          and all(type(c) is int for c in classes))
    check(ok, "data.classes", f"must be None (every class) or a list of class labels such as "
          f"[5, 6, 7, 8, 9]; got {classes!r}")
    check(spec["task"] == "classification", "data.classes", f"data '{name}' has float targets "
          "(a regression), no classes to choose from")
    check(len(set(classes)) == len(classes), "data.classes", f"lists a class twice: {classes}")
    c = spec["num_outputs"]
    unknown = [k for k in classes if not 0 <= k < c]
    check(not unknown, "data.classes", f"class {unknown[0] if unknown else ''} is not among the "
          f"{c} classes 0..{c - 1} of data '{name}'")
    absent = [k for k in classes if not np.any(splits["train"]["y"] == k)]
    check(not absent, "data.classes", f"class {absent[0] if absent else ''} has no training "
          f"example in data '{name}'")
    relabel = np.full(c, -1, np.int32)  # -1: dropped
    relabel[list(classes)] = np.arange(len(classes), dtype=np.int32)
    out = {}
    for split, d in splits.items():
        y = relabel[d["y"]]
        keep = y >= 0
        check(keep.any(), "data.classes", f"data '{name}' {split} has no example of the classes "
              f"{list(classes)}")
        out[split] = {**{k: v[keep] for k, v in d.items()}, "y": y[keep]}
    return out, {**spec, "num_outputs": len(classes)}


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _as_array(value, key: str, name: str) -> np.ndarray:
    """np.asarray, with a ragged list or an object that is no array named in one line."""
    try:
        out = np.asarray(value)
    except (ValueError, TypeError) as e:  # e.g. lists of different lengths
        raise ConfigError(f"data '{name}': '{key}' is not an array ({e})") from None
    if out.dtype == object:
        raise ConfigError(f"data '{name}': '{key}' holds Python objects (dtype object), not "
                          "numbers")
    return out


def sampler(cfg: dict):
    """sample(train_split, step, key) -> {'x', 'y'}: the examples of `step` (batching.batch_at),
    augmented from their own stream of the data key when the section asks for it."""
    augment.validate(cfg)
    bs, shuffle = cfg["batch_size"], cfg.get("shuffle", False)
    check(isinstance(shuffle, bool), "data.shuffle", f"must be true or false; got {shuffle!r}")
    shift, noise = cfg.get("augment_shift", 0), cfg.get("augment_noise", 0.0)
    few = few_labels.settings(cfg)[0] is not None

    def sample(split, step, key):
        labeled = {k: v for k, v in split.items() if k != "x_unlabeled"}
        batch = batch_at(labeled, step, bs, shuffle, key)
        if shift or noise:
            k_aug = jax.random.fold_in(jax.random.fold_in(key, 0x5EED), step)
            batch = {**batch, "x": augment.shift_and_noise(batch["x"], k_aug, shift, noise)}
        if few:
            batch["x_unlabeled"] = few_labels.unlabeled_batch(split, step, cfg, key)
        return batch
    return sample


def _split_off_test(x, y, cfg: dict, name: str) -> dict:
    """A test split of `test_fraction` of the examples (stratified for class labels); x and y are
    checked already (check_arrays)."""
    from sklearn.model_selection import train_test_split
    tf = cfg.get("test_fraction")
    if tf is None:
        raise ConfigError(f"data '{name}' has no test split ('x_test', 'y_test') and its section "
                          "has no data.test_fraction to make one")
    check(_is_number(tf) and 0.0 < tf < 1.0, "data.test_fraction",
          f"must be in (0, 1) when the data has no test split; got {tf!r}")
    seed = cfg.get("split_seed", 0)
    check(type(seed) is int and 0 <= seed < 2**32, "data.split_seed",
          f"must be an integer in [0, 2**32); got {seed!r}")
    labels = np.issubdtype(y.dtype, np.integer)
    if labels:  # sklearn's own message lists every class; name the first one instead
        counts = np.bincount(y)
        lonely = np.flatnonzero((counts > 0) & (counts < 2))
        if lonely.size:
            raise ConfigError(f"data '{name}': class {lonely[0]} has a single example "
                              f"({lonely.size} classes do); a stratified test split "
                              "(data.test_fraction) needs two of each, or give x_test and y_test")
    try:
        xt, xs, yt, ys = train_test_split(x, y, test_size=tf, random_state=seed,
                                          stratify=y if labels else None)
    except ValueError as e:  # too few examples to split at all, or fewer than classes
        raise ConfigError(f"config key 'data.test_fraction': cannot split data '{name}' ({e})") from None
    return {"train": {"x": xt, "y": yt}, "test": {"x": xs, "y": ys}}


def check_arrays(splits: dict, name: str) -> dict:
    """Shapes, dtypes, values and labels of every split, converted in place to float32 inputs and
    int32 labels or float32 targets; returns the spec. ConfigError names the split and problem.

    splits: {'train': {'x': [n, ...], 'y': [n] or [n, ...]}, other splits alike}. Integer targets
    are class labels 0..C-1 with C taken from the training split alone: a test label outside it
    would silently widen the output layer.
    """
    x, y = np.asarray(splits["train"]["x"]), np.asarray(splits["train"]["y"])
    classification = np.issubdtype(y.dtype, np.integer)
    for split, d in splits.items():
        xs, ys = np.asarray(d["x"]), np.asarray(d["y"])
        at = f"data '{name}' {split}"
        names = ("x", "y") if split == "train" else (f"x_{split}", f"y_{split}")
        _check_layout(xs, ys, x, y, at)
        if ys.dtype == bool:
            raise ConfigError(f"{at}: targets of dtype bool; class labels must be integers "
                              "0..C-1 (y.astype(int)), regression targets floats")
        if not (np.issubdtype(ys.dtype, np.floating) or np.issubdtype(ys.dtype, np.integer)):
            raise ConfigError(f"{at}: targets of dtype {ys.dtype} are not numeric")
        if np.issubdtype(ys.dtype, np.integer) != classification:
            raise ConfigError(f"{at}: targets of dtype {ys.dtype}, train has "
                              f"{y.dtype} (integer labels are classes, floats regression targets)")
        if classification:
            _check_labels(ys, at)
        d["x"] = _float32(xs, f"{at}: inputs", names[0])
        d["y"] = ys if classification else _float32(ys, f"{at}: targets", names[1])
    if classification:
        num_outputs = class_count(splits["train"]["y"], f"data '{name}' train")
        for split, d in splits.items():
            _check_in_classes(d["y"], num_outputs, f"data '{name}' {split}")
            d["y"] = d["y"].astype(np.int32)  # safe now: every label is below num_outputs
    else:
        num_outputs = int(np.prod(y.shape[1:])) if y.ndim > 1 else 1
    return {"input_shape": tuple(x.shape[1:]), "num_outputs": num_outputs,
            "task": "classification" if classification else "regression"}


def _check_layout(xs: np.ndarray, ys: np.ndarray, x: np.ndarray, y: np.ndarray, at: str) -> None:
    """One split's shapes against the training split's, and its input dtype."""
    if xs.ndim == 0 or ys.ndim == 0:
        raise ConfigError(f"{at}: inputs and targets need a leading example axis; got shapes "
                          f"{xs.shape} and {ys.shape}")
    if len(xs) != len(ys):
        raise ConfigError(f"{at}: {len(xs)} inputs but {len(ys)} targets")
    if len(xs) == 0:
        raise ConfigError(f"{at}: no examples")
    if xs.shape[1:] != x.shape[1:]:
        raise ConfigError(f"{at}: inputs of shape {xs.shape[1:]}, train has {x.shape[1:]}")
    if ys.shape[1:] != y.shape[1:]:
        raise ConfigError(f"{at}: targets of shape {ys.shape[1:]}, train has {y.shape[1:]}")
    if 0 in xs.shape[1:]:
        raise ConfigError(f"{at}: inputs of shape {xs.shape[1:]} hold no values")
    if not (np.issubdtype(xs.dtype, np.floating) or np.issubdtype(xs.dtype, np.integer)
            or xs.dtype == bool):
        raise ConfigError(f"{at}: inputs of dtype {xs.dtype} are not numeric")


def _check_labels(ys: np.ndarray, at: str) -> None:
    """Class labels: [n] and not negative (their range is checked against the training split)."""
    if ys.ndim != 1:
        raise ConfigError(f"{at}: class labels must be [n]; got {ys.shape} (integer labels are "
                          "class indices 0..C-1: one-hot rows are y.argmax(-1); regression "
                          "targets are floats, y.astype(float))")
    if ys.min() < 0:
        raise ConfigError(f"{at}: negative class label {ys.min()}; labels must be class indices "
                          "0..C-1")


def class_count(y: np.ndarray, at: str) -> int:
    """C = largest training label + 1, refused when most of 0..C-1 never occurs (more missing
    classes than present ones, and more than a small data set may lack): labels that are not
    indices (years, ids, a stray 2e9) would make an absurd output layer (2e9 units: 128 GB)."""
    top, distinct = int(y.max()), len(np.unique(y))
    missing = top + 1 - distinct
    if missing > max(distinct, 10):
        raise ConfigError(f"{at}: labels run up to {top} but only {distinct} distinct values "
                          f"occur, so {missing} of {top + 1} classes would never be seen; labels "
                          "must be class indices 0..C-1 (np.unique(y, return_inverse=True)[1] "
                          "maps them there)")
    return top + 1


def _check_in_classes(ys: np.ndarray, num_classes: int, at: str) -> None:
    """Every label of a split within the training split's classes 0..num_classes-1."""
    outside = ys[ys >= num_classes]
    if outside.size:
        raise ConfigError(f"{at}: label {int(outside.max())} is outside the {num_classes} "
                          f"classes of the training labels (0..{num_classes - 1}); "
                          f"{outside.size} example(s) have such labels")


def _float32(a: np.ndarray, at: str, key: str) -> np.ndarray:
    """`a` as float32, refusing NaN/Inf and finite values float32 cannot hold (1e300 would become
    Inf and surface much later as a diverged loss)."""
    with np.errstate(over="ignore", invalid="ignore"):
        out = a.astype(np.float32)
    if np.all(np.isfinite(out)):
        return out
    if not np.all(np.isfinite(a)):
        raise ConfigError(f"{at} contain NaN or Inf (array '{key}')")
    big = float(np.max(np.abs(a.astype(np.float64))))
    raise ConfigError(f"{at} overflow float32 (array '{key}'): magnitudes up to {big:.3g}, the "
                      f"largest float32 is {float(np.finfo(np.float32).max):.3g}; rescale them")
