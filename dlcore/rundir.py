"""The run directory is the truth about a run: what it is (config.json), how it went
(metrics.jsonl, TensorBoard events, checkpoints) and how it ended (summary.json).

config.json records everything that decides the run: the config (or, for a run of values made in
Python, what the caller recorded), the seeds (or sweep members) and the code it imports. Running
again in the same directory resumes only the same run: any difference but those in NOT_COMPARED
is refused, naming the keys, and nothing in the directory is touched. Those may change: how long
to train (a longer run resumed from a shorter one equals the uninterrupted longer run unless
something depends on the step count, such as a learning-rate schedule or an exploration
schedule), how to log, evaluate and checkpoint, the patience of early stopping, and the
experiment's published figures.

One process writes a run directory at a time: `claimed` holds an exclusive lock (`flock` on
`.lock`, which the kernel releases when the process dies, so a killed run's lock is simply taken
over) and refuses a second process with exit status 2, naming the holder.
"""
from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import socket
import sys
import time
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; runs are not guarded there
    fcntl = None  # type: ignore[assignment]

import jax
import numpy as np

from dlcore.config import ConfigError, flatten

# changed freely between runs in one directory: how long to train and how to log, not what
NOT_COMPARED = ("loop.steps", "loop.log_every", "loop.eval_every", "loop.checkpoint_every",
                "loop.keep_checkpoints", "loop.plots", "loop.watchdog_seconds", "loop.devices",
                "loop.sharding", "loop.model_parallel", "loop.max_device_data_mb", "loop.data", "loop.seeds_in_one_program",
                "loop.early_stopping_patience", "import_paths", "changed", "published")


@contextlib.contextmanager
def claimed(workdir: Path, record: dict, fresh: bool = False):
    """Hold `workdir` for this process while the block runs: locked, proved writable, and holding
    no different run (`_check`). fresh: first move an existing directory aside to
    <workdir>.old-<time> (under its lock, so a run in progress there is never moved)."""
    workdir = Path(workdir)
    if fresh and workdir.exists() and any(workdir.iterdir()):
        with _locked(workdir):
            aside = workdir.with_name(f"{workdir.name}.old-{time.strftime('%Y%m%d-%H%M%S')}")
            shutil.move(str(workdir), str(aside))
        print(f"moved the previous run to {aside}", file=sys.stderr)
    try:
        workdir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"run directory {workdir} is not writable ({e.strerror})") from None
    with _locked(workdir):
        _check(workdir, record)
        yield workdir


@contextlib.contextmanager
def _locked(workdir: Path):
    """An exclusive lock on workdir/.lock, which says who holds it."""
    if fcntl is None:
        yield
        return
    try:
        fd = os.open(workdir / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise ConfigError(f"run directory {workdir} is not writable ({e.strerror})") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(fd, 300, 0).decode(errors="replace").strip() or "another process"
            raise ConfigError(f"run directory {workdir} is in use by {holder}; wait for that run "
                              "to end, or choose another --workdir") from None
        stale = os.pread(fd, 300, 0).decode(errors="replace").strip()
        if stale:  # its holder died without releasing it (the kernel released the lock)
            print(f"dlcore: note: taking over {workdir} from {stale}, which ended without "
                  "releasing it", file=sys.stderr)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"process {os.getpid()} on {socket.gethostname()} since "
                      f"{time.strftime('%Y-%m-%d %H:%M:%S')}".encode(), 0)
        try:
            yield
        finally:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)  # released cleanly: the next holder sees no stale note
    finally:
        os.close(fd)


