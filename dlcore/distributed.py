"""Many processes, one run: JAX's own distributed runtime (`jax.distributed`).

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

A process that dies (SIGKILL, a lost host) is noticed by dlcore's own heartbeat (`_Watcher`, a
thread): every second each process counts up its key in the coordination service's key-value store
and reads the others'. A key that has not changed for `heartbeat_seconds` ends this process with
one line, exit status 1: "dlcore: error: process 1 stopped answering (silent for 60 s); process 0
ends too: run the same command on every process to resume from the last checkpoint". A process
that leaves says why first (`leave`): "done", and its silence is never taken for a death however
long the others still run; or "left" (an error or a signal, which it reports itself), and the
others end `heartbeat_seconds` later. An error of this process waits for that verdict first
(`settle`): a collective fails at once when its peer has died, and the lost peer is the cause to
name. JAX's own heartbeat runs at twice the timeout and stays as the backstop (a C++ abort:
"Terminating process because the JAX distributed service detected fatal errors ... another task
died", a stack dump).

That abort cannot be beaten when process 0 dies: the coordination service lives in it, and JAX
aborts every other process within milliseconds of losing the connection, from a C++ thread that
no Python code hears of (`missed_heartbeat_callback`, the hook JAX's client has, fails in this
jaxlib: std::bad_cast). So the stderr of every process but 0 goes through dlcore/relay.py, a small
process that passes each line on and turns that abort into the same kind of line: "dlcore: error:
lost process 0, which coordinates the run (its connection closed); process 1 ends too: ...", the
exit status being JAX's SIGABRT. Either way no checkpoint is harmed (orbax commits by renaming)
and the same command on every process resumes from the last one.
"""
from __future__ import annotations

import atexit
import contextlib
import hashlib
import json
import os
import subprocess
import sys
import threading
import time
from typing import Any

import jax
import numpy as np

from dlcore.config import ConfigError, check

ENV = "DLCORE_DISTRIBUTED"
_MESSAGE_BYTES = 512  # an error line shared between processes, cut to this length
_ALIVE = "dlcore/alive/"  # + a process's index: its heartbeat count, then "done" or "left"
_BEAT_SECONDS = 1.0  # how often each process beats and reads the others' beats


def initialize(coordinator: str | None = None, num_processes: int | None = None,
               process_id: int | None = None, heartbeat_seconds: int = 60,
               join_seconds: int = 300) -> bool:
    """Join the run's processes (before any device is touched); True when this is one process
    of several. With no arguments: JAX's cluster detection, only where DLCORE_DISTRIBUTED=auto or
    a scheduler launched several tasks (`cluster_launched`). ConfigError for incomplete flags;
    TrainingError when the processes cannot join within `join_seconds`. From then on the
    heartbeat watches the others (a program that calls this itself, not through `dlcore run`,
    calls `leave(done=True)` when it has finished: otherwise its exit reads as leaving early)."""
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
    # JAX's heartbeat at twice ours: dlcore's line comes first, JAX's abort is the backstop. At
    # exit every process waits for the others as long as for joining: process 0 alone writes the
    # summary, plots and trackers after the last collective (a shorter wait aborted them all)
    try:
        jax.distributed.initialize(**kwargs, initialization_timeout=join_seconds,
                                   heartbeat_timeout_seconds=2 * heartbeat_seconds,
                                   shutdown_timeout_seconds=join_seconds)
    except (RuntimeError, ValueError) as e:
        from dlcore.watch import TrainingError
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise TrainingError(f"could not join the run's processes"
                            f"{' at ' + coordinator if coordinator else ''} ({first}); start "
                            "every process with the same command within "
                            f"{join_seconds} s") from None
    if jax.process_count() > 1:
        _orbax_barriers_off_the_devices()
        _watch(heartbeat_seconds)
        if not is_main():  # process 0 keeps its terminal: its progress bar draws there
            _relay_stderr(jax.process_index())
    return jax.process_count() > 1


def _orbax_barriers_off_the_devices() -> None:
    """orbax's barriers through the coordination service instead of a collective on the devices
    (its default, `multihost_utils.sync_global_devices`). An asynchronous checkpoint may meet one
    in a thread of its own while the main thread runs the training step's collectives, and orbax's
    own comments warn that device collectives called concurrently may deadlock; the coordination
    service's barrier cannot meet the step's collectives at all."""
    from absl import flags
    import orbax.checkpoint  # noqa: F401  (defines the flag)
    flag = flags.FLAGS["experimental_orbax_use_distributed_barrier"]
    flag.parse("true")  # this flag alone: the program's own absl flags stay unparsed


