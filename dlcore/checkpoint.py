"""A thin orbax wrapper: async saves, keep the last N and the best, restore the newest good one.

A checkpoint holds {'state': ..., 'step': ...} (and the early-stopping record) as host arrays. The
state is copied off the device before the (asynchronous) save, so the next jitted step may donate
and overwrite its buffers.

Every checkpoint carries the SHA-256 of its arrays (names, dtypes, shapes and bytes) in orbax's
step metadata, and a restore recomputes it: orbax's files carry no checksum of their own, and a
flipped byte in a data file otherwise restores silently into different parameters. The best
checkpoint's metric is written beside it (orbax's metrics item), so the best one survives resumes.

Restoring tells two things apart. A checkpoint whose arrays have other shapes or names than this
run's state (another model, another seed count) is not damaged: it belongs to a different run, and
that is a ConfigError naming the first difference; nothing is moved. A checkpoint that cannot be
read, fails its checksum, or is an empty or partial step directory is moved aside to
`<dir>/corrupt-<step>` with a warning, and the previous one is tried: nothing is deleted.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import warnings
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers as cm

from dlcore.config import ConfigError
from dlcore.watch import TrainingError


def manager(directory: Path, keep: int, best_metric: str | None,
            best_mode: str = "max") -> ocp.CheckpointManager:
    """A CheckpointManager keeping the `keep` newest checkpoints and the best by `best_metric`."""
    directory = Path(directory).resolve()
    _set_aside_incomplete(directory)
    best = (lambda m: m[best_metric]) if best_metric else None
    policies = [cm.LatestN(n=keep)]
    if best:
        policies.append(cm.BestN(get_metric_fn=best, n=1, reverse=best_mode == "min",
                                 keep_checkpoints_without_metrics=False))
    # best_fn as well as the policy: without it orbax does not write the metrics beside the
    # checkpoint, and a resumed run no longer knows which one was best.
    options = ocp.CheckpointManagerOptions(
        preservation_policy=cm.AnyPreservationPolicy(policies), create=True,
        best_fn=best, best_mode=best_mode,
        keep_checkpoints_without_metrics=False,
        cleanup_tmp_directories=True, enable_async_checkpointing=True)
    return ocp.CheckpointManager(directory, options=options,
                                 item_handlers=ocp.StandardCheckpointHandler())


def _set_aside_incomplete(directory: Path) -> None:
    """Move aside step directories that hold no finished checkpoint (emptied, partly deleted) or
    whose step metadata orbax cannot read. Orbax reads every step's metadata when a manager starts
    (one damaged file stops it) and infers the layout from the newest step directory (an empty one
    makes it expect another layout and refuse every good checkpoint)."""
    if not directory.is_dir():
        return
    for path in sorted(directory.iterdir()):
        if not (path.name.isdigit() and path.is_dir()):
            continue
        if not ((path / "_CHECKPOINT_METADATA").is_file() and (path / "default").is_dir()):
            _move_path_aside(directory, int(path.name), "the step directory holds no complete "
                             "checkpoint")
            continue
        try:
            ocp.metadata.get_step_metadata(path)
        except Exception as e:  # orbax raises ValueError, KeyError, TypeError for damage here
            _move_path_aside(directory, int(path.name), f"its step metadata is unreadable "
                             f"({type(e).__name__}: {str(e)[:120]})")


def digest(tree) -> str:
    """SHA-256 over the arrays of a host tree: each one's path, dtype, shape and bytes."""
    h = hashlib.sha256()
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        if leaf is None:
            continue
        if jax.dtypes.issubdtype(getattr(leaf, "dtype", None), jax.dtypes.prng_key):
            leaf = jax.random.key_data(leaf)
        a = np.ascontiguousarray(np.asarray(leaf))
        h.update(f"{jax.tree_util.keystr(path)}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.reshape(-1).view(np.uint8).data if a.size else b"")
    return h.hexdigest()


def target(states, early_stopping: dict | None = None) -> dict:
    """The tree a checkpoint of a run holds (fresh values give shapes and dtypes)."""
    tree = {"state": states, "step": np.zeros((), np.int64)}
    if early_stopping is not None:
        tree["early_stopping"] = early_stopping
    return tree


def save(mngr: ocp.CheckpointManager, step: int, tree, metrics: dict | None = None) -> None:
    """Start an asynchronous save of `tree` (copied to host memory first), with its checksum.

    In a run of several processes (dlcore.distributed) every process calls this: orbax is given
    the global arrays, each process writes its own shards and process 0 the metadata; orbax
    copies them to host memory before it returns, so the next step may still donate them."""
    host = _whole_on_host(tree)
    item = host if jax.process_count() == 1 else tree
    try:  # also where the previous save's failure in the background comes out
        mngr.save(step, args=ocp.args.StandardSave(item), metrics=metrics, force=True,
                  custom_metadata={"dlcore_sha256": digest(host)})
    except Exception as e:
        raise _write_error(mngr, e) from None


def finish(mngr: ocp.CheckpointManager) -> None:
    """Wait for the saves in flight; TrainingError naming the directory when one failed."""
    try:
        mngr.wait_until_finished()
    except Exception as e:
        raise _write_error(mngr, e) from None
    finally:
        mngr.close()


def _write_error(mngr, error: Exception) -> TrainingError:
    """A failed save (a full or read-only disk: orbax and tensorstore raise many types) as one
    line. orbax commits by renaming, so the checkpoints saved before stay whole."""
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    latest = mngr.latest_step()
    return TrainingError(f"cannot write a checkpoint in {mngr.directory} ({text[:160]}); free "
                         f"space or fix its permissions, then run the same command to resume"
                         + (f" from step {latest}" if latest is not None else ""))


def restore_newest_good(mngr: ocp.CheckpointManager, target_tree) -> tuple[Any, int] | None:
    """(tree, step) from the newest checkpoint that restores into `target_tree`, or None.

    ConfigError when a readable checkpoint holds arrays of other shapes (a different run)."""
    abstract = _host_abstract(target_tree)
    for step in sorted(mngr.all_steps(), reverse=True):
        try:
            saved, expected = mngr.item_metadata(step), _saved_digest(mngr, step)
        except Exception as e:  # unreadable metadata: a damaged checkpoint
            _move_aside(mngr, step, f"{type(e).__name__}: {str(e)[:200]}")
            continue
        if saved is not None:
            check_same_run(saved.tree, abstract, step, Path(mngr.directory))
        try:
            tree = mngr.restore(step, args=ocp.args.StandardRestore(abstract))
        except Exception as e:  # orbax/tensorstore raise many types for a damaged file
            _move_aside(mngr, step, f"{type(e).__name__}: {str(e)[:200]}")
            continue
        if expected is None:
            warnings.warn(f"checkpoint at step {step} carries no checksum (written by an older "
                          "dlcore): restored unverified", RuntimeWarning, stacklevel=2)
        elif digest(tree) != expected:
            _move_aside(mngr, step, "its arrays do not match the checksum written with them")
            continue
        return tree, step
    if list(Path(mngr.directory).parent.glob("corrupt-*")):
        warnings.warn(f"no checkpoint in {mngr.directory} could be restored: training starts "
                      "again from step 0 (the damaged ones are kept beside it)", RuntimeWarning,
                      stacklevel=2)
    return None


def _whole_on_host(tree):
    """The tree as whole host arrays (for the checksum). An array split over several processes
    is gathered (a collective: every process calls this at the same point)."""
    if jax.process_count() == 1:
        return jax.device_get(tree)  # every leaf's copy started at once

    def whole(x):
        if isinstance(x, jax.Array) and not x.is_fully_addressable and not x.is_fully_replicated:
            from jax.experimental import multihost_utils
            return np.asarray(multihost_utils.process_allgather(x, tiled=True))
        return jax.device_get(x)
    return jax.tree.map(whole, tree)


def _host_abstract(target_tree):
    """Host numpy arrays of the target's shapes and dtypes: orbax then restores whole host
    arrays, whose bytes the checksum compares (the loop puts them on the devices), whatever
    topology wrote them (a checkpoint of 2 processes x 4 devices restores on one device). PRNG
    keys, which numpy cannot hold, stay abstract."""
    def host(x):
        if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            return jax.ShapeDtypeStruct(np.shape(x), x.dtype)
        return np.zeros(np.shape(x), x.dtype)  # zero pages: not touched until orbax writes
    return jax.tree.map(host, target_tree)


def _saved_digest(mngr: ocp.CheckpointManager, step: int) -> str | None:
    """The checksum saved with a step; None for a checkpoint of an older dlcore. Read here, not
    through orbax, which logs an unreadable metadata file and goes on as if it had none: a damaged
    checkpoint would then pass as an old one, restored unverified."""
    path = Path(mngr.directory) / str(step) / "_CHECKPOINT_METADATA"
    try:
        meta = json.loads(path.read_bytes())
        custom = meta.get("custom_metadata") or {}
        found = custom.get("dlcore_sha256")
    except (OSError, ValueError, AttributeError) as e:
        raise ValueError(f"its step metadata is unreadable ({type(e).__name__})") from None
    if found is not None and not isinstance(found, str):
        raise ValueError("its checksum is damaged")
    return found


def _move_aside(mngr, step: int, why: str) -> None:
    _move_path_aside(Path(mngr.directory), step, why)
    mngr.reload()


def _move_path_aside(directory: Path, step: int, why: str) -> None:
    path = directory / str(step)
    aside = directory.parent / f"corrupt-{step}"
    n = 1
    while aside.exists():  # never nest one corrupt copy inside another
        aside, n = directory.parent / f"corrupt-{step}.{n}", n + 1
    warnings.warn(f"checkpoint at step {step} could not be restored ({why}); moved to {aside}, "
                  "trying the previous one", RuntimeWarning, stacklevel=4)
    if path.exists():
        shutil.move(str(path), str(aside))


def _named(tree) -> dict:
    """{'state.params.w': (shape, dtype)} for the arrays of a tree (names as orbax writes them)."""
    out = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        if leaf is None:
            continue
        name = ".".join(str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k))))
                        for k in path)
        out[name] = (tuple(leaf.shape), np.dtype(leaf.dtype))
    return out


