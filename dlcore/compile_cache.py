"""JAX's persistent compilation cache for the `dlcore` command: a second run of the same
experiment (or a resumed one) reads its compiled programs from disk instead of compiling them
again (benchmarks/compile_cache.py measures the whole process cold and warm).

    enable()                 # the folder below; returns it, or None when switched off
    enable("/path/to/dir")

The folder: $DLCORE_COMPILE_CACHE when set (empty or 'off': no cache), else
$XDG_CACHE_HOME/dlcore/jax, else ~/.cache/dlcore/jax. `dlcore run --no-compile-cache` switches it
off for one command. A cache folder already configured (jax.config, JAX_COMPILATION_CACHE_DIR) is
left as it is. JAX keys each program by its computation, the jax and XLA versions, the devices
and the compiler flags, so a stale entry is never used; the folder may be deleted at any time.
"""
from __future__ import annotations

import os
from pathlib import Path

import jax

OFF = ("", "0", "off", "false", "no")


def default_dir() -> Path | None:
    """The cache folder the environment asks for (None: switched off)."""
    given = os.environ.get("DLCORE_COMPILE_CACHE")
    if given is not None:
        return None if given.strip().lower() in OFF else Path(given).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "dlcore" / "jax"


def enable(path: str | Path | None = None) -> Path | None:
    """Turn the cache on in `path` (default: `default_dir()`); the folder in use, or None. A
    folder that cannot be made (a read-only home) leaves the cache off: it only saves time."""
    current = jax.config.jax_compilation_cache_dir
    if current:
        return Path(current)
    path = default_dir() if path is None else Path(path)
    if path is None:
        return None
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    jax.config.update("jax_compilation_cache_dir", str(path))
    # every program, however quick to compile: a run's small ones (evaluation, checkpoint
    # hashing) add up to seconds on a CPU, and reading one back takes milliseconds
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return path
