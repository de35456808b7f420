"""Where generated data is cached, and safe .npz reading and writing (never pickle)."""
from __future__ import annotations

import os
import tempfile
import zipfile
import zlib
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
            _check_kind(fh.read(8))
            fh.seek(0)
            with np.load(fh, allow_pickle=False) as f:
                arrays = {k: f[k] for k in f.files}
    except FileNotFoundError:
        raise ConfigError(f"data file {path} does not exist") from None
    except _NotNpz as e:
        raise ConfigError(f"data file {path} is not a readable .npz file: {e}") from None
    except (ValueError, OSError, zipfile.BadZipFile, EOFError, zlib.error, KeyError,
            NotImplementedError) as e:  # a damaged archive or array header, an odd compression
        raise ConfigError(f"data file {path} is not a readable .npz file ({type(e).__name__}: "
                          f"{e})") from None
    missing = [k for k in required if k not in arrays]
    if missing:
        raise ConfigError(f"data file {path} lacks the arrays {missing}; it has {sorted(arrays)}")
    return arrays


class _NotNpz(Exception):
    """The file is of another kind altogether (its first bytes say which)."""


def _check_kind(head: bytes) -> None:
    """_NotNpz unless `head` starts a zip archive (an .npz is one): np.load would call anything
    else a pickle."""
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return
    if head.startswith(b"\x93NUMPY"):
        raise _NotNpz("it holds a single array (.npy), not named arrays; np.savez(path, x=..., "
                      "y=...) writes an .npz")
    if head[:1] == b"\x80" or not head:
        raise _NotNpz("it is empty" if not head else
                      "it looks like a Python pickle, which dlcore never loads")
    raise _NotNpz(f"it does not start as a zip archive does (first bytes {head!r})")
