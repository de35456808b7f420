"""Several processes as one run (dlcore.distributed), simulated on this machine: two local processes
of 4 fake CPU devices each, joined by JAX's distributed runtime over loopback (gloo collectives).

They train as one program equal to one process of 8 devices and of 1 device (an MLP, and a GPT
whose state FSDP splits over both processes); their checkpoint restores onto those topologies; a
killed process (either one, the coordinator too) ends the other within a bounded time with one line
and the same command resumes; processes started with different configs are refused. What this
cannot show: a real network (latency, partitions), GPUs and NCCL, processes on different hosts
with separate file systems (README: 'Running on many machines')."""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest

from dlcore import cli, distributed, experiment
from dlcore.config import ConfigError

# one worker runs these one after another (pyproject: --dist loadgroup): two multi-process runs
# at once on CI's two cores crowd each other, and each takes free ports for its coordinator
pytestmark = [pytest.mark.timeout(240), pytest.mark.xdist_group("distributed")]

STEPS = 40
SETTINGS = [f"loop.steps={STEPS}", "loop.log_every=10", "loop.eval_every=20",
            "loop.checkpoint_every=10", "data.batch_size=96", "loop.plots=false"]
HEARTBEAT = 3  # seconds: how soon a dead process is noticed


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(workdir: Path, port: int, settings=(), per_process=None, name="mnist1d/mlp",
           base=SETTINGS, cli=("-m", "dlcore.cli")) -> list[subprocess.Popen]:
    """`dlcore run NAME --quick` (with `base` and `settings`) as 2 processes x 4 CPU devices;
    per_process(i) -> more --set arguments for process i; `cli`: how python starts dlcore."""
    env = {**os.environ, "DLCORE_COMPILE_CACHE": jax.config.jax_compilation_cache_dir or "off",
           "PYTHONUNBUFFERED": "1"}
    procs = []
    for i in range(2):
        sets = [*base, "loop.devices=-1", *settings, *(per_process(i) if per_process else [])]
        cmd = [sys.executable, *cli, "run", name, "--quick",
               "--workdir", str(workdir), "--cpu-devices", "4", "--no-progress",
               "--coordinator", f"127.0.0.1:{port}", "--num-processes", "2", "--process-id",
               str(i), "--heartbeat-seconds", str(HEARTBEAT)]
        cmd += [a for s in sets for a in ("--set", s)]
        procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True, env=env))
    return procs


def finish(procs, timeout: float) -> list[tuple[int, str, str]]:
    """(returncode, stdout, stderr) of each process; all are killed past `timeout` seconds."""
    deadline = time.monotonic() + timeout
    out = []
    try:
        for p in procs:
            stdout, stderr = p.communicate(timeout=max(deadline - time.monotonic(), 1))
            out.append((p.returncode, stdout, stderr))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.communicate()
    return out


def params(workdir: Path):
    return jax.tree.leaves(experiment.load_run(workdir).final)


def assert_close(a, b, tol=1e-5):
    assert len(a) == len(b) > 4
    for x, y in zip(a, b):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=tol, atol=tol)


def assert_same_metrics(got: dict, want: dict, tol=1e-5):
    """`got` has `want`'s metrics, equal within `tol`, except the whole-split evaluation of the
    training data: a run of several processes streams its training split from the host
    (loop.data=auto), and a streamed run leaves train_eval out."""
    missing = want.keys() - got.keys()
    assert all(n.startswith("train_eval_") for n in missing), missing
    assert len(want.keys() - missing) >= 2  # a test metric, at least, and the loss
    for name in want.keys() - missing:
        np.testing.assert_allclose(got[name], want[name], rtol=tol, err_msg=name)


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    """The same run in this process on 8 devices and on 1: summaries and run directories."""
    root = tmp_path_factory.mktemp("single")
    cfg = experiment.load("mnist1d/mlp", quick=True, overrides=SETTINGS)
    out = {}
    for devices in (8, 1):
        workdir = root / f"d{devices}"
        summary = experiment.run(experiment.apply_overrides(cfg, [f"loop.devices={devices}"]),
                                 workdir, progress=False)
        out[devices] = (summary, workdir)
    return out