def _check(workdir: Path, record: dict) -> None:
    """Prove the run directory writable, and refuse to resume a different run. Nothing is written
    yet: `record` goes to config.json once the checkpoints proved to be this run's."""
    try:
        probe = workdir / ".write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as e:
        raise ConfigError(f"run directory {workdir} is not writable ({e.strerror})") from None
    saved = workdir / "config.json"
    if saved.exists():
        try:
            old = flatten(json.loads(saved.read_text()))
        except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
            raise ConfigError(f"run directory {workdir}: config.json is unreadable; choose another "
                              "--workdir, or pass --fresh to start over there") from None
        new = flatten(json.loads(json.dumps(record, default=jsonable)))
        changed = sorted(k for k in set(old) | set(new)
                         if old.get(k) != new.get(k) and not k.startswith(NOT_COMPARED))
        if changed:
            shown = ", ".join(f"{k}: {_short(old.get(k))} -> {_short(new.get(k))}" for k in changed[:4])
            more = f" and {len(changed) - 4} more" if len(changed) > 4 else ""
            raise ConfigError(
                f"run directory {workdir} holds a different run ({shown}{more}); choose another "
                "--workdir, or pass --fresh to move the old run aside and start over")


def _short(v) -> str:
    text = "absent" if v is None else json.dumps(v) if not isinstance(v, str) else v
    return text if len(text) <= 40 else text[:37] + "..."


def write_json(path: Path, obj) -> None:
    """Write strict JSON atomically: a reader (or a crash) never sees half a file. NaN and Inf,
    which strict parsers reject, are written as null (see `nonfinite`)."""
    tmp = Path(f"{path}.tmp")
    tmp.write_text(json.dumps(_finite(obj), indent=2, default=jsonable, allow_nan=False) + "\n")
    os.replace(tmp, path)


def _finite(x):
    """x with every non-finite float replaced by None (arrays and tuples become lists)."""
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite(v) for v in x]
    if isinstance(x, (np.ndarray, np.generic, jax.Array)):
        return _finite(np.asarray(x).tolist())
    if isinstance(x, float) and not np.isfinite(x):
        return None
    return x


def nonfinite(metrics: dict) -> list[str]:
    """Names of the metrics holding NaN or Inf anywhere."""
    return [k for k, v in metrics.items()
            if not np.all(np.isfinite(np.asarray(v, np.float64)))]


def jsonable(x):
    if isinstance(x, (np.generic, jax.Array, np.ndarray)):
        return np.asarray(x).tolist()
    if isinstance(x, tuple):
        return list(x)
    if isinstance(x, Path):
        return str(x)
    from dlcore.names import reference  # an object from Python: by the name it imports under
    return reference(x)


def earlier_rate(path: Path) -> float | None:
    """The steps_per_second an earlier summary.json recorded (None if none, or unreadable)."""
    try:
        rate = json.loads(path.read_text()).get("steps_per_second")
    except (OSError, ValueError, AttributeError):
        return None
    return float(rate) if type(rate) in (int, float) else None


def summary(name: str, named: dict, seed_list: list, seed_axis: bool, run: dict) -> dict:
    """summary.json: final metrics (means over seeds), their spread and per-seed values, and how
    the run went. named: summary name -> value, with a leading seed axis when `seed_axis`;
    run: steps, start_step, seconds, steps_per_second and anything else to record."""
    metrics, std, per_seed = {}, {}, {}
    bad = nonfinite(named)
    for key, v in named.items():
        v = np.asarray(v, np.float64)
        v = v if seed_axis else v[None]
        mean, spread = v.mean(0), v.std(0)
        scalar = mean.ndim == 0
        metrics[key] = float(mean) if scalar else mean.tolist()
        std[key] = float(spread) if scalar else spread.tolist()
        per_seed[key] = v.tolist()
    return {
        "experiment": name,
        "metrics": metrics,
        "metrics_std": std,
        "per_seed": per_seed,
        **({"nonfinite_metrics": bad} if bad else {}),  # their NaN/Inf are null in the file
        **run,
        "seeds": len(seed_list),
        "seed_values": list(seed_list),
        "seeds_in_one_program": seed_axis,
        "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
        "versions": {"python": platform.python_version(), "jax": jax.__version__,
                     "backend": jax.default_backend(), "devices": jax.device_count()},
    }
