"""A thin orbax wrapper: async saves, keep the last N and the best, restore the newest good one.

A checkpoint holds {'state': ..., 'step': ...} (and the early-stopping record) as host arrays. The
state is copied off the device before the (asynchronous) save, so the next jitted step may donate
and overwrite its buffers.

Restoring tells two things apart. A checkpoint whose arrays have other shapes or names than this
run's state (another model, another seed count) is not damaged: it belongs to a different run, and
that is a ConfigError naming the first difference; nothing is moved. A checkpoint that cannot be
read (truncated, corrupted) is moved aside to `<dir>/corrupt-<step>` with a warning, and the
previous one is tried: nothing is deleted.
"""
from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers as cm

from dlcore.config import ConfigError


def manager(directory: Path, keep: int, best_metric: str | None,
            best_mode: str = "max") -> ocp.CheckpointManager:
    """A CheckpointManager keeping the `keep` newest checkpoints and the best by `best_metric`."""
    policies = [cm.LatestN(n=keep)]
    if best_metric:
        policies.append(cm.BestN(get_metric_fn=lambda m: m[best_metric], n=1,
                                 reverse=best_mode == "min",
                                 keep_checkpoints_without_metrics=False))
    options = ocp.CheckpointManagerOptions(
        preservation_policy=cm.AnyPreservationPolicy(policies), create=True,
        cleanup_tmp_directories=True, enable_async_checkpointing=True)
    return ocp.CheckpointManager(Path(directory).resolve(), options=options,
                                 item_handlers=ocp.StandardCheckpointHandler())


def target(states, early_stopping: dict | None = None) -> dict:
    """The tree a checkpoint of a run holds (fresh values give shapes and dtypes)."""
    tree = {"state": states, "step": np.zeros((), np.int64)}
    if early_stopping is not None:
        tree["early_stopping"] = early_stopping
    return tree


def save(mngr: ocp.CheckpointManager, step: int, tree, metrics: dict | None = None) -> None:
    """Start an asynchronous save of `tree` (copied to host memory first)."""
    mngr.save(step, args=ocp.args.StandardSave(jax.device_get(tree)), metrics=metrics, force=True)


def restore_newest_good(mngr: ocp.CheckpointManager, target_tree) -> tuple[object, int] | None:
    """(tree, step) from the newest checkpoint that restores into `target_tree`, or None.

    ConfigError when a readable checkpoint holds arrays of other shapes (a different run)."""
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target_tree)
    for step in sorted(mngr.all_steps(), reverse=True):
        try:
            saved = mngr.item_metadata(step)
        except Exception as e:  # unreadable metadata: a damaged checkpoint
            _move_aside(mngr, step, e)
            continue
        if saved is not None:
            check_same_run(saved.tree, abstract, step, Path(mngr.directory))
        try:
            tree = mngr.restore(step, args=ocp.args.StandardRestore(abstract))
            return tree, step
        except Exception as e:  # orbax/tensorstore raise many types for a damaged file
            _move_aside(mngr, step, e)
    return None


def _move_aside(mngr, step: int, error: Exception) -> None:
    path = Path(mngr.directory) / str(step)
    aside = Path(mngr.directory).parent / f"corrupt-{step}"
    n = 1
    while aside.exists():  # never nest one corrupt copy inside another
        aside, n = Path(mngr.directory).parent / f"corrupt-{step}.{n}", n + 1
    warnings.warn(f"checkpoint at step {step} could not be restored ({type(error).__name__}: "
                  f"{str(error)[:200]}); moved to {aside}, trying the previous one",
                  RuntimeWarning, stacklevel=3)
    if path.exists():
        shutil.move(str(path), str(aside))
    mngr.reload()


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


def restore_latest(directory: Path, target_tree) -> tuple[object, int] | None:
    """(tree, step) from the newest checkpoint in `directory`, read-only: nothing is moved or
    deleted (for reports on a finished run). None when there is no checkpoint."""
    directory = Path(directory).resolve()
    if not directory.exists():
        return None
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target_tree)
    with ocp.CheckpointManager(directory, options=ocp.CheckpointManagerOptions(create=False),
                               item_handlers=ocp.StandardCheckpointHandler()) as mngr:
        step = mngr.latest_step()  # restore only: nothing is saved or deleted
        if step is None:
            return None
        saved = mngr.item_metadata(step)
        if saved is not None:
            check_same_run(saved.tree, abstract, step, directory)
        return mngr.restore(step, args=ocp.args.StandardRestore(abstract)), step
