"""The host loop: outputs, exact resume (also after SIGKILL), corrupted checkpoints, NaN, seeds."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from dlcore import config as config_lib
from dlcore import loop
from dlcore.writers import read_jsonl, read_tensorboard

pytestmark = pytest.mark.timeout(300)


def tiny(name="mnist1d/mlp", **over):
    cfg = config_lib.load(name)
    base = {"loop.steps": 60, "loop.log_every": 10, "loop.eval_every": 20,
            "loop.checkpoint_every": 20, "loop.keep_checkpoints": 5, "model.hidden": "16,16",
            "loop.plots": "false"}
    base.update(over)
    return config_lib.apply_overrides(cfg, [f"{k}={v}" for k, v in base.items()])


def final_checkpoint(workdir: Path, step=None):
    with ocp.CheckpointManager(Path(workdir).resolve() / "checkpoints") as m:
        return m.restore(step or m.latest_step())


def assert_trees_equal(a, b):
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    assert len(la) == len(lb) and la
    for x, y in zip(la, lb):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_run_writes_everything(tmp_path):
    cfg = tiny(**{"loop.plots": "true"})
    s = loop.run(cfg, tmp_path, progress=False)
    assert s["experiment"] == "mnist1d/mlp" and s["steps"] == 60 and s["seeds"] == 1
    assert 0.0 <= s["metrics"]["test_accuracy"] <= 1.0 and s["metrics"]["test_accuracy"] > 0.2
    assert s["published"]["authors_notebook"] == 0.651 and s["seconds"] > 0
    assert json.loads((tmp_path / "summary.json").read_text())["metrics"] == s["metrics"]
    rows = read_jsonl(tmp_path / "metrics.jsonl")
    assert [r["step"] for r in rows] == [10, 20, 30, 40, 50, 60]
    assert "test/accuracy" in rows[1] and "test/accuracy" not in rows[0]
    assert rows[-1]["train/loss"] < rows[0]["train/loss"]
    events = read_tensorboard(next((tmp_path / "tensorboard").iterdir()))
    assert (60, "train/loss") in {(s_, t) for s_, t, _ in events}
    assert sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir()) == [20, 40, 60]
    assert (tmp_path / "plots" / "accuracy.png").stat().st_size > 1000
    assert (tmp_path / "plots" / "loss.png").exists()


def test_resume_replays_exactly(tmp_path, capsys):
    """Stopping after 40 steps and going on to 60 gives bit-identical parameters."""
    cfg = tiny(**{"data.shuffle": "true", "model.dropout": 0.2})
    loop.run(cfg, tmp_path / "a", progress=False)
    loop.run(config_lib.apply_overrides(cfg, ["loop.steps=40"]), tmp_path / "b", progress=False)
    capsys.readouterr()
    s = loop.run(cfg, tmp_path / "b", progress=False)
    assert "resumed from step 40" in capsys.readouterr().out
    assert not list((tmp_path / "b").glob("corrupt-*"))
    assert_trees_equal(final_checkpoint(tmp_path / "a"), final_checkpoint(tmp_path / "b"))
    rows_a = read_jsonl(tmp_path / "a" / "metrics.jsonl")
    rows_b = read_jsonl(tmp_path / "b" / "metrics.jsonl")
    assert [r["train/loss"] for r in rows_a] == [r["train/loss"] for r in rows_b]
    assert s["metrics"]["test_accuracy"] == json.loads(
        (tmp_path / "a" / "summary.json").read_text())["metrics"]["test_accuracy"]


def test_killed_process_resumes_bit_identical(tmp_path):
    """SIGKILL mid-run, start again: the final parameters equal the uninterrupted run's."""
    args = ["--set", "loop.steps=20000", "--set", "loop.checkpoint_every=500",
            "--set", "loop.eval_every=500", "--set", "loop.log_every=500",
            "--set", "loop.plots=false", "--no-progress"]
    cmd = [sys.executable, "-m", "dlcore.cli", "run", "mnist1d/logreg"]
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    subprocess.run(cmd + ["--workdir", str(tmp_path / "a")] + args, check=True, env=env,
                   capture_output=True)
    proc = subprocess.Popen(cmd + ["--workdir", str(tmp_path / "b")] + args, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpts = tmp_path / "b" / "checkpoints"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        done = [p for p in ckpts.glob("*") if (p / "commit_success.txt").exists()] \
            if ckpts.exists() else []
        if len(done) >= 2:
            break
        time.sleep(0.01)
    assert proc.poll() is None, "the run finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "b" / "summary.json").exists()
    out = subprocess.run(cmd + ["--workdir", str(tmp_path / "b")] + args, env=env,
                         capture_output=True, text=True, check=True)
    assert "resumed from step" in out.stdout
    assert_trees_equal(final_checkpoint(tmp_path / "a"), final_checkpoint(tmp_path / "b"))


def test_corrupted_newest_checkpoint_falls_back(tmp_path):
    cfg = tiny()
    loop.run(cfg, tmp_path / "a", progress=False)
    reference = final_checkpoint(tmp_path / "a")
    newest = tmp_path / "a" / "checkpoints" / "60"
    for f in newest.rglob("*"):
        if f.is_file() and f.stat().st_size > 0 and "commit_success" not in f.name:
            f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])  # truncate every file
    with pytest.warns(RuntimeWarning, match="step 60 could not be restored"):
        loop.run(cfg, tmp_path / "a", progress=False)
    assert (tmp_path / "a" / "corrupt-60").is_dir()  # kept aside, not deleted
    assert_trees_equal(reference, final_checkpoint(tmp_path / "a"))


