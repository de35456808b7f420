"""Devices: a 1-D data-parallel mesh, and the shardings the loop places arrays with.

Nothing else in dlcore knows about devices. Data parallelism here is plain `jax.jit` over
`NamedSharding`s: parameters and the on-device data set are replicated, each batch is constrained
to be split along the mesh's 'data' axis, and XLA inserts the gradient all-reduce. The algorithm's
`step` is unchanged.
"""
from __future__ import annotations

import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from dlcore.config import ConfigError


def data_mesh(num_devices: int) -> Mesh | None:
    """A mesh over the first `num_devices` devices (axis 'data'); None for one device."""
    available = jax.device_count()
    if num_devices == -1:
        num_devices = available
    if num_devices < 1 or num_devices > available:
        raise ConfigError(f"config key 'loop.devices': {num_devices} devices asked for, "
                          f"{available} available (-1 means all)")
    if num_devices == 1:
        return None
    return Mesh(jax.devices()[:num_devices], ("data",))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def batch_sharding(mesh: Mesh, leading_axes: int = 0) -> NamedSharding:
    """Split the batch axis, which follows `leading_axes` unsharded axes (e.g. a seed axis)."""
    return NamedSharding(mesh, P(*([None] * leading_axes), "data"))


def constrain_batch(batch, mesh: Mesh | None, leading_axes: int = 0):
    """Inside jit: ask for `batch` to be split over the mesh (identity without a mesh)."""
    if mesh is None:
        return batch
    return jax.lax.with_sharding_constraint(batch, batch_sharding(mesh, leading_axes))


def put_replicated(tree, mesh: Mesh | None):
    """Place a pytree (host or device arrays) on every device of the mesh, or the default device."""
    return jax.device_put(tree) if mesh is None else jax.device_put(tree, replicated(mesh))


def check_batch(batch, mesh: Mesh | None) -> None:
    """ConfigError unless every array of a batch (shapes suffice) splits evenly over the mesh."""
    if mesh is None:
        return
    leaves = jax.tree.leaves(batch)
    if not leaves:
        raise ConfigError(f"config key 'loop.devices': this algorithm's steps take no batch (it "
                          f"collects its own experience), so there is nothing to split over "
                          f"{mesh.size} devices; use loop.devices=1 (and --seeds to fill a device)")
    for leaf in leaves:
        if not leaf.shape or leaf.shape[0] % mesh.size:
            raise ConfigError(f"config key 'data.batch_size': a batch of {leaf.shape[0] if leaf.shape else 0} "
                              f"is not divisible by the {mesh.size} devices of the mesh")


def device_memory() -> int | None:
    """Bytes one device can still hold: the accelerator's free memory, or on a CPU the host's
    available memory; None where neither is known."""
    device = jax.devices()[0]
    stats = device.memory_stats() if device.platform != "cpu" else None
    if stats and "bytes_limit" in stats:
        return int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0))
    try:
        with open("/proc/meminfo") as f:
            info = dict(line.split(":", 1) for line in f)
        return int(info["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        return None


def check_fits(nbytes: int, what: str) -> None:
    """ConfigError when `nbytes` alone exceed what the device can hold (an impossible model is
    refused in one line, before XLA tries to allocate it)."""
    free = device_memory()
    if free is not None and nbytes > free:
        raise ConfigError(f"{what} needs {nbytes / 2**30:.1f} GiB, more than the "
                          f"{free / 2**30:.1f} GiB the device has free; choose a smaller model "
                          "or fewer seeds")