# `dlcore` whose process 0 ends its command 2 x HEARTBEAT + 2 s after process 1, which waits at
# JAX's shutdown meanwhile: process 0 alone writes a run's summary, plots and trackers after the
# last collective, which may take longer than any heartbeat
LATE_CLI = ("-c", f"""
import runpy, sys, time
from dlcore import experiment
run = experiment.run
def late(*args, **kwargs):
    summary = run(*args, **kwargs)
    if sys.argv[sys.argv.index("--process-id") + 1] == "0":
        time.sleep({2 * HEARTBEAT + 2})
    return summary
experiment.run = late
runpy.run_module("dlcore.cli", run_name="__main__")
""")


def test_two_processes_train_as_one_and_restore_on_other_topologies(tmp_path, single):
    """Also: process 0 ends its command well after process 1 (LATE_CLI), and neither process
    takes the other for dead nor is aborted at JAX's shutdown."""
    workdir = tmp_path / "two"
    (rc0, out0, err0), (rc1, out1, err1) = finish(launch(workdir, free_port(), cli=LATE_CLI), 150)
    assert rc0 == 0 and rc1 == 0, (err0[-2000:], err1[-2000:])
    assert err0 == err1 == "", (err0[-2000:], err1[-2000:])
    assert "test_accuracy" in out0 and "test_accuracy" not in out1  # process 0 reports
    summary = json.loads((workdir / "summary.json").read_text())
    for devices in (8, 1):
        assert_same_metrics(summary["metrics"], single[devices][0]["metrics"])
    assert summary["versions"]["devices"] == 8
    rows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [10, 20, 30, 40]  # one writer: no row twice
    assert len(list((workdir / "tensorboard").iterdir())) == 1
    # the 2 x 4 checkpoint restores on 1 x 8 (this process) with the parameters of the 1 x 8 run
    # and of the 1 x 1 run; the loop resumes it on either and evaluates it alike
    assert_close(params(workdir), params(single[8][1]))
    assert_close(params(workdir), params(single[1][1]))
    cfg = experiment.load("mnist1d/mlp", quick=True, overrides=SETTINGS)
    for devices in (8, 1):
        shutil.copytree(workdir, tmp_path / f"on{devices}")
        again = experiment.run(experiment.apply_overrides(cfg, [f"loop.devices={devices}"]),
                               tmp_path / f"on{devices}", progress=False)
        assert again["start_step"] == STEPS and again["steps_run"] == 0
        for name, value in single[devices][0]["metrics"].items():
            np.testing.assert_allclose(again["metrics"][name], value, rtol=1e-5)


# sort/gpt, tiny: one block 24 wide, 4 steps of 32 sequences in one call, then one checkpoint and
# one evaluation (each exchange between processes costs more than the training here)
GPT_STEPS = 4
GPT_SETTINGS = [f"loop.steps={GPT_STEPS}", f"loop.steps_per_call={GPT_STEPS}",
                f"loop.log_every={GPT_STEPS}", f"loop.eval_every={GPT_STEPS}",
                f"loop.checkpoint_every={GPT_STEPS}", "data.batch_size=32", "model.layers=1",
                "model.width=24", "loop.sharding=fsdp", "loop.plots=false"]


def test_a_transformer_with_fsdp_over_two_processes_trains_as_one(tmp_path):
    """A GPT whose parameters and Adam moments are split over the 8 devices of 2 processes
    (loop.sharding=fsdp: each process holds and saves only its shards) trains to the parameters
    and metrics of 1 process x 8 devices (FSDP too) and of 1 device, and its checkpoint restores
    on both."""
    workdir = tmp_path / "two"
    procs = launch(workdir, free_port(), name="sort/gpt", base=GPT_SETTINGS)
    (rc0, _, err0), (rc1, _, err1) = finish(procs, 150)
    assert rc0 == 0 and rc1 == 0, (err0[-2000:], err1[-2000:])
    saved = workdir / "checkpoints" / str(GPT_STEPS) / "default"
    written = {i: sum(f.stat().st_size for f in (saved / f"ocdbt.process_{i}").rglob("*")
                      if f.is_file()) for i in (0, 1)}
    assert written[1] > 0.3 * (written[0] + written[1]), written  # shards, not one replica
    summary = json.loads((workdir / "summary.json").read_text())
    cfg = experiment.load("sort/gpt", quick=True, overrides=GPT_SETTINGS)
    for devices in (8, 1):  # (the gradients' sums in another order: float rounding, ~1e-7)
        one = experiment.apply_overrides(cfg, [f"loop.devices={devices}"])
        want = experiment.run(one, tmp_path / f"d{devices}", progress=False)
        assert_same_metrics(summary["metrics"], want["metrics"])
        assert_close(params(workdir), params(tmp_path / f"d{devices}"))
        shutil.copytree(workdir, tmp_path / f"on{devices}")
        again = experiment.run(one, tmp_path / f"on{devices}", progress=False)
        assert again["start_step"] == GPT_STEPS and again["steps_run"] == 0
        assert_same_metrics(again["metrics"], want["metrics"])


