"""Loaders for data a user has on disk: .npz, MNIST's IDX files, CIFAR-10's binary batches.

Each returns {'x', 'y', 'x_test', 'y_test'} and raises ConfigError naming the file on anything
malformed (wrong magic number, truncated payload, missing array); nothing is unpickled.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from dlcore.config import ConfigError
from dlcore.data.cache import load_npz

_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def npz(cfg: dict) -> dict[str, np.ndarray]:
    """`data.path`: an .npz holding x, y, x_test, y_test."""
    return load_npz(_path(cfg), ("x", "y", "x_test", "y_test"))


def read_idx(path: str | Path) -> np.ndarray:
    """One IDX file (http://yann.lecun.com/exdb/mnist/ format) as a numpy array."""
    raw = Path(path).read_bytes() if Path(path).is_file() else None
    if raw is None:
        raise ConfigError(f"IDX file {path} does not exist")
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise ConfigError(f"IDX file {path}: bad magic number {raw[:4].hex()}")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ConfigError(f"IDX file {path}: truncated header")
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    expected = header + int(np.prod(shape)) * dtype.itemsize
    if len(raw) != expected:
        raise ConfigError(f"IDX file {path}: {len(raw)} bytes for shape {shape}, expected {expected}")
    return np.frombuffer(raw, dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def mnist_idx(cfg: dict) -> dict[str, np.ndarray]:
    """`data.path`: a folder with MNIST's four IDX files (optionally .gz-free names as published).

    x: [n, 28, 28, 1] float32 in [0, 1]; y: [n] int32.
    """
    root = _path(cfg)
    names = {"x": "train-images-idx3-ubyte", "y": "train-labels-idx1-ubyte",
             "x_test": "t10k-images-idx3-ubyte", "y_test": "t10k-labels-idx1-ubyte"}
    out = {k: read_idx(root / v) for k, v in names.items()}
    for split in ("", "_test"):
        x, y = out["x" + split], out["y" + split]
        if len(x) != len(y):
            raise ConfigError(f"MNIST IDX in {root}: {len(x)} images but {len(y)} labels{split}")
        out["x" + split] = (x.astype(np.float32) / 255.0)[..., None]
        out["y" + split] = y.astype(np.int32)
    return out


def cifar10_binary(cfg: dict) -> dict[str, np.ndarray]:
    """`data.path`: the folder of CIFAR-10's binary version (data_batch_1..5.bin, test_batch.bin).

    Each record is 1 label byte and 3072 pixel bytes (channel-major). x: [n, 32, 32, 3] float32.
    """
    root = _path(cfg)

    def read(names):
        xs, ys = [], []
        for name in names:
            p = root / name
            if not p.is_file():
                raise ConfigError(f"CIFAR-10 file {p} does not exist")
            raw = np.frombuffer(p.read_bytes(), np.uint8)
            if raw.size == 0 or raw.size % 3073:
                raise ConfigError(f"CIFAR-10 file {p}: {raw.size} bytes is not a whole number "
                                  "of 3073-byte records")
            rec = raw.reshape(-1, 3073)
            if rec[:, 0].max() > 9:
                raise ConfigError(f"CIFAR-10 file {p}: label {rec[:, 0].max()} is not in 0..9")
            ys.append(rec[:, 0].astype(np.int32))
            xs.append(rec[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
        return np.concatenate(xs).astype(np.float32) / 255.0, np.concatenate(ys)

    x, y = read([f"data_batch_{i}.bin" for i in range(1, 6)])
    x_test, y_test = read(["test_batch.bin"])
    return {"x": x, "y": y, "x_test": x_test, "y_test": y_test}


def _path(cfg: dict) -> Path:
    if not cfg.get("path"):
        raise ConfigError(f"config key 'data.path' must name the file or folder for data "
                          f"'{cfg.get('name')}'")
    return Path(cfg["path"]).expanduser()
