"""Several processes as one run (dlcore.distributed), simulated on this machine: two local processes
of 4 fake CPU devices each, joined by JAX's distributed runtime over loopback (gloo collectives).

They train as one program equal to one process of 8 devices and of 1 device; their checkpoint
restores onto those topologies; a killed process ends the other within a bounded time and the same
command resumes; processes started with different configs are refused. What this cannot show: a
real network (latency, partitions), GPUs and NCCL, processes on different hosts with separate file
systems (README: 'Running on many machines')."""
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


def launch(workdir: Path, port: int, settings=(), per_process=None) -> list[subprocess.Popen]:
    """`dlcore run mnist1d/mlp --quick` as 2 processes x 4 CPU devices; per_process(i) -> more
    --set arguments for process i."""
    env = {**os.environ, "DLCORE_COMPILE_CACHE": jax.config.jax_compilation_cache_dir or "off",
           "PYTHONUNBUFFERED": "1"}
    procs = []
    for i in range(2):
        sets = [*SETTINGS, "loop.devices=-1", *settings, *(per_process(i) if per_process else [])]
        cmd = [sys.executable, "-m", "dlcore.cli", "run", "mnist1d/mlp", "--quick",
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


def test_two_processes_train_as_one_and_restore_on_other_topologies(tmp_path, single):
    workdir = tmp_path / "two"
    (rc0, out0, err0), (rc1, out1, err1) = finish(launch(workdir, free_port()), 150)
    assert rc0 == 0 and rc1 == 0, (err0[-2000:], err1[-2000:])
    assert "test_accuracy" in out0 and "test_accuracy" not in out1  # process 0 reports
    summary = json.loads((workdir / "summary.json").read_text())
    for devices in (8, 1):
        want = single[devices][0]["metrics"]
        for name, value in want.items():
            np.testing.assert_allclose(summary["metrics"][name], value, rtol=1e-5)
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


def test_a_killed_process_ends_the_other_and_the_same_command_resumes(tmp_path, single):
    workdir, port = tmp_path / "killed", free_port()
    procs = launch(workdir, port)
    try:
        first = workdir / "checkpoints" / "10" / "_CHECKPOINT_METADATA"
        deadline = time.monotonic() + 120
        while not first.exists() and procs[0].poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert first.exists(), "no checkpoint was written"
        procs[1].send_signal(signal.SIGKILL)
        killed_at = time.monotonic()
        (rc0, _, err0), (rc1, _, _) = finish(procs, HEARTBEAT + 60)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert rc1 == -signal.SIGKILL
    assert rc0 != 0, "process 0 finished: the kill came too late to test anything"
    assert time.monotonic() - killed_at < HEARTBEAT + 60
    assert "another task died" in err0  # JAX's distributed runtime ended it
    saved = sorted(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit())
    assert saved and saved[-1] < STEPS

    (rc0, out0, err0), (rc1, _, err1) = finish(launch(workdir, port), 150)
    assert rc0 == 0 and rc1 == 0, (err0[-2000:], err1[-2000:])
    assert f"resumed from step {saved[-1]}" in out0
    summary = json.loads((workdir / "summary.json").read_text())
    assert summary["start_step"] == saved[-1]
    for name, value in single[8][0]["metrics"].items():
        np.testing.assert_allclose(summary["metrics"][name], value, rtol=1e-5)
    assert_close(params(workdir), params(single[8][1]))


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
