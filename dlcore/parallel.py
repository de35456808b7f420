"""Devices: a mesh, and the shardings the loop places arrays with.

Nothing else in dlcore knows about devices. Everything here is plain `jax.jit` over
`NamedSharding`s: each batch is constrained to be split along the mesh's 'data' axis, the
on-device data set is replicated, and XLA inserts the collectives (the gradient all-reduce, the
all-gathers of sharded parameters). The algorithm's `step` is unchanged.

The state is placed by its logical axis names (`Algorithm.state_axes`: the names models declare
with `nn.with_logical_partitioning`, 'embed', 'heads', 'kv', 'mlp', 'vocab', 'positions') and
the rules of a strategy (`RULES`), which map names onto the axes of the mesh:

    replicate     every device holds the whole state (data parallelism)
    fsdp          each parameter, and the optimizer state that mirrors it, split over 'data'
                  along one of its axes ('embed' first; embedding tables along their rows):
                  ~1/devices of the state per device, each parameter all-gathered where used
    tensor        Megatron: attention heads and the MLP's hidden units split over 'model'
    fsdp+tensor   both, on a mesh of data x model devices

A dimension that a mesh axis does not divide stays whole (the next rule is tried), so a rule
never makes a model impossible; scalars (step counters, injected hyperparameters) are replicated.
`benchmarks/sharding_memory.py` measures what each strategy leaves on a device.
"""
from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from dlcore import distributed
from dlcore.config import ConfigError


