"""Many processes, one run: JAX's own distributed runtime (`jax.distributed`), nothing home-made.

    dlcore run NAME --coordinator HOST:PORT --num-processes N --process-id I [--cpu-devices D]
    DLCORE_DISTRIBUTED=auto dlcore run NAME    # JAX detects the cluster: SLURM, Open MPI, Kubernetes

Every process runs the same command. `initialize` joins them before anything touches a device;
from then on `jax.devices()` are the devices of all processes, the loop builds one mesh over all
of them (`loop.devices` counts global devices and must be all of them: -1), and every jitted call
is one global program in which XLA moves data between processes (gloo on CPUs, NCCL on GPUs).

What a process does differently from the others is small and said here:
- `check_same_config`: at start-up every process shares a digest of its run's record; a process
  started with another config is refused on every process, in one line, before any work.
- `claimed`: process 0 alone holds the run directory (its lock, config.json, metrics.jsonl,
  TensorBoard, summary.json, plots, the progress bar, trackers); the others wait for its verdict.
- checkpoints are written by every process, each its own shards (dlcore.checkpoint, orbax).

Both exchanges are `jax.experimental.multihost_utils.process_allgather`, a collective over the
global devices. Without a distributed runtime (one process) every function here is a no-op, and
a plain `dlcore run` never calls `jax.distributed.initialize`: only the flags, DLCORE_DISTRIBUTED=
auto, or a scheduler that launched several tasks (SLURM's srun with more than one task, Open MPI's
mpirun) do. DLCORE_DISTRIBUTED=off turns the detection off.

A process that dies (SIGKILL, a lost host) stops sending heartbeats; after `heartbeat_seconds`
JAX's coordination service ends every other process (its message: "Terminating process because
the JAX distributed service detected fatal errors ... another task died"), so no process waits
forever. Running the same command on every process resumes from the last checkpoint.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
from typing import Any

import jax
import numpy as np

from dlcore.config import ConfigError, check

ENV = "DLCORE_DISTRIBUTED"
_MESSAGE_BYTES = 512  # an error line shared between processes, cut to this length


def initialize(coordinator: str | None = None, num_processes: int | None = None,
               process_id: int | None = None, heartbeat_seconds: int = 60,
               join_seconds: int = 300) -> bool:
    """Join the run's processes (before any device is touched); True when this is one process
    of several. With no arguments: JAX's cluster detection, only where DLCORE_DISTRIBUTED=auto or
    a scheduler launched several tasks (`cluster_launched`). ConfigError for incomplete flags;
    TrainingError when the processes cannot join within `join_seconds`."""
    flags = (coordinator, num_processes, process_id)
    mode = os.environ.get(ENV, "").strip().lower()
    one_of_modes = mode in ("", "auto", "off")
    check(one_of_modes, ENV, f"must be 'auto' or 'off' (or unset); got {mode!r}")
    if all(f is None for f in flags):
        if mode == "off" or not (mode == "auto" or cluster_launched()):
            return False
        kwargs: dict[str, Any] = {}  # JAX finds the coordinator, the count, this process's index
    else:
        _check_flags(coordinator, num_processes, process_id)
        if num_processes == 1:
            return False
        kwargs = dict(coordinator_address=coordinator, num_processes=num_processes,
                      process_id=process_id)
    check(type(heartbeat_seconds) is int and heartbeat_seconds >= 2, "--heartbeat-seconds",
          f"must be an integer >= 2 (seconds); got {heartbeat_seconds!r}")
    # CPU devices of different processes talk through gloo (JAX's default today; set so that a
    # changed default never leaves a multi-process CPU run without collectives)
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    try:
        jax.distributed.initialize(**kwargs, initialization_timeout=join_seconds,
                                   heartbeat_timeout_seconds=heartbeat_seconds,
                                   shutdown_timeout_seconds=heartbeat_seconds)
    except (RuntimeError, ValueError) as e:
        from dlcore.watch import TrainingError
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise TrainingError(f"could not join the run's processes"
                            f"{' at ' + coordinator if coordinator else ''} ({first}); start "
                            "every process with the same command within "
                            f"{join_seconds} s") from None
    return jax.process_count() > 1


def _check_flags(coordinator, num_processes, process_id) -> None:
    """ConfigError unless --coordinator HOST:PORT, --num-processes N and --process-id I are all
    given and consistent."""
    given = {"--coordinator": coordinator, "--num-processes": num_processes,
             "--process-id": process_id}
    missing = [k for k, v in given.items() if v is None]
    check(not missing, missing[0] if missing else "", "a run of several processes needs "
          "--coordinator HOST:PORT, --num-processes N and --process-id I on every process")
    host, _, port = str(coordinator).rpartition(":")
    check(bool(host) and port.isdigit() and 0 < int(port) < 65536, "--coordinator",
          f"must be HOST:PORT (process 0's address, a free port); got {coordinator!r}")
    check(type(num_processes) is int and num_processes >= 1, "--num-processes",
          f"must be a positive integer; got {num_processes!r}")
    check(type(process_id) is int and 0 <= process_id < num_processes, "--process-id",
          f"must be 0 .. {num_processes - 1} (this process's index); got {process_id!r}")


def cluster_launched() -> bool:
    """Whether a scheduler started this command as one of several tasks: inside a SLURM job step
    of more than one task (srun -n N), or an Open MPI launch of more than one process. A plain
    job or a shell on a cluster node is not (a one-process run never waits for peers)."""
    env = os.environ
    if "SLURM_STEP_ID" in env and _int(env.get("SLURM_STEP_NUM_TASKS", env.get("SLURM_NTASKS"))) > 1:
        return True
    return _int(env.get("OMPI_COMM_WORLD_SIZE")) > 1


def _int(text) -> int:
    try:
        return int(text)
    except (TypeError, ValueError):
        return 0


def processes() -> int:
    """How many processes the run has (1 without a distributed runtime)."""
    return jax.process_count()


def is_main() -> bool:
    """Whether this process writes the run's files and shows its progress (process 0)."""
    return jax.process_index() == 0


