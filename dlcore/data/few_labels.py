"""A few labels of an array source: semi-supervised classification and its supervised baseline.

Keys of an array source's section (dlcore.data.arrays.defaults):
    labels                 None: every training label is kept (the source as it always was). An
                           integer N: N training examples keep their labels, chosen stratified by
                           `choose` with np.random.default_rng(split_seed): N // C per class, the
                           N % C left over to as many classes drawn at random (a class with too
                           few examples gives its share to the others); the others lose theirs.
    unlabeled_batch_size   the examples of the unlabeled batch (FixMatch's mu * B); None: 7 x
                           batch_size (mu = 7, Sohn et al. 2020). Only with `labels`.
    split_seed             the seed of every split the source draws: the test split (when it
                           has none, data.test_fraction) and the labeled subset.

With `labels` = N the training split is {'x': [N, ...], 'y': [N], 'x_unlabeled': [n, ...]}: the
labeled examples (in stored order) and the inputs of all n training examples, the labeled ones
among them, without labels. The batch mirrors it: {'x': [batch_size, ...], 'y': [batch_size]}
from the N labeled examples exactly as any array batch is drawn (stored order or a permutation
per epoch, `data.augment_*` applied to 'x' only), and 'x_unlabeled': [unlabeled_batch_size, ...]
from all n, drawn the same way from its own stream of the data key, never augmented (the
algorithm augments it). So any algorithm of examples {'x', 'y'} trains on the N labeled examples
alone, ignoring 'x_unlabeled': `supervised` on such data is the labels-only baseline of the same
network, and its final 'train_eval' scores those N. The validation split (data.validation_fraction)
and the test split keep every label; the validation examples are cut from the training split first
and are never among the unlabeled ones.

spec adds 'labels' (N), 'num_unlabeled' (n) and 'labeled_indices' (int array [N]: where the labeled
examples sit in 'x_unlabeled', for transductive baselines such as scikit-learn's LabelSpreading);
'num_examples' is N, the examples the {'x', 'y'} batch draws from.
"""
from __future__ import annotations

import jax
import numpy as np

from dlcore.config import ConfigError, check
from dlcore.data.batching import batch_at

MU = 7                  # FixMatch's ratio of unlabeled to labeled examples in a batch
UNLABELED_STREAM = 0x0F1  # fold_in tag of the unlabeled batch's permutations


def choose(y: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Indices [n] (ascending) of `n` examples of labels y [m], stratified: n // K of each of the K
    classes present, the n % K left over to K classes drawn with np.random.default_rng(seed), a
    class with fewer examples than its share keeping all of them and the shortfall going one by
    one to random classes that have more. Needs K <= n <= m."""
    y = np.asarray(y)
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(y, return_counts=True)
    k = len(classes)
    if not k <= n <= len(y):
        raise ValueError(f"choose: {n} labels of {len(y)} examples in {k} classes")
    quota = np.full(k, n // k)
    quota[rng.permutation(k)[: n % k]] += 1
    quota = np.minimum(quota, counts)
    while quota.sum() < n:  # ends: n <= counts.sum()
        spare = np.flatnonzero(quota < counts)
        quota[rng.permutation(spare)[: n - quota.sum()]] += 1
    picked = [rng.choice(np.flatnonzero(y == c), q, replace=False)
              for c, q in zip(classes, quota)]
    return np.sort(np.concatenate(picked))


def settings(cfg: dict) -> tuple:
    """(labels, unlabeled_batch_size, split_seed) of a section, checked; labels None: off."""
    n, ubs, seed = cfg.get("labels"), cfg.get("unlabeled_batch_size"), cfg.get("split_seed", 0)
    check(n is None or (type(n) is int and n > 0), "data.labels",
          f"must be None (every training label) or a positive integer, the number of training "
          f"examples that keep their labels; got {n!r}")
    check(ubs is None or (type(ubs) is int and 0 < ubs < 2**31), "data.unlabeled_batch_size",
          f"must be None ({MU} x data.batch_size) or a positive integer; got {ubs!r}")
    check(n is not None or ubs is None, "data.unlabeled_batch_size",
          "draws unlabeled examples, and there are none: set data.labels (the number of training "
          "examples that keep their labels) or leave it None")
    if n is not None:
        check(type(seed) is int and 0 <= seed < 2**32, "data.split_seed",
              f"must be an integer in [0, 2**32); got {seed!r}")
    return n, ubs, seed


def restrict(train: dict, spec: dict, cfg: dict, name: str) -> tuple[dict, dict]:
    """(training split, spec) with only `data.labels` labels kept (module docstring); unchanged
    when it is None. train: {'x': [n, ...], 'y': [n]} checked already (arrays.check_arrays)."""
    n_labels, ubs, seed = settings(cfg)
    if n_labels is None:
        return train, spec
    x, y = train["x"], train["y"]
    if spec["task"] != "classification":
        raise ConfigError(
            f"config key 'data.labels': labels requested from an unlabeled set: data '{name}' has "
            f"float targets of shape {tuple(y.shape[1:])} (a regression), no class labels to keep "
            "a few of; semi-supervised classification needs integer class labels (leave "
            "data.labels None)")
    n, present = len(y), np.unique(y)
    held = (f" (data.validation_fraction {cfg.get('validation_fraction')} holds the rest out)"
            if cfg.get("validation_fraction") else "")
    check(n_labels <= n, "data.labels", f"{n_labels} labels requested, but data '{name}' has "
          f"only {n} training examples{held}")
    check(n_labels >= len(present), "data.labels",
          f"{n_labels} labels cannot give each of the {len(present)} classes of data '{name}' "
          f"one labeled example (the choice is stratified by class); use at least {len(present)}")
    bs, shuffle = cfg.get("batch_size"), cfg.get("shuffle", False)
    ubs = MU * bs if ubs is None and type(bs) is int else ubs
    if shuffle is True and type(ubs) is int:  # a permutation per epoch needs a full batch of them
        check(ubs <= n, "data.unlabeled_batch_size",
              f"{ubs} is larger than the {n} training examples of data '{name}' (with "
              "data.shuffle each batch is part of one permutation)" +
              ("" if cfg.get("unlabeled_batch_size") else f"; it is {MU} x data.batch_size "
               "unless set"))
    idx = choose(y, n_labels, seed)
    out = {"x": x[idx], "y": y[idx], "x_unlabeled": x}
    return out, {**spec, "labels": n_labels, "num_unlabeled": n, "labeled_indices": idx}


def unlabeled_batch(split: dict, step, cfg: dict, key: jax.Array) -> jax.Array:
    """'x_unlabeled' of the batch at `step`: [unlabeled_batch_size, ...] of split['x_unlabeled'],
    stored order or a permutation per epoch (data.shuffle) from fold_in(key, UNLABELED_STREAM)."""
    _, ubs, _ = settings(cfg)
    ubs = MU * cfg["batch_size"] if ubs is None else ubs
    k = jax.random.fold_in(key, UNLABELED_STREAM)
    return batch_at({"x": split["x_unlabeled"]}, step, ubs, cfg.get("shuffle", False), k)["x"]
