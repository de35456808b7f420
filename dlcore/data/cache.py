"""Where generated data is cached, and safe .npz reading and writing (never pickle)."""
from __future__ import annotations

import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from dlcore.config import ConfigError


def cache_path(name: str) -> Path:
    """$DLCORE_CACHE/name, default ~/.cache/dlcore/name (the folder is created)."""
    root = Path(os.environ.get("DLCORE_CACHE", Path.home() / ".cache" / "dlcore"))
    root.mkdir(parents=True, exist_ok=True)
    return root / name


def save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write atomically: a reader never sees a half-written file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npz.tmp")
    os.close(fd)
    try:
        with open(tmp, "wb") as f:  # a file object: np.savez would append '.npz' to a name
            np.savez(f, **arrays)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def load_npz(path: str | Path, required: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Read an .npz with pickles refused; ConfigError naming the file if it is unreadable."""
    try:
        with open(path, "rb") as fh:  # our own handle: np.load leaks its own on a corrupt zip
            loaded = np.load(fh, allow_pickle=False)
            if not isinstance(loaded, np.lib.npyio.NpzFile):  # a plain .npy array
                raise ValueError("it holds a single array, not named arrays")
            with loaded as f:
                arrays = {k: f[k] for k in f.files}
    except FileNotFoundError:
        raise ConfigError(f"data file {path} does not exist") from None
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as e:
        raise ConfigError(f"data file {path} is not a readable .npz file ({e})") from None
    missing = [k for k in required if k not in arrays]
    if missing:
        raise ConfigError(f"data file {path} lacks the arrays {missing}; it has {sorted(arrays)}")
    return arrays