def check_same_run(saved, abstract, step: int, directory: Path) -> None:
    """ConfigError naming the first array whose name, shape or dtype differs."""
    have = {}
    for m in jax.tree.leaves(saved, is_leaf=lambda x: hasattr(x, "shape")):
        if hasattr(m, "shape"):
            have[str(getattr(m, "name", ""))] = (tuple(m.shape), np.dtype(m.dtype))
    want = _named(abstract)
    if not all(have) or have.keys() == want.keys() and have == want:
        return  # names not recorded: the restore itself compares
    missing, extra = sorted(want.keys() - have.keys()), sorted(have.keys() - want.keys())
    if missing or extra:
        what = (f"no array '{missing[0]}'" if missing else f"an array '{extra[0]}' this run lacks")
    else:
        name = next(k for k in sorted(want) if want[k] != have[k])
        what = (f"'{name}' of shape {have[name][0]} {have[name][1]}, this run's is "
                f"{want[name][0]} {want[name][1]}")
    raise ConfigError(f"the checkpoint at step {step} in {directory} belongs to a different run: "
                      f"it holds {what} (another model, seed count or algorithm?); choose another "
                      "--workdir, or pass --fresh to move the old run aside")


def restore_latest(directory: Path, target_tree) -> tuple[Any, int] | None:
    """(tree, step) from the newest good checkpoint in `directory`, read-only: a damaged one is
    skipped with a warning, nothing is moved or deleted (for reports on a finished run). None when
    there is no good checkpoint; ConfigError when one belongs to a different run."""
    return next(_restored(directory, target_tree, newest_first=True), None)