def data_mesh(num_devices: int, model: int = 1) -> Mesh | None:
    """A mesh over the first `num_devices` devices (-1: all): axis 'data', and with model > 1 a
    'model' axis of that many devices (for tensor parallelism; num_devices / model along 'data').
    None for one device. In a run of several processes the devices are all processes' (in
    process order, so each process's devices hold a contiguous block of every batch) and the
    mesh must span them all."""
    available = jax.device_count()  # every process's devices (dlcore.distributed)
    distributed.check_devices(num_devices)
    if num_devices == -1:
        num_devices = available
    if num_devices < 1 or num_devices > available:
        raise ConfigError(f"config key 'loop.devices': {num_devices} devices asked for, "
                          f"{available} available (-1 means all)")
    if type(model) is not int or model < 1 or num_devices % model:
        raise ConfigError(f"config key 'loop.model_parallel': a 'model' axis of {model!r} devices "
                          f"does not divide the {num_devices} devices (loop.devices = data x "
                          "model_parallel)")
    if num_devices == 1:
        return None
    devices = jax.devices()[:num_devices]
    if model == 1:
        return Mesh(devices, ("data",))
    return Mesh(np.asarray(devices).reshape(num_devices // model, model), ("data", "model"))


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


# --- the state: logical axis names -> mesh axes ---------------------------------------------------------

# (logical name, mesh axis) in order of preference; see `mesh_axes`. FSDP splits an embedding table
# along its rows or not at all: a gather from a table split along 'embed' hands that split to the
# activations, and XLA then splits the whole network by width instead of by batch, all-gathering
# activations of the full batch (measured: 3.3x the temporary memory of data parallelism).
FSDP = (("vocab", "data"), ("positions", "data"), ("vocab", None), ("positions", None),
        *((name, "data") for name in ("embed", "mlp", "heads", "kv")))
TENSOR = (("heads", "model"), ("mlp", "model"))
RULES = {"replicate": (), "fsdp": FSDP, "tensor": TENSOR, "fsdp+tensor": TENSOR + FSDP}


def mesh_axes(names: P, shape: tuple, mesh: Mesh, rules) -> P:
    """The mesh PartitionSpec of an array of `shape` whose dimensions have the logical `names`.
    The rules are taken in order: a rule (name, mesh axis) splits the first dimension of that name
    over the mesh axis when the mesh has the axis, no other dimension of this array uses it yet,
    and its size divides the dimension; a rule (name, None) ends the rules for an array with a
    dimension of that name. Every other dimension is whole."""
    dims = tuple(names) + (None,) * (len(shape) - len(names))
    out = [None] * len(shape)
    for name, axis in rules:
        if axis is None and name in dims:
            break
        if axis not in mesh.shape or axis in out:
            continue
        for i, n in enumerate(dims):
            if n == name and out[i] is None and shape[i] % mesh.shape[axis] == 0:
                out[i] = axis
                break
    return P(*out)


def state_axes(state, param_axes, params=None):
    """The logical PartitionSpecs of a whole training state, a tree like `state` (shapes suffice).

    param_axes: the parameters' logical names (`dlcore.models.logical_axes`, a tree like the
    params of PartitionSpecs). A leaf of the state takes the names of the parameter whose key path
    ends its own path and whose shape is its shape: the parameters themselves and whatever an
    optax optimizer keeps per parameter (Adam's mu and nu, a momentum trace), wherever they sit in
    the state. Every other leaf (step counters, injected hyperparameters, PRNG keys, statistics of
    another shape) is replicated, P(). params: the parameters the names describe (shapes
    suffice); by default the state's `params` field."""
    params = state.params if params is None else params
    names = {tuple(path): spec for path, spec in jax.tree_util.tree_flatten_with_path(
        param_axes, is_leaf=lambda x: isinstance(x, P))[0]}
    shapes = {tuple(path): tuple(np.shape(x))
              for path, x in jax.tree_util.tree_flatten_with_path(params)[0]}
    if names.keys() != shapes.keys():
        raise ValueError("state_axes: the names are not those of the parameters: "
                         f"{sorted(map(jax.tree_util.keystr, names.keys() ^ shapes.keys()))[:3]}")

    def leaf_axes(path, leaf):
        path = tuple(path)
        for start in range(len(path)):  # the longest parameter path that ends this path
            if path[start:] in names and shapes[path[start:]] == tuple(np.shape(leaf)):
                return names[path[start:]]
        return P()
    return jax.tree_util.tree_map_with_path(leaf_axes, state)


def state_shardings(states, mesh: Mesh, axes, rules, leading_axes: int = 0):
    """NamedShardings for `states` (shapes suffice) from their logical axes (a tree like one
    state of PartitionSpecs; None: all replicated) under `rules` (RULES[strategy]), the first
    `leading_axes` axes of every leaf (a seed axis) whole."""
    if axes is None:
        return jax.tree.map(lambda _: replicated(mesh), states)

    def sharding(names, leaf):
        shape = tuple(np.shape(leaf))
        spec = mesh_axes(names, shape[leading_axes:], mesh, rules)
        return NamedSharding(mesh, P(*([None] * leading_axes), *spec))
    return jax.tree.map(sharding, axes, states, is_leaf=lambda x: isinstance(x, P))


def shard_state(states, mesh: Mesh | None, axes, rules, leading_axes: int = 0):
    """Place `states` on the mesh by their logical axes (see `state_shardings`); on the default
    device without a mesh."""
    if mesh is None:
        return jax.device_put(states)
    return jax.device_put(states, state_shardings(states, mesh, axes, rules, leading_axes))


def constrain(tree, shardings):
    """Inside jit: keep `tree` at `shardings` (identity for None)."""
    return tree if shardings is None else jax.lax.with_sharding_constraint(tree, shardings)


def check_batch(batch, mesh: Mesh | None) -> None:
    """ConfigError unless every array of a batch (shapes suffice) splits evenly over the mesh's
    'data' axis."""
    if mesh is None:
        return
    leaves = jax.tree.leaves(batch)
    if not leaves:
        raise ConfigError(f"config key 'loop.devices': this algorithm's steps take no batch (it "
                          f"collects its own experience), so there is nothing to split over "
                          f"{mesh.size} devices; use loop.devices=1 (and --seeds to fill a device)")
    n = mesh.shape["data"]
    for leaf in leaves:
        if not leaf.shape or leaf.shape[0] % n:
            raise ConfigError(f"config key 'data.batch_size': a batch of {leaf.shape[0] if leaf.shape else 0} "
                              f"is not divisible by the {n} devices of the mesh"
                              + ("'s 'data' axis" if n != mesh.size else ""))


def device_memory() -> int | None:
    """Bytes one device can still hold: the accelerator's free memory, or on a CPU the host's
    available memory; None where neither is known."""
    device = jax.local_devices()[0]  # jax.devices()[0] may be another process's
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