def kill_and_resume(workdir: Path, single, victim: int) -> str:
    """SIGKILL process `victim` once the first checkpoint is written; the other process must end
    on its own, and the same command resume to the uninterrupted result. The survivor's stderr."""
    port = free_port()
    procs = launch(workdir, port)
    try:
        first = workdir / "checkpoints" / "10" / "_CHECKPOINT_METADATA"
        deadline = time.monotonic() + 120
        while not first.exists() and procs[0].poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert first.exists(), "no checkpoint was written"
        procs[victim].send_signal(signal.SIGKILL)
        # a survivor that never ended would be killed here, and fail the checks below
        (rc0, _, err0), (rc1, _, err1) = finish(procs, HEARTBEAT + 60)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    rc, err = (rc1, err1) if victim == 0 else (rc0, err0)
    assert (rc0, rc1)[victim] == -signal.SIGKILL
    assert rc not in (0, -signal.SIGKILL), f"the survivor finished or hung (status {rc})"
    for noise in ("Traceback", "Terminating process", "stack trace", "coordination_service"):
        assert noise not in err, err[-3000:]
    saved = sorted(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit())
    assert saved and saved[-1] < STEPS

    (rc0, out0, err0), (rc1, _, err1) = finish(launch(workdir, port), 150)
    assert rc0 == 0 and rc1 == 0, (err0[-2000:], err1[-2000:])
    assert f"resumed from step {saved[-1]}" in out0
    summary = json.loads((workdir / "summary.json").read_text())
    assert summary["start_step"] == saved[-1]
    assert_same_metrics(summary["metrics"], single[8][0]["metrics"])
    assert_close(params(workdir), params(single[8][1]))
    return err


GLOO_ABORT = "terminate called after throwing an instance of 'gloo::"


def test_a_killed_process_ends_the_other_and_the_same_command_resumes(tmp_path, single):
    """dlcore's heartbeat notices the silence of process 1 within HEARTBEAT seconds, before JAX's
    own (at twice that), and ends process 0 with one line, exit status 1."""
    err = kill_and_resume(tmp_path / "killed", single, victim=1)
    said = [line for line in err.splitlines() if line.strip()]
    if said and said[0].startswith(GLOO_ABORT):
        # Process 1 died in the middle of a collective and gloo ended process 0 first, from C++,
        # in its own two lines (process 0's stderr is its terminal, not relayed): the README
        # says so. Still no traceback and no JAX stack dump.
        assert len(said) == 2 and said[1].strip().startswith("what():"), err
        return
    assert len(said) == 1 and said[0].startswith("dlcore: error: process 1 stopped answering"), err
    assert "process 0 ends too: run the same command on every process to resume from the last " \
        "checkpoint" in said[0]


def test_a_killed_coordinator_ends_the_other_and_the_same_command_resumes(tmp_path, single):
    """Process 0 holds the coordination service: JAX aborts process 1 as soon as it is lost
    (SIGABRT, from C++), and dlcore/relay.py, which carries process 1's stderr, says so in one
    line instead of JAX's message and stack dump."""
    err = kill_and_resume(tmp_path / "killed0", single, victim=0)
    said = [line for line in err.splitlines() if line.strip()]
    # (or, when gloo ended it first in the middle of a collective, the relay's line for that)
    assert len(said) == 1 and said[0].startswith(
        ("dlcore: error: lost process 0", "dlcore: error: a collective with another process")), err
    assert "process 1 ends too: run the same command on every process to resume from the last " \
        "checkpoint" in said[0]