def _allgather(payload: bytes, size: int) -> list[bytes]:
    """Every process's `payload` (at most `size` bytes), in process order: one collective."""
    from jax.experimental import multihost_utils
    buf = np.zeros(size + 2, np.uint8)  # two bytes of length, then the payload
    payload = payload[:size]
    buf[:2] = (len(payload) >> 8, len(payload) & 255)
    buf[2:2 + len(payload)] = np.frombuffer(payload, np.uint8)
    rows = np.asarray(multihost_utils.process_allgather(buf)).reshape(-1, size + 2)
    return [bytes(r[2:2 + (int(r[0]) << 8 | int(r[1]))]) for r in rows]


def agree(problem: str | None) -> None:
    """Every process says whether it can go on (None) or why not; when any cannot, every process
    raises ConfigError with the first reason (a process's own reason first), so all end alike
    instead of the rest waiting at the next collective."""
    if processes() == 1:
        if problem:
            raise ConfigError(problem)
        return
    said = _allgather((problem or "").encode(), _MESSAGE_BYTES)
    if problem:
        raise ConfigError(problem)
    for i, text in enumerate(said):
        if text:
            raise ConfigError(f"process {i} stopped the run: {text.decode(errors='replace')}")


def digest(record: dict) -> str:
    """SHA-256 of a run's record (its config, loop settings and seeds), as JSON with sorted keys.
    import_paths are left out: the same config may sit in another folder on another host."""
    from dlcore.rundir import jsonable
    kept = {k: v for k, v in record.items() if k != "import_paths"}
    return hashlib.sha256(json.dumps(kept, sort_keys=True, default=jsonable).encode()).hexdigest()


def check_same_config(record: dict) -> None:
    """ConfigError on every process unless all processes were started with the same run (by
    `digest`): a process with other settings would compute another program and hang the rest."""
    if processes() == 1:
        return
    digests = [d.decode() for d in _allgather(digest(record).encode(), 64)]
    differ = [i for i, d in enumerate(digests) if d != digests[0]]
    if differ:
        raise ConfigError(f"process{'es' if len(differ) > 1 else ''} "
                          f"{', '.join(map(str, differ))} of {len(digests)} started with another "
                          f"config than process 0 (digest {digests[differ[0]][:12]} vs "
                          f"{digests[0][:12]}); start every process with the same command")


@contextlib.contextmanager
def claimed(workdir, record: dict, fresh: bool = False):
    """dlcore.rundir.claimed on process 0 alone (one lock, one writer of the run's files); the
    other processes wait for its verdict (`agree`), so a refused directory ends every process
    with the same line. The run directory must be on a file system all processes share."""
    from dlcore import rundir
    if processes() == 1:
        with rundir.claimed(workdir, record, fresh) as held:
            yield held
        return
    with contextlib.ExitStack() as stack:
        problem = None
        if is_main():
            try:
                stack.enter_context(rundir.claimed(workdir, record, fresh))
            except ConfigError as e:
                problem = str(e)
        agree(problem)
        yield workdir


def check_devices(asked: int) -> None:
    """ConfigError unless a run of several processes uses the devices of all of them
    (`loop.devices`: -1 or their total): a mesh must hold every process's devices."""
    total = jax.device_count()
    if processes() > 1 and asked not in (-1, total):
        raise ConfigError(f"config key 'loop.devices': a run of {processes()} processes spans all "
                          f"their {total} devices; set loop.devices=-1 (or {total}); got {asked}")


def batch_from_local(local_batch, mesh, leading_axes: int = 0):
    """A global batch, split over the mesh's 'data' axis, from this process's rows alone
    (`jax.make_array_from_process_local_data`): each process feeds only its own shard. Rows of
    process i are i-th in the global batch; with one process this is a plain device_put."""
    from dlcore import parallel
    sharding = parallel.batch_sharding(mesh, leading_axes)

    def put(x):
        x = np.asarray(x)
        shape = list(x.shape)
        shape[leading_axes] *= processes()
        return jax.make_array_from_process_local_data(sharding, x, tuple(shape))
    return jax.tree.map(put, local_batch)


def local_rows(n: int) -> slice:
    """This process's rows of a global batch of `n` (the slice `batch_from_local` expects)."""
    per, rest = divmod(n, processes())
    check(rest == 0, "data.batch_size", f"a batch of {n} does not split over {processes()} "
          "processes")
    return slice(jax.process_index() * per, (jax.process_index() + 1) * per)
