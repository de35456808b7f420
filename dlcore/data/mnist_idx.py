"""MNIST in its published IDX files, from a folder the user points at (`data.path`).

x: [n, 28, 28, 1] float32 in [0, 1]; y: [n] int32. The four files keep their published names
(train-images-idx3-ubyte, ...). Anything malformed (wrong magic number, truncated payload, sizes
that do not match the file, labels that are no class indices) is a ConfigError naming the file.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from dlcore.config import ConfigError
from dlcore.data import arrays as array_data
from dlcore.data.npz import file_path

_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def defaults() -> dict:
    return {"path": "", **array_data.defaults()}


def load(cfg: dict):
    return array_data.from_arrays(arrays(cfg), cfg, str(file_path(cfg)))  # messages name the folder


def read_idx(path: str | Path) -> np.ndarray:
    """One IDX file (http://yann.lecun.com/exdb/mnist/ format) as a numpy array."""
    if not Path(path).is_file():
        raise ConfigError(f"IDX file {path} does not exist")
    try:
        raw = Path(path).read_bytes()
    except OSError as e:
        raise ConfigError(f"IDX file {path} is unreadable ({e.strerror})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise ConfigError(f"IDX file {path}: bad magic number {raw[:4].hex()}")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ConfigError(f"IDX file {path}: truncated header")
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    # Python integers: numpy's product of four sizes of 2**16 wraps to 0 and would pass the check
    expected = header + math.prod(shape) * dtype.itemsize
    if len(raw) != expected:
        raise ConfigError(f"IDX file {path}: {len(raw)} bytes for shape {shape}, expected {expected}")
    return np.frombuffer(raw, dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def arrays(cfg: dict) -> dict[str, np.ndarray]:
    """`data.path`: a folder with MNIST's four IDX files (optionally .gz-free names as published).

    x: [n, 28, 28, 1] float32 in [0, 1]; y: [n] integers as stored (int32 once array data has
    checked them against the training classes).
    """
    root = file_path(cfg)
    names = {"x": "train-images-idx3-ubyte", "y": "train-labels-idx1-ubyte",
             "x_test": "t10k-images-idx3-ubyte", "y_test": "t10k-labels-idx1-ubyte"}
    out = {k: read_idx(root / v) for k, v in names.items()}
    for key, name in names.items():  # images [n, rows, cols], labels [n] integers
        a, want = out[key], (3, "[n, rows, cols] images") if key.startswith("x") else (1, "[n] labels")
        if a.ndim != want[0]:
            raise ConfigError(f"IDX file {root / name}: shape {a.shape}, expected {want[1]}")
        if key.startswith("y") and not np.issubdtype(a.dtype, np.integer):
            raise ConfigError(f"IDX file {root / name}: labels of type {a.dtype}, expected "
                              "integers (class indices)")
    for split in ("", "_test"):
        x, y = out["x" + split], out["y" + split]
        if len(x) != len(y):
            raise ConfigError(f"MNIST IDX in {root}: {len(x)} images but {len(y)} labels{split}")
        out["x" + split] = (x.astype(np.float32) / 255.0)[..., None]
        out["y" + split] = y  # range-checked against the training classes by array_data
    return out