def test_processes_started_with_different_configs_are_refused(tmp_path):
    procs = launch(tmp_path / "run", free_port(),
                   per_process=lambda i: [f"optim.learning_rate={0.01 * (i + 1)}"])
    for rc, _, err in finish(procs, 90):
        assert rc == 2
        said = [line for line in err.splitlines() if line.startswith("dlcore:")]
        assert len(said) == 1 and "started with another config than process 0" in said[0], err
    assert not (tmp_path / "run").exists()


WORKER = """
import sys, jax, numpy as np
jax.config.update("jax_num_cpu_devices", 4)
from dlcore import distributed, parallel
assert distributed.initialize(sys.argv[1], 2, int(sys.argv[2]), heartbeat_seconds=5)
mesh = parallel.data_mesh(-1)
whole = np.arange(16 * 3, dtype=np.float32).reshape(16, 3)
batch = distributed.batch_from_local({"x": whole[distributed.local_rows(16)]}, mesh)
assert batch["x"].shape == (16, 3) and len(batch["x"].sharding.device_set) == 8
got = jax.jit(lambda b: (b["x"] ** 2).sum(0), out_shardings=parallel.replicated(mesh))(batch)
np.testing.assert_allclose(np.asarray(got), (whole ** 2).sum(0))
print("ok", jax.process_index())
"""


def test_each_process_feeds_only_its_own_rows():
    port = free_port()
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, f"127.0.0.1:{port}", str(i)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(2)]
    for i, (rc, out, err) in enumerate(finish(procs, 60)):
        assert rc == 0 and f"ok {i}" in out, err[-2000:]


def test_the_heartbeat_takes_silence_for_a_death_but_never_a_done(monkeypatch):
    """The watcher's verdicts on a given clock (the processes above run it for real)."""
    ended = []
    monkeypatch.setattr(distributed, "_end",
                        lambda problem, me, orderly=False: ended.append((problem, orderly)))
    watcher = distributed._Watcher(client=None, me=0, count=3, limit=3)
    start = min(t for _, t in watcher.last.values())
    keys = {1: "dlcore/alive/1", 2: "dlcore/alive/2"}
    watcher.look({keys[1]: "1", keys[2]: "1"}, start + 1)
    watcher.look({keys[1]: "2", keys[2]: "done"}, start + 3.5)
    watcher.look({keys[1]: "3", keys[2]: "done"}, start + 60)  # done: silent forever, not dead
    assert ended == []
    watcher.look({keys[1]: "3", keys[2]: "done"}, start + 63.5)
    assert ended == [("process 1 stopped answering (silent for 3 s)", False)]
    watcher.look({keys[1]: "left", keys[2]: "done"}, start + 64)
    watcher.look({keys[1]: "left", keys[2]: "done"}, start + 67.5)
    # a process that left alive waits at JAX's shutdown: the others join it there, then end
    assert ended[-1] == ("process 1 left the run early (its own output says why)", True)


ABORT = b"""W1202 22:18:25.280631   21109 preemption_sync_manager.cc:147] Failed to retrieve \
preemption notice from coordination service: UNAVAILABLE: Socket closed
Additional GRPC error information from remote target coordination_service while calling /xla.co\
ordination.CoordinationService/GetKeyValue:
E1202 22:18:25.280686   21109 coordination_service_agent.cc:289] Polled an error from coordinati\
on service (this can be an error from this or another task).
F1202 22:18:25.280689   21109 client.h:80] Terminating process because the JAX distributed servic\
e detected fatal errors. This most likely indicates that another task died; %s
*** Check failure stack trace: ***
    @     0x7f182b040634  absl::lts_20260107::log_internal::LogMessage::SendToLog()
"""


