"""CIFAR-10's binary version, from a folder the user points at (`data.path`).

x: [n, 32, 32, 3] float32 in [0, 1]; y: [n] int32. data_batch_1..5.bin train, test_batch.bin test;
anything malformed is a ConfigError naming the file.
"""
from __future__ import annotations

import numpy as np

from dlcore.config import ConfigError
from dlcore.data import arrays as array_data
from dlcore.data.npz import file_path


def defaults() -> dict:
    return {"path": "", **array_data.defaults()}


def load(cfg: dict):
    return array_data.from_arrays(arrays(cfg), cfg, str(file_path(cfg)))  # messages name the folder


def arrays(cfg: dict) -> dict[str, np.ndarray]:
    """`data.path`: the folder of CIFAR-10's binary version (data_batch_1..5.bin, test_batch.bin).

    Each record is 1 label byte and 3072 pixel bytes (channel-major). x: [n, 32, 32, 3] float32.
    """
    root = file_path(cfg)

    def read(names):
        xs, ys = [], []
        for name in names:
            p = root / name
            if not p.is_file():
                raise ConfigError(f"CIFAR-10 file {p} does not exist")
            try:
                raw = np.frombuffer(p.read_bytes(), np.uint8)
            except OSError as e:
                raise ConfigError(f"CIFAR-10 file {p} is unreadable ({e.strerror})") from None
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
