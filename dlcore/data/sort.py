"""minGPT's sort demo (karpathy/minGPT, demo.ipynb, `SortDataset`): given `length` digits of a
`num_digits`-symbol vocabulary, emit them sorted; `data.name: sort`.

A sequence is the input followed by its sorted copy (2L tokens); the model reads 2L - 1 of them
and predicts the next, and only the sorted half is scored:

    x = cat[:-1], y = cat[1:] with y[:L-1] = -1      # -1: no loss at this position
    splits = {'train': {'x': [n_train, 2L-1] int32, 'y': [n_train, 2L-1] int32,
                        'weight': [n_train] float32},
              'test':  {'x': [n_test, 2L-1] int32, 'y': [n_test, 2L-1] int32}}
    batch  = {'x': [batch_size, 2L-1] int32, 'y': [batch_size, 2L-1] int32}

Every one of the num_digits**length inputs is in exactly one split: 'test' when the SHA-256 of
its digits is 0 mod 4 (a quarter; minGPT uses Python's `hash`, which is salted per process),
else 'train'. minGPT's sampler draws a uniform input and, half of the time, rejects one with more
than L//2 distinct digits (so repeated digits are seen more often); drawing training inputs with
weight 0.5 for those and 1 for the others is the same distribution.
"""
from __future__ import annotations

import hashlib

import jax
import numpy as np

from dlcore.config import check
from dlcore.core import Data
from dlcore.data.text import language_spec

MAX_INPUTS = 2**20  # every input is enumerated and hashed when the data is built


def defaults() -> dict:
    return {"length": 6, "num_digits": 3, "batch_size": 64}


def load(cfg: dict) -> Data:
    """The `Data` of a `sort` section (module docstring)."""
    length, digits, batch = (cfg.get(k, v) for k, v in defaults().items())
    check(type(length) is int and length >= 2, "data.length",
          f"must be an integer >= 2; got {length!r}")
    check(type(digits) is int and 2 <= digits <= 10, "data.num_digits",
          f"must be an integer from 2 to 10 (digits are written 0-9); got {digits!r}")
    check(digits**length <= MAX_INPUTS, "data.length",
          f"num_digits**length = {digits}**{length} = {digits**length:,} inputs; at most 2**20 "
          f"({MAX_INPUTS:,}), since every input is enumerated and hashed to split them")
    check(type(batch) is int and batch > 0, "data.batch_size",
          f"must be a positive integer; got {batch!r}")

    inputs = all_inputs(length, digits)
    # int(sha256(bytes(inp)).hexdigest(), 16) % 4 == 0: 4 divides 256, so the last byte decides
    test = np.array([hashlib.sha256(row.tobytes()).digest()[-1] % 4 == 0 for row in inputs])
    check(0 < test.sum() < len(inputs), "data.length",
          f"the {len(inputs)} inputs of {digits} digits and length {length} leave the train or "
          "the test split empty; use more digits or a longer length")
    x, y = examples(inputs)
    distinct = (inputs[:, :, None] == np.arange(digits)).any(1).sum(1)
    weight = np.where(distinct > length // 2, 0.5, 1.0).astype(np.float32)[~test]
    splits = {"train": {"x": x[~test], "y": y[~test], "weight": weight},
              "test": {"x": x[test], "y": y[test]}}

    def sample(train_split, step, key):
        """{'x', 'y'}: [batch, 2L-1] int32, training examples drawn by their weights."""
        w = train_split["weight"]
        i = jax.random.choice(jax.random.fold_in(key, step), w.shape[0], (batch,), p=w / w.sum())
        return {"x": train_split["x"][i], "y": train_split["y"][i]}

    spec = language_spec("0123456789"[:digits], 2 * length - 1, "token", "sort",
                         prompt_length=length)
    return Data(splits, spec, sample, evaluate_train=False)


def all_inputs(length: int, digits: int) -> np.ndarray:
    """[digits**length, length] uint8: every input, in itertools.product order."""
    n = np.arange(digits**length)
    places = digits ** np.arange(length - 1, -1, -1)
    return (n[:, None] // places % digits).astype(np.uint8)


def examples(inputs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(x, y), each [n, 2L-1] int32, of inputs [n, L]: x = cat[:-1], y = cat[1:] with the
    first L-1 targets -1 (positions that predict part of the input are not scored)."""
    length = inputs.shape[1]
    cat = np.concatenate([inputs, np.sort(inputs, axis=1)], axis=1).astype(np.int32)
    x, y = cat[:, :-1], cat[:, 1:].copy()
    y[:, :length - 1] = -1
    return x, y