def restore_all(directory: Path, target_tree) -> list[tuple[Any, int]]:
    """[(tree, step)] of every good checkpoint kept in `directory`, oldest first, read-only as
    restore_latest (a report's pictures of training as it went)."""
    return list(_restored(directory, target_tree, newest_first=False))


def _restored(directory: Path, target_tree, newest_first: bool):
    """The good checkpoints of `directory` as (tree, step), in step order; damaged ones are
    skipped with a warning."""
    directory = Path(directory).resolve()
    if not directory.exists():
        return
    abstract = _host_abstract(target_tree)
    try:
        mngr = ocp.CheckpointManager(directory, options=ocp.CheckpointManagerOptions(create=False),
                                     item_handlers=ocp.StandardCheckpointHandler())
    except Exception as e:  # a damaged step metadata file stops orbax from starting
        raise ConfigError(f"the checkpoints in {directory} cannot be read ({type(e).__name__}: "
                          f"{str(e)[:120]}); running the experiment again sets the damaged one "
                          "aside") from None
    with mngr:
        for step in sorted(mngr.all_steps(), reverse=newest_first):  # restore only: no saving
            try:
                saved, expected = mngr.item_metadata(step), _saved_digest(mngr, step)
                if saved is not None:
                    check_same_run(saved.tree, abstract, step, directory)
                tree = mngr.restore(step, args=ocp.args.StandardRestore(abstract))
                if expected is None or digest(tree) == expected:
                    yield tree, step
                    continue
                why = "its arrays do not match the checksum written with them"
            except ConfigError:
                raise
            except Exception as e:  # damaged: say so, and read the next one
                why = f"{type(e).__name__}: {str(e)[:200]}"
            warnings.warn(f"checkpoint at step {step} in {directory} is damaged ({why}); "
                          f"using the one {'before' if newest_first else 'after'}",
                          RuntimeWarning, stacklevel=3)