def test_the_relay_turns_jax_abort_into_one_line():
    """dlcore/relay.py on the stderr JAX leaves when process 0 is lost (as captured), or when
    its service reports a task that stopped sending heartbeats; other lines pass unchanged."""
    import io

    from dlcore import relay
    before = b"dlcore: warning: something\nW1202 22:18:25.1 x.cc:1] other\n"
    lost_zero = ABORT % b"absl::Status: UNAVAILABLE: Socket closed"
    lost_two = ABORT % b"absl::Status: UNAVAILABLE: The following tasks are unhealthy " \
        b"(stopped sending heartbeats):\n2\nThe tasks have crashed."
    for text, said in ((lost_zero, b"lost process 0, which coordinates the run (its connection "
                                   b"closed)"),
                       (lost_two, b"process 2 stopped answering")):
        out = io.BytesIO()
        relay.relay(io.BytesIO(before + text), out, "1")
        lines = out.getvalue().splitlines()
        assert lines[:2] == before.splitlines() and len(lines) == 3, lines
        assert lines[2] == b"dlcore: error: " + said + b"; process 1 ends too: run the same " \
            b"command on every process to resume from the last checkpoint"
    # gloo's own abort, when a collective breaks before JAX notices the lost process
    gloo = (b"terminate called after throwing an instance of 'gloo::EnforceNotMet'\n  what():  "
            b"[enforce fail at pair.cc:459] Connection closed by peer\n")
    out = io.BytesIO()
    relay.relay(io.BytesIO(before + gloo), out, "1")
    lines = out.getvalue().splitlines()
    assert lines[:2] == before.splitlines() and len(lines) == 3, lines
    assert lines[2].startswith(b"dlcore: error: a collective with another process of the run "
                               b"broke (gloo: [enforce fail at pair.cc:459] Connection closed")
    assert lines[2].endswith(b"process 1 ends too: run the same command on every process to "
                             b"resume from the last checkpoint")
    # without an abort, the coordination client's lines are passed on too
    out = io.BytesIO()
    relay.relay(io.BytesIO(ABORT.split(b"F1202")[0] + before), out, "1")
    assert out.getvalue() == ABORT.split(b"F1202")[0] + before


def test_flags_are_checked_before_anything_starts(capsys):
    for argv, flag in ((["--num-processes", "2", "--process-id", "0"], "--coordinator"),
                       (["--coordinator", "localhost", "--num-processes", "2", "--process-id",
                         "0"], "--coordinator"),
                       (["--coordinator", "h:1234", "--num-processes", "2", "--process-id", "2"],
                        "--process-id")):
        assert cli.main(["run", "mnist1d/mlp", "--quick", *argv]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and flag in err[0], err
    with pytest.raises(ConfigError, match="--num-processes"):
        distributed.initialize("h:1", 0, 0)


def test_one_process_is_left_alone(monkeypatch):
    """No flags and no cluster launch: jax.distributed is never started (a plain run pays nothing);
    SLURM or Open MPI launching several tasks, or DLCORE_DISTRIBUTED=auto, would start it."""
    for var in ("SLURM_STEP_ID", "SLURM_NTASKS", "SLURM_STEP_NUM_TASKS", "OMPI_COMM_WORLD_SIZE",
                distributed.ENV):
        monkeypatch.delenv(var, raising=False)
    assert distributed.initialize() is False
    assert distributed.initialize("h:1", 1, 0) is False  # a run of one process
    assert not distributed.cluster_launched()
    monkeypatch.setenv("SLURM_JOB_ID", "7")
    monkeypatch.setenv("SLURM_NTASKS", "4")
    assert not distributed.cluster_launched()  # a batch script's shell, not an srun step
    monkeypatch.setenv("SLURM_STEP_ID", "0")
    assert distributed.cluster_launched()
    monkeypatch.setenv("SLURM_STEP_NUM_TASKS", "1")
    assert not distributed.cluster_launched()
    monkeypatch.setenv("OMPI_COMM_WORLD_SIZE", "2")
    assert distributed.cluster_launched()
    monkeypatch.setenv(distributed.ENV, "off")
    assert distributed.initialize() is False
    monkeypatch.setenv(distributed.ENV, "yes")
    with pytest.raises(ConfigError, match="DLCORE_DISTRIBUTED"):
        distributed.initialize()
    # with one process the exchanges are no-ops, and the mesh takes any device count
    distributed.check_same_config({"a": 1})
    distributed.agree(None)
    with pytest.raises(ConfigError, match="refused"):
        distributed.agree("refused")
    assert distributed.digest({"a": 1, "import_paths": ["/x"]}) == distributed.digest({"a": 1})
    assert distributed.is_main() and distributed.local_rows(8) == slice(0, 8)
