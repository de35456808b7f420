"""A thin orbax wrapper: async saves, keep the last N and the best, restore the newest good one.

A checkpoint holds {'state': ..., 'step': ...} as host arrays. The state is copied off the device
before the (asynchronous) save, so the next jitted step may donate and overwrite its buffers.
A newest checkpoint that fails to restore (truncated, corrupted) is moved aside to
`<dir>/corrupt-<step>` with a warning, and the previous one is tried: nothing is deleted.
"""
from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import jax
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers as cm


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
    return ocp.CheckpointManager(Path(directory).resolve(), options=options)


def save(mngr: ocp.CheckpointManager, step: int, tree, metrics: dict | None = None) -> None:
    """Start an asynchronous save of `tree` (copied to host memory first)."""
    mngr.save(step, args=ocp.args.StandardSave(jax.device_get(tree)), metrics=metrics, force=True)


def restore_newest_good(mngr: ocp.CheckpointManager, target) -> tuple[object, int] | None:
    """(tree, step) from the newest checkpoint that restores into `target`'s structure, or None.

    `target` is a pytree of arrays (or ShapeDtypeStructs) giving shapes, dtypes and shardings.
    """
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
    for step in sorted(mngr.all_steps(), reverse=True):
        try:
            tree = mngr.restore(step, args=ocp.args.StandardRestore(abstract))
            _check_same_structure(tree, abstract, step)
            return tree, step
        except Exception as e:  # orbax/tensorstore raise many types for a damaged file
            path = Path(mngr.directory) / str(step)
            aside = Path(mngr.directory).parent / f"corrupt-{step}"
            warnings.warn(f"checkpoint at step {step} could not be restored "
                          f"({type(e).__name__}: {str(e)[:200]}); moved to {aside}, "
                          f"trying the previous one", RuntimeWarning, stacklevel=2)
            if path.exists():
                shutil.move(str(path), str(aside))
            mngr.reload()
    return None


def _check_same_structure(tree, abstract, step: int) -> None:
    for got, want in zip(jax.tree.leaves(tree), jax.tree.leaves(abstract)):
        if got.shape != want.shape or got.dtype != want.dtype:
            raise ValueError(f"step {step}: array {got.shape} {got.dtype}, expected "
                             f"{want.shape} {want.dtype}")


def restore_latest(directory: Path, target) -> tuple[object, int] | None:
    """(tree, step) from the newest checkpoint in `directory`, read-only: nothing is moved or
    deleted (for reports on a finished run). None when there is no checkpoint."""
    directory = Path(directory).resolve()
    if not directory.exists():
        return None
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
    with ocp.CheckpointManager(directory, options=ocp.CheckpointManagerOptions(
            create=False)) as mngr:  # restore only: nothing is saved or deleted
        step = mngr.latest_step()
        if step is None:
            return None
        return mngr.restore(step, args=ocp.args.StandardRestore(abstract)), step
