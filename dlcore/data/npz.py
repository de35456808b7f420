"""Your own arrays in a .npz file (read with allow_pickle=False: nothing in it is executed).

Keys in the file: 'x' [n, ...] inputs (any numeric dtype, used as float32), 'y' [n] integer class
labels 0..C-1 or [n, d] float regression targets; optionally 'x_test' and 'y_test' (without them,
`data.test_fraction` of the examples, stratified by class, becomes the test split). `data.path` is
resolved against the config file's folder (against the current folder when given with --set).
Batches are shuffled by default; `data.validation_fraction` holds out the last examples of the
training split, so shuffle a file sorted by class that has its own x_test. The other keys are those of array data
(dlcore.data.arrays): batch_size, shuffle, validation_fraction, augment_*.
"""
from __future__ import annotations

from pathlib import Path

from dlcore.config import ConfigError
from dlcore.data import arrays as array_data
from dlcore.data.cache import load_npz


def defaults() -> dict:
    # shuffled batches: a file of your own may be sorted by class
    return {"path": "", **array_data.defaults(test_fraction=0.2), "shuffle": True}


def load(cfg: dict):
    return array_data.from_arrays(arrays(cfg), cfg, str(file_path(cfg)))  # messages name the file


def arrays(cfg: dict) -> dict:
    """The file's arrays: x and y, and x_test and y_test when it has them."""
    found = load_npz(file_path(cfg), ("x", "y"))
    return {k: v for k, v in found.items() if k in ("x", "y", "x_test", "y_test")}


def file_path(cfg: dict) -> Path:
    path = cfg.get("path")
    if not path or not isinstance(path, (str, Path)):
        raise ConfigError(f"config key 'data.path' must name the file or folder for data "
                          f"'{cfg.get('name')}'" + (f"; got {path!r}" if path else ""))
    return Path(path).expanduser()