def test_nan_stops_naming_the_step_and_keeps_checkpoints(tmp_path):
    cfg = tiny(**{"optim.name": "sgd", "optim.learning_rate": 10.0, "loop.checkpoint_every": 2,
                  "loop.eval_every": 2, "loop.log_every": 2, "model.hidden": "100,100",
                  "loop.steps_per_call": 1})
    with pytest.raises(loop.TrainingError, match=r"NaN or Inf at step \d+") as e:
        loop.run(cfg, tmp_path, progress=False)
    step = int(str(e.value).split("at step ")[1].split(";")[0].split()[0])
    saved = sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit())
    assert saved and all(s < step for s in saved)
    for s in saved:  # every checkpoint that was kept is finite and restorable
        leaves = jax.tree.leaves(final_checkpoint(tmp_path, s)["state"])
        assert len(leaves) > 4 and all(np.all(np.isfinite(np.asarray(x, float))) for x in leaves)


def test_seeds_in_one_program_match_sequential(tmp_path):
    cfg = tiny(**{"loop.steps": 20, "loop.eval_every": 10, "loop.checkpoint_every": 10})
    a = loop.run(cfg, tmp_path / "vmap", seeds=3, progress=False)
    b = loop.run(config_lib.apply_overrides(cfg, ["loop.seeds_in_one_program=false"]),
                 tmp_path / "seq", seeds=3, progress=False)
    assert a["seeds_in_one_program"] and not b["seeds_in_one_program"]
    assert a["seed_values"] == b["seed_values"] == [0, 1, 2]
    np.testing.assert_allclose(a["per_seed"]["test_loss"], b["per_seed"]["test_loss"], rtol=1e-4)
    assert len(set(np.round(a["per_seed"]["test_loss"], 6))) == 3  # the seeds really differ
    assert a["metrics_std"]["test_loss"] > 0
    assert (tmp_path / "seq" / "seed_2" / "summary.json").exists()
    assert "per_seed" in read_jsonl(tmp_path / "vmap" / "metrics.jsonl")[-1]


def test_steps_per_call_scan_matches_single_steps(tmp_path):
    cfg = tiny(**{"loop.steps": 40, "loop.steps_per_call": 1})
    a = loop.run(cfg, tmp_path / "a", progress=False)
    b = loop.run(config_lib.apply_overrides(cfg, ["loop.steps_per_call=10"]), tmp_path / "b",
                 progress=False)
    np.testing.assert_allclose(a["metrics"]["test_loss"], b["metrics"]["test_loss"], rtol=1e-5)


def test_regression_runs(tmp_path):
    cfg = config_lib.apply_overrides(config_lib.load("diabetes/mlp", quick=True),
                                     ["loop.plots=false"])
    s = loop.run(cfg, tmp_path, progress=False)
    assert s["metrics"]["test_mse"] < 1.0  # standardised targets: predicting the mean gives ~1


def test_bad_loop_values_are_config_errors(tmp_path):
    for override in ("loop.steps=0", "loop.steps_per_call=7", "loop.best_mode=up",
                     "loop.devices=99", "data.batch_size=100000", "optim.learning_rate=-1"):
        with pytest.raises(config_lib.ConfigError):
            loop.run(tiny(**{override.split("=")[0]: override.split("=")[1]}), tmp_path / "x",
                     progress=False)
    assert not (tmp_path / "x" / "checkpoints").exists()  # nothing was started


def test_watchdog_ends_a_run_without_progress():
    """A deadlocked device program must not hang a run forever: with no beat for the limit (or
    10x the longest gap seen), the watchdog fires once; regular beats keep it quiet."""
    fired = []
    w = loop.Watchdog(0.2, lambda wd: fired.append(wd.step))
    try:
        for step in range(6):
            time.sleep(0.05)
            w.beat(step)
        assert not fired and w.limit() >= 0.2
        time.sleep(0.25)  # the watch thread polls every limit / 4
        deadline = time.monotonic() + 10
        while not fired and time.monotonic() < deadline:
            time.sleep(0.05)
        assert fired == [5]
    finally:
        w.close()
    w = loop.Watchdog(0.2, lambda wd: fired.append("late"))
    w.beat(1)
    time.sleep(0.1)
    w.beat(2)  # a longest gap of 0.1 s: the limit stays 0.2 s
    w.close()
    time.sleep(0.4)
    assert "late" not in fired  # closed: never fires
