"""Training batches from the host, for a data set the devices do not hold (`loop.data=host`).

    feed = host_feed(data, train_split, key_data, steps_per_call, seeds, mesh)
    batches = feed(t)      # the batches of steps t .. t+k-1, [k, (seeds,) batch, ...], on the mesh

The batch of step t is `data.sample(train_split, t, key)`, the very function the on-device path
calls inside the jitted step, here jitted on the host's CPU over the host copy of the split: the
batches, and so a resumed run, are those of the on-device path (equal bit for bit on a CPU;
tests/test_feed.py). The loop asks for the next call's batches before it waits on anything, so
cutting and sending them overlaps the running step: JAX dispatches both asynchronously, which is
the double buffer (no thread to stop or to lose an exception in).

In a run of several processes each process sends only its own rows of every batch
(`jax.make_array_from_process_local_data`, via dlcore.distributed.batch_from_local): the rows its
devices train on, never the whole batch, and no data set is copied to any device.
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from dlcore import distributed, parallel
from dlcore.core import Data


def host_feed(data: Data, train_split, key_data: jax.Array, steps_per_call: int,
              seeds: int | None, mesh: Mesh | None) -> Callable[[int], object]:
    """feed(t) -> the batches of steps t .. t+steps_per_call-1 on the devices: each leaf
    [steps_per_call, (seeds,) batch, ...], the batch axis split over the mesh's 'data' axis.

    train_split: the training split on the host (numpy arrays); key_data: the data key, [seeds]
    of them when `seeds` is not None (one program for several seeds: each seed its own batches,
    as on the device)."""
    cpu = jax.local_devices(backend="cpu")[0]
    split = jax.device_put(train_split, cpu)  # once: a CPU buffer (zero-copy where it can be)
    key = jax.device_put(key_data, cpu)
    sample = data.sample if seeds is None else jax.vmap(data.sample, in_axes=(None, None, 0))
    lead = 1 + (seeds is not None)  # the axes before the batch axis: steps, (seeds)
    several = distributed.processes() > 1
    on_cpu = jax.local_devices()[0] == cpu

    @jax.jit
    def cut(split, t, key):
        batches = jax.vmap(lambda s: sample(split, s, key))(t + jnp.arange(steps_per_call))
        if not several:
            return batches
        return jax.tree.map(lambda x: _own_rows(x, lead), batches)

    def feed(t: int):
        batches = cut(split, np.int32(t), key)
        if mesh is None:  # (on a machine of CPUs alone the batches are there already)
            return batches if on_cpu else jax.device_put(batches, jax.local_devices()[0])
        if several:  # several processes: this one's rows of every global batch
            return distributed.batch_from_local(batches, mesh, lead)
        return jax.device_put(batches, parallel.batch_sharding(mesh, lead))
    return feed


def _own_rows(x: jax.Array, axis: int) -> jax.Array:
    """This process's rows of a global batch along `axis` (dlcore.distributed.local_rows)."""
    rows = distributed.local_rows(x.shape[axis])
    return jax.lax.slice_in_dim(x, rows.start, rows.stop, axis=axis)
