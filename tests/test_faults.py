"""Nothing lost, nothing silently wrong: damaged checkpoints, one writer per run directory,
SIGINT/SIGTERM, a full disk, non-finite results, run directories that stay in runs/.

Each test is a regression test of a failure a probe of hostile trials found (issue 12)."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

from dlcore import checkpoint, cli, experiment, loop, writers
from dlcore.core import Algorithm
from dlcore.data.arrays import arrays
from dlcore.writers import read_jsonl

pytestmark = pytest.mark.timeout(300)

CMD = [sys.executable, "-m", "dlcore.cli", "run"]
ENV = {**os.environ, "JAX_PLATFORMS": "cpu"}


def tiny(**over):
    base = {"loop.steps": 60, "loop.log_every": 10, "loop.eval_every": 20,
            "loop.checkpoint_every": 20, "loop.keep_checkpoints": 5, "model.hidden": "16,16",
            "loop.plots": "false"}
    base.update(over)
    return experiment.load("mnist1d/mlp", overrides=[f"{k}={v}" for k, v in base.items()])


def run(cfg, workdir):
    return experiment.run(cfg, workdir, progress=False)


def newest(workdir: Path, step=None):
    with ocp.CheckpointManager(Path(workdir).resolve() / "checkpoints") as m:
        return m.restore(step or m.latest_step())


def steps_kept(workdir: Path) -> list[int]:
    return sorted(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit())


def assert_trees_equal(a, b):
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    assert len(la) == len(lb) and la
    for x, y in zip(la, lb):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def flip_byte(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset % len(data)] ^= 0x5A
    path.write_bytes(bytes(data))


def largest_data_file(step_dir: Path) -> Path:
    """The largest of the array data files (tensorstore's OCDBT data, under .../d/)."""
    return max((f for f in step_dir.rglob("d/*") if f.is_file()), key=lambda f: f.stat().st_size)


# --- damaged checkpoints --------------------------------------------------------------------------

def test_a_flipped_byte_is_caught_by_the_checksum_and_the_previous_checkpoint_used(tmp_path):
    """The probe: one flipped byte in the newest checkpoint's largest data file restored silently
    into other parameters (test accuracy 0.64 -> 0.10). Now it fails its checksum."""
    cfg = tiny()
    first = run(cfg, tmp_path)
    reference = newest(tmp_path)
    flip_byte(largest_data_file(tmp_path / "checkpoints" / "60"), 1000)
    with pytest.warns(RuntimeWarning, match="step 60 could not be restored .its arrays do not "
                                            "match the checksum"):
        again = run(cfg, tmp_path)
    assert again["start_step"] == 40  # replayed from the previous checkpoint ...
    assert again["metrics"] == first["metrics"]  # ... to the same result
    assert_trees_equal(reference, newest(tmp_path))
    assert (tmp_path / "corrupt-60").is_dir()  # kept aside, not deleted


def test_an_emptied_step_directory_condemns_no_good_checkpoint(tmp_path):
    """The probe: `rm -rf RUN/checkpoints/60/*` made orbax expect another layout, every good
    checkpoint was moved aside, metrics.jsonl was cut, and the next run started from zero."""
    cfg = tiny()
    run(cfg, tmp_path)
    reference, rows = newest(tmp_path), read_jsonl(tmp_path / "metrics.jsonl")
    for f in (tmp_path / "checkpoints" / "60").iterdir():
        shutil.rmtree(f) if f.is_dir() else f.unlink()
    with pytest.warns(RuntimeWarning, match="step 60 .*holds no complete checkpoint"):
        s = run(cfg, tmp_path)
    assert s["start_step"] == 40 and steps_kept(tmp_path) == [20, 40, 60]
    assert [p.name for p in tmp_path.glob("corrupt-*")] == ["corrupt-60"]
    assert_trees_equal(reference, newest(tmp_path))
    assert [r["step"] for r in read_jsonl(tmp_path / "metrics.jsonl")] == [r["step"] for r in rows]


def test_a_damaged_key_in_the_step_metadata_is_set_aside(tmp_path):
    """The fault injection's one crash: a flipped byte turned a key of orbax's step metadata into
    an unknown one, and orbax refused to start at all."""
    cfg = tiny()
    first = run(cfg, tmp_path)
    meta = tmp_path / "checkpoints" / "60" / "_CHECKPOINT_METADATA"
    meta.write_text(meta.read_text().replace('"performance_metrics"', '"0erformance_metrics"'))
    with pytest.warns(RuntimeWarning, match="step 60 .*step metadata is unreadable"):
        again = run(cfg, tmp_path)
    assert again["start_step"] == 40 and again["metrics"] == first["metrics"]


def test_the_best_checkpoint_survives_any_number_of_resumes(tmp_path):
    """The probe: the best checkpoint's metric was not saved with it, so after a resume the
    manager no longer knew it and deleted it. Here the 'best' is the highest test loss (the
    earliest evaluation): it must outlive two resumes with only the newest one kept besides."""
    cfg = tiny(**{"loop.keep_checkpoints": 1, "loop.best_metric": "test/loss",
                  "loop.best_mode": "max"})
    for steps in (40, 80, 120):
        run(experiment.apply_overrides(cfg, [f"loop.steps={steps}"]), tmp_path)
    evals = [r for r in read_jsonl(tmp_path / "metrics.jsonl") if "test/loss" in r]
    best = max(evals, key=lambda r: r["test/loss"])["step"]
    assert steps_kept(tmp_path) == sorted({best, 120})


def test_checkpoint_digest_covers_values_names_and_dtypes():
    tree = {"state": {"w": np.arange(6, dtype=np.float32)}, "step": np.asarray(3, np.int64)}
    d = checkpoint.digest(tree)
    assert d == checkpoint.digest(jax.tree.map(np.copy, tree))
    changed = {"state": {"w": tree["state"]["w"].copy()}, "step": tree["step"]}
    changed["state"]["w"][2] = np.nextafter(np.float32(2), np.float32(3))  # one ulp
    assert checkpoint.digest(changed) != d
    assert checkpoint.digest({"state": {"v": tree["state"]["w"]}, "step": tree["step"]}) != d
    assert checkpoint.digest({**tree, "step": np.asarray(3, np.int32)}) != d


# --- one writer per run directory ------------------------------------------------------------------

def test_a_second_process_is_refused_and_a_killed_ones_lock_taken_over(tmp_path, capsys):
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pathlib import Path; from dlcore import "
         "rundir\nwith rundir.claimed(Path(sys.argv[1]), {}):\n    print('held', flush=True); "
         "time.sleep(120)", str(tmp_path)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    args = ["run", "mnist1d/logreg", "--quick", "--workdir", str(tmp_path), "--no-progress"]
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert f"is in use by process {holder.pid}" in err and err.count("\n") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == [".lock"]  # nothing written
    holder.kill()
    holder.wait()
    assert cli.main(args) == 0
    assert f"taking over {tmp_path} from process {holder.pid}" in capsys.readouterr().err
    assert (tmp_path / "summary.json").exists()


# --- signals -------------------------------------------------------------------------------------

def _wait_for(predicate, proc, seconds=120):
    deadline = time.time() + seconds
    while time.time() < deadline and proc.poll() is None and not predicate():
        time.sleep(0.02)
    assert proc.poll() is None, "the run ended before the signal could be sent"


def test_sigint_mid_run_saves_and_the_same_command_resumes_exactly(tmp_path):
    args = ["mnist1d/logreg", "--no-progress", "--set", "loop.steps=30000",
            "--set", "loop.checkpoint_every=10000", "--set", "loop.plots=false"]
    subprocess.run(CMD + args + ["--workdir", str(tmp_path / "a")], check=True, env=ENV,
                   capture_output=True)
    proc = subprocess.Popen(CMD + args + ["--workdir", str(tmp_path / "b")], env=ENV, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _wait_for(lambda: len(read_jsonl(tmp_path / "b" / "metrics.jsonl")) >= 3
              if (tmp_path / "b" / "metrics.jsonl").exists() else False, proc)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert err.startswith("dlcore: interrupted at step ") and err.count("\n") == 1, err
    assert "run the same command to resume" in err and "Traceback" not in err
    step = int(err.split("step ")[1].split()[0])
    assert 0 < step < 30000 and step in steps_kept(tmp_path / "b")
    again = subprocess.run(CMD + args + ["--workdir", str(tmp_path / "b")], env=ENV, text=True,
                           capture_output=True, check=True)
    assert f"resumed from step {step}" in again.stdout
    assert_trees_equal(newest(tmp_path / "a"), newest(tmp_path / "b"))


def test_sigterm_while_compiling_leaves_cleanly(tmp_path):
    """The probe: Ctrl-C during an XLA compile segfaulted (exit 139). The signal now waits for
    the compiled call and leaves with one line and 128 + 15."""
    proc = subprocess.Popen(CMD + ["mnist1d/mlp", "--quick", "--no-progress", "--workdir",
                                   str(tmp_path)], env=ENV, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _wait_for(lambda: (tmp_path / "config.json").exists(), proc)  # init done; the step compiles
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    assert err.startswith("dlcore: interrupted") and err.count("\n") == 1 and "Traceback" not in err


def test_signals_inside_the_loop_only_set_a_flag_and_are_restored():
    from dlcore.watch import Signals
    before = signal.getsignal(signal.SIGINT)
    with Signals() as s:
        signal.raise_signal(signal.SIGINT)
        assert s.received == signal.SIGINT  # no KeyboardInterrupt: the loop decides when to leave
        with pytest.raises(KeyboardInterrupt):  # a second one: the handler from before
            signal.raise_signal(signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is before


# --- results that are no numbers, disks that fill --------------------------------------------------

def _diverging_evaluation():
    def init(key):
        return {"w": jax.random.normal(key, (3, 1))}

    def step(state, batch, key):
        return state, {"loss": jnp.mean(batch["x"] @ state["w"])}

    def evaluate(state, split, key):  # an evaluation that overflows while training stays finite
        return {"mse": jnp.float32(jnp.inf) * jnp.sum(state["w"]) ** 0, "ok": jnp.float32(1.0)}
    return Algorithm(init, step, evaluate, headline=("test_mse",))


def test_a_nonfinite_final_evaluation_is_an_error_and_summary_stays_strict_json(tmp_path):
    rng = np.random.default_rng(0)
    data = arrays(rng.normal(size=(40, 3)).astype(np.float32),
                  rng.normal(size=(40, 1)).astype(np.float32), batch_size=10, test_fraction=0.25)
    with pytest.raises(loop.TrainingError, match="final evaluation gave NaN or Inf for .*test_mse"):
        loop.train(_diverging_evaluation(), data, {"steps": 4, "log_every": 2, "eval_every": 2,
                                                   "checkpoint_every": 2, "plots": False},
                   tmp_path, progress=False)

    def strict(constant):
        raise ValueError(f"{constant} is not JSON")
    summary = json.loads((tmp_path / "summary.json").read_text(), parse_constant=strict)
    assert summary["metrics"]["test_mse"] is None and summary["metrics"]["test_ok"] == 1.0
    assert "test_mse" in summary["nonfinite_metrics"] and "test_ok" not in summary["nonfinite_metrics"]


def test_a_full_disk_mid_run_is_one_line_and_the_checkpoints_survive(tmp_path, capsys,
                                                                     monkeypatch):
    args = ["run", "mnist1d/logreg", "--quick", "--workdir", str(tmp_path), "--no-progress"]
    calls = []
    real = writers.append_jsonl

    def filling(path, row):
        calls.append(row["step"])
        if len(calls) > 2:
            raise OSError(28, "No space left on device")
        real(path, row)
    monkeypatch.setattr(writers, "append_jsonl", filling)
    assert cli.main(args) == 1
    err = capsys.readouterr().err
    assert "cannot write to the run directory" in err and "No space left on device" in err
    assert err.count("\n") == 1
    monkeypatch.setattr(writers, "append_jsonl", real)
    assert cli.main(args) == 0  # space again: the same command resumes
    assert "resumed from step" in capsys.readouterr().out


# --- inputs checked before anything is written or moved ----------------------------------------------

@pytest.mark.parametrize("extra, message", [
    (["--set", "seed=99999999999999999999"], "within int64"),
    (["--cpu-devices", "-2"], "--cpu-devices"),
    (["--set", "loop.watchdog_seconds=1"], "loop.watchdog_seconds"),
    (["--set", "model.hidden=100000000"], "needs 57.0 GiB, more than the 8.0 GiB"),
])
def test_impossible_values_are_one_line_and_write_nothing(tmp_path, capsys, monkeypatch, extra,
                                                          message):
    """The probe's 10^8-wide layer died out of memory with a traceback; the state's size is known
    from an abstract trace (here against a device with 8 GiB free, whatever this machine has)."""
    from dlcore import parallel
    monkeypatch.setattr(parallel, "device_memory", lambda: 8 * 2**30)
    assert cli.main(["run", "mnist1d/mlp", "--quick", "--no-progress",
                     "--workdir", str(tmp_path / "run"), *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "run").exists()


def test_fresh_moves_nothing_until_the_new_values_are_checked(tmp_path, capsys):
    args = ["run", "mnist1d/logreg", "--quick", "--no-progress", "--workdir", str(tmp_path / "r")]
    assert cli.main(args) == 0
    kept = sorted(p.name for p in (tmp_path / "r").iterdir())
    assert cli.main(args + ["--fresh", "--set", "data.batch_size=0"]) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r"]
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == kept
    capsys.readouterr()
    assert cli.main(args + ["--fresh"]) == 0
    assert "moved the previous run to" in capsys.readouterr().err
    assert len(list(tmp_path.glob("r.old-*"))) == 1


@pytest.mark.parametrize("name", ["../../x", "/etc/x", "..", "a/../../b"])
def test_default_run_directories_stay_inside_runs(name):
    path = cli.default_workdir(name, False, 1, [])
    assert path.parts[0] == "runs" and ".." not in path.parts and len(path.parts) >= 2


def test_fault_injection_finds_no_silent_difference(tmp_path):
    """A few trials of benchmarks/fault_injection.py (the README reports 100): every damaged
    checkpoint is caught or harmless; none changes the result unnoticed, none crashes."""
    sys.path.insert(0, str(Path(__file__).parent.parent / "benchmarks"))
    try:
        import fault_injection
    finally:
        sys.path.pop(0)
    result = fault_injection.main(["--trials", "4", "--seed", "3", "--out", str(tmp_path)])
    assert sum(result["counts"].values()) == 4
    assert not result["counts"].get("silent difference") and not result["counts"].get("crash")
    assert not result["counts"].get("detected, but different")


def test_report_survives_a_garbled_config_and_a_damaged_newest_checkpoint(tmp_path, capsys):
    run(tiny(), tmp_path / "a")
    flip_byte(largest_data_file(tmp_path / "a" / "checkpoints" / "60"), 700)
    capsys.readouterr()
    assert cli.main(["report", str(tmp_path / "a")]) == 0
    err = capsys.readouterr().err
    assert err.startswith("dlcore: warning: checkpoint at step 60") and "using the one before" in err
    assert (tmp_path / "a" / "checkpoints" / "60").is_dir()  # a report moves nothing
    (tmp_path / "a" / "config.json").write_text('{"experiment": "mnist1d/mlp", garbage')
    assert cli.main(["report", str(tmp_path / "a")]) == 0  # the curves still
    assert "config.json is unreadable" in capsys.readouterr().err


def test_a_failed_checkpoint_write_is_one_line_naming_the_last_good_one(tmp_path, capsys,
                                                                      monkeypatch):
    """tensorstore reports a full disk as RESOURCE_EXHAUSTED (once read as 'out of device memory');
    orbax raises it at the next save or at the end, from its own threads."""
    real, calls = ocp.CheckpointManager.save, []

    def failing(self, step, *a, **kw):
        calls.append(step)
        if len(calls) > 1:
            raise ValueError('RESOURCE_EXHAUSTED: Error writing "state.params" in OCDBT database')
        return real(self, step, *a, **kw)
    monkeypatch.setattr(ocp.CheckpointManager, "save", failing)
    args = ["run", "mnist1d/logreg", "--quick", "--workdir", str(tmp_path), "--no-progress"]
    assert cli.main(args) == 1
    err = capsys.readouterr().err
    assert err.startswith("dlcore: error: cannot write a checkpoint in") and err.count("\n") == 1
    assert f"resume from step {calls[0]}" in err