class _Watcher(threading.Thread):
    """Every _BEAT_SECONDS: count up this process's key in the coordination service's key-value
    store and read every process's. A peer whose key has not changed for `limit` seconds of this
    process's clock is gone; a store that has failed for as long (it lives in process 0) means
    process 0 is gone. Either way `_end` says so and ends this process. A key that says "done" is
    never gone."""

    def __init__(self, client, me: int, count: int, limit: float):
        super().__init__(name="dlcore-heartbeat", daemon=True)
        self.client, self.me, self.limit = client, me, limit
        self.stop, self.heard = threading.Event(), threading.Condition()
        # each peer's last value and when (this process's clock) it last changed
        self.last: dict[int, tuple[str | None, float]] = {
            p: (None, time.monotonic()) for p in range(count) if p != me}

    def run(self) -> None:
        beat, answered = 0, time.monotonic()
        while not self.stop.wait(_BEAT_SECONDS):
            beat += 1
            try:
                self.client.key_value_set(f"{_ALIVE}{self.me}", str(beat), allow_overwrite=True)
                said = dict(self.client.key_value_dir_get(_ALIVE))
            except Exception as e:  # a store that fails once may answer the next time
                if not self.stop.is_set() and time.monotonic() - answered > self.limit:
                    _end(f"lost process 0, which coordinates the run ({_first_line(e)})",
                         self.me)
                continue
            answered = time.monotonic()
            self.look(said, answered)

    def look(self, said: dict, now: float) -> None:
        """Note who changed their key; end this process when a peer has been silent too long."""
        with self.heard:
            for p, (value, _) in self.last.items():
                if said.get(f"{_ALIVE}{p}") != value:
                    self.last[p] = (said.get(f"{_ALIVE}{p}"), now)
            self.heard.notify_all()
        for p, (value, changed) in self.last.items():
            if value == "left" and now - changed > self.limit:
                _end(f"process {p} left the run early (its own output says why)", self.me,
                     orderly=True)
            elif value != "done" and now - changed > self.limit:
                _end(f"process {p} stopped answering (silent for {self.limit:.0f} s)", self.me)


_watcher: _Watcher | None = None


def _watch(heartbeat_seconds: int) -> None:
    """Start this process's `_Watcher`, and `leave` at exit (before JAX's own shutdown, which
    waits for every process: atexit runs the latest registered first)."""
    global _watcher
    from jax._src import distributed as jax_distributed  # JAX's client: no public accessor
    client = getattr(jax_distributed.global_state, "client", None)
    if not hasattr(client, "key_value_dir_get"):
        return  # another JAX: its own heartbeat alone ends the processes
    _watcher = _Watcher(client, jax.process_index(), jax.process_count(), heartbeat_seconds)
    _watcher.start()
    atexit.register(leave)


def _end(problem: str, me: int, orderly: bool = False) -> None:
    """One line, then exit status 1 at once: the main thread may be blocked in a collective
    with the lost process, where no exception would reach it; nothing half-written stays (orbax
    commits a checkpoint by renaming it). `orderly`: the other process is alive and waits at
    JAX's shutdown; this one joins it there first, so that neither is aborted."""
    with contextlib.suppress(Exception):
        sys.stdout.flush()
        below_bar = "\n" if sys.stderr.isatty() else ""  # process 0's progress bar ends no line
        print(f"{below_bar}dlcore: error: {problem}; process {me} ends too: run the same command "
              "on every process to resume from the last checkpoint", file=sys.stderr, flush=True)
        if orderly:
            jax.distributed.shutdown()
    os._exit(1)


_relay: subprocess.Popen | None = None


def _relay_stderr(me: int) -> None:
    """From here on this process's stderr (file descriptor 2, where C++ writes too) goes through
    dlcore/relay.py, which turns JAX's abort on losing process 0 into dlcore's line. The relay
    has a session of its own (a Ctrl-C at the terminal is this process's to handle) and ends when
    the pipe closes. Where it cannot start, stderr stays as it was."""
    global _relay
    relay_py = os.path.join(os.path.dirname(os.path.abspath(__file__)), "relay.py")
    try:
        _relay = subprocess.Popen([sys.executable, relay_py, str(me)], stdin=subprocess.PIPE,
                                  stdout=2, start_new_session=True)
    except OSError:
        return
    pipe = _relay.stdin
    assert pipe is not None
    sys.stderr.flush()
    os.dup2(pipe.fileno(), 2)
    pipe.close()  # descriptor 2 is now the pipe's only writer in this process


def _first_line(error: Exception) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0][:160]


def leave(done: bool = False) -> None:
    """Stop the heartbeat and tell the other processes why: "done" (this command succeeded: a
    peer finishing a little later must not take the silence for a death) or "left" (an error or
    a signal, which this process reports itself; the others end `heartbeat_seconds` later rather
    than wait at their next collective). Idempotent."""
    global _watcher
    watcher, _watcher = _watcher, None
    if watcher is None:
        return
    watcher.stop.set()
    watcher.join(timeout=2 * _BEAT_SECONDS)  # (a call to a lost store would block it longer)
    with contextlib.suppress(Exception):
        watcher.client.key_value_set(f"{_ALIVE}{watcher.me}", "done" if done else "left",
                                     allow_overwrite=True)


def settle() -> None:
    """Before this process reports an error of its own, wait until every other process has been
    heard once more (or has left). A collective fails at once when its peer is gone (gloo:
    'Connection closed by peer'); then the lost peer is the cause, and the watcher ends this
    process with its line within `heartbeat_seconds` instead."""
    watcher = _watcher
    if watcher is None:
        return
    since = time.monotonic()
    with watcher.heard:
        watcher.heard.wait_for(lambda: all(v in ("done", "left") or t > since
                                           for v, t in watcher.last.values()),
                               timeout=watcher.limit + 2 * _BEAT_SECONDS)


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
