"""The host loop: outputs, exact resume (also after SIGKILL), corrupted checkpoints, NaN, seeds,
the run directory as the truth, and the loop driven by values from Python."""
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
from dlcore import experiment, loop
from dlcore.core import Algorithm
from dlcore.data.arrays import arrays
from dlcore.writers import read_jsonl, read_tensorboard

pytestmark = pytest.mark.timeout(300)


def tiny(name="mnist1d/mlp", **over):
    base = {"loop.steps": 60, "loop.log_every": 10, "loop.eval_every": 20,
            "loop.checkpoint_every": 20, "loop.keep_checkpoints": 5, "model.hidden": "16,16",
            "loop.plots": "false"}
    base.update(over)
    return experiment.load(name, overrides=[f"{k}={v}" for k, v in base.items()])


def run(cfg, workdir, **kw):
    return experiment.run(cfg, workdir, progress=False, **kw)


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
    s = run(cfg, tmp_path)
    assert s["experiment"] == "mnist1d/mlp" and s["steps"] == 60 and s["seeds"] == 1
    assert 0.0 <= s["metrics"]["test_accuracy"] <= 1.0 and s["metrics"]["test_accuracy"] > 0.2
    assert 0.0 <= s["metrics"]["train_eval_accuracy"] <= 1.0  # the whole training split
    assert s["headline"] == ["test_accuracy"] and s["seconds"] > 0
    # a shortened run is not the published protocol: its figures are not put beside it
    assert s["published"] == {} and "loop.steps=60" in s["changed"]
    assert s["config"]["published"]["test_accuracy"]["authors_notebook"] == 0.651
    assert json.loads((tmp_path / "summary.json").read_text())["metrics"] == s["metrics"]
    rows = read_jsonl(tmp_path / "metrics.jsonl")
    assert [r["step"] for r in rows] == [10, 20, 30, 40, 50, 60]
    assert "test/accuracy" in rows[1] and "test/accuracy" not in rows[0]
    assert rows[-1]["train/loss"] < rows[0]["train/loss"]
    events = read_tensorboard(tmp_path / "tensorboard")  # the run's file and its pictures
    assert (60, "train/loss") in {(s_, t) for s_, t, _ in events}
    assert sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir()) == [20, 40, 60]
    assert (tmp_path / "plots" / "accuracy.png").stat().st_size > 1000
    assert (tmp_path / "plots" / "loss.png").exists()


def test_resume_replays_exactly(tmp_path, capsys):
    """Stopping after 40 steps and going on to 60 gives bit-identical parameters."""
    cfg = tiny(**{"data.shuffle": "true", "model.dropout": 0.2})
    run(cfg, tmp_path / "a")
    run(experiment.apply_overrides(cfg, ["loop.steps=40"]), tmp_path / "b")
    capsys.readouterr()
    s = run(cfg, tmp_path / "b")
    assert s["start_step"] == 40 and s["steps_run"] == 20
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
    run(cfg, tmp_path / "a")
    reference = final_checkpoint(tmp_path / "a")
    newest = tmp_path / "a" / "checkpoints" / "60"
    for f in newest.rglob("*"):
        if f.is_file() and f.stat().st_size > 0 and "commit_success" not in f.name:
            f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])  # truncate every file
    with pytest.warns(RuntimeWarning, match="step 60 could not be restored"):
        run(cfg, tmp_path / "a")
    assert (tmp_path / "a" / "corrupt-60").is_dir()  # kept aside, not deleted
    assert_trees_equal(reference, final_checkpoint(tmp_path / "a"))


def test_nan_stops_naming_the_step_and_keeps_checkpoints(tmp_path):
    cfg = tiny(**{"optim.name": "sgd", "optim.learning_rate": 10.0, "loop.checkpoint_every": 2,
                  "loop.eval_every": 2, "loop.log_every": 2, "model.hidden": "100,100",
                  "loop.steps_per_call": 1})
    with pytest.raises(loop.TrainingError, match=r"NaN or Inf at step \d+") as e:
        run(cfg, tmp_path)
    step = int(str(e.value).split("at step ")[1].split(";")[0].split()[0])
    saved = sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit())
    assert saved and all(s < step for s in saved)
    for s in saved:  # every checkpoint that was kept is finite and restorable
        leaves = jax.tree.leaves(final_checkpoint(tmp_path, s)["state"])
        assert len(leaves) > 4 and all(np.all(np.isfinite(np.asarray(x, float))) for x in leaves)


def test_seeds_in_one_program_match_sequential(tmp_path):
    cfg = tiny(**{"loop.steps": 20, "loop.eval_every": 10, "loop.checkpoint_every": 10})
    a = run(cfg, tmp_path / "vmap", seeds=3)
    b = run(experiment.apply_overrides(cfg, ["loop.seeds_in_one_program=false"]),
            tmp_path / "seq", seeds=3)
    assert a["seeds_in_one_program"] and not b["seeds_in_one_program"]
    assert a["seed_values"] == b["seed_values"] == [0, 1, 2]
    np.testing.assert_allclose(a["per_seed"]["test_loss"], b["per_seed"]["test_loss"], rtol=1e-4)
    assert len(set(np.round(a["per_seed"]["test_loss"], 6))) == 3  # the seeds really differ
    assert a["metrics_std"]["test_loss"] > 0
    assert (tmp_path / "seq" / "seed_2" / "summary.json").exists()
    assert "per_seed" in read_jsonl(tmp_path / "vmap" / "metrics.jsonl")[-1]


def test_steps_per_call_scan_matches_single_steps(tmp_path):
    cfg = tiny(**{"loop.steps": 40, "loop.steps_per_call": 1})
    a = run(cfg, tmp_path / "a")
    b = run(experiment.apply_overrides(cfg, ["loop.steps_per_call=10"]), tmp_path / "b")
    np.testing.assert_allclose(a["metrics"]["test_loss"], b["metrics"]["test_loss"], rtol=1e-5)


def test_regression_runs(tmp_path):
    cfg = experiment.load("diabetes/mlp", quick=True, overrides=["loop.plots=false"])
    s = run(cfg, tmp_path)
    assert s["metrics"]["test_mse"] < 1.0  # standardised targets: predicting the mean gives ~1


def test_bad_loop_values_are_config_errors(tmp_path):
    for override in ("loop.steps=0", "loop.steps_per_call=7", "loop.best_mode=up",
                     "loop.devices=99", "data.batch_size=100000", "optim.learning_rate=-1"):
        with pytest.raises(config_lib.ConfigError):
            run(tiny(**{override.split("=")[0]: override.split("=")[1]}), tmp_path / "x")
    assert not (tmp_path / "x" / "checkpoints").exists()  # nothing was started


def test_a_hung_program_ends_with_an_error_naming_the_checkpoint(monkeypatch):
    """A deadlocked device program must not hang a run forever: a wait on the device that lasts
    past the limit (or 10x the longest wait seen) raises Hung; waits that return keep it quiet."""
    from dlcore import watch as watch_lib
    watch = watch_lib.Watch(0.3, "w")
    watch.wait(jax.numpy.ones(3), lambda: (0, None))
    assert watch.limit() == 0.3
    monkeypatch.setattr(watch_lib.jax, "block_until_ready", lambda tree: time.sleep(30))
    t0 = time.monotonic()
    with pytest.raises(loop.Hung, match="after step 7 in w.*last checkpoint is step 5"):
        watch.wait(jax.numpy.ones(3), lambda: (7, 5))
    assert time.monotonic() - t0 < 5
    assert issubclass(loop.Hung, loop.TrainingError)  # the command line exits with status 1


# --- the run directory is the truth -------------------------------------------------------------

def test_a_changed_seed_count_is_refused_and_nothing_moves(tmp_path):
    """The README's own sequence: a one-seed run, then --seeds 2 in the same directory."""
    cfg = tiny(**{"loop.steps": 20, "loop.eval_every": 10, "loop.checkpoint_every": 10})
    run(cfg, tmp_path)
    before = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    reference = final_checkpoint(tmp_path)
    with pytest.raises(config_lib.ConfigError, match="seeds"):
        run(cfg, tmp_path, seeds=2)
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == before
    assert not list(tmp_path.glob("corrupt-*"))
    assert_trees_equal(reference, final_checkpoint(tmp_path))
    assert json.loads((tmp_path / "config.json").read_text())["seeds"] == [0]


def test_seeds_one_after_another_are_refused_before_any_work(tmp_path):
    cfg = tiny(**{"loop.steps": 10, "loop.eval_every": 10, "loop.checkpoint_every": 10,
                  "loop.seeds_in_one_program": "false"})
    run(cfg, tmp_path, seeds=2)
    with pytest.raises(config_lib.ConfigError, match=r"seeds: \[0, 1\] -> \[0, 1, 2\]"):
        run(cfg, tmp_path, seeds=3)
    assert not (tmp_path / "seed_2").exists()


def test_a_checkpoint_of_another_shape_is_not_called_corrupt(tmp_path):
    """Arrays of other shapes belong to another run: a clear error, nothing moved aside."""
    cfg = tiny(**{"loop.steps": 20, "loop.eval_every": 10, "loop.checkpoint_every": 10})
    run(cfg, tmp_path)
    (tmp_path / "config.json").unlink()  # so only the checkpoint can tell
    with pytest.raises(config_lib.ConfigError, match="belongs to a different run.*dense_0"):
        run(experiment.apply_overrides(cfg, ["model.hidden=8,8"]), tmp_path)
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["10", "20"]
    assert not list(tmp_path.glob("corrupt-*"))


def test_a_different_config_is_refused_naming_the_key(tmp_path):
    cfg = tiny(**{"loop.steps": 10, "loop.eval_every": 10, "loop.checkpoint_every": 10})
    run(cfg, tmp_path)
    with pytest.raises(config_lib.ConfigError, match=r"optim.learning_rate: 0.01 -> 0.003"):
        run(experiment.apply_overrides(cfg, ["optim.learning_rate=3e-3"]), tmp_path)
    run(experiment.apply_overrides(cfg, ["loop.steps=20"]), tmp_path)  # the loop's settings may


# --- the loop over values from Python ------------------------------------------------------------

def _least_squares(dim=3):
    """A hand-written algorithm: linear regression by SGD, a Python-float metric among its own."""
    import jax.numpy as jnp

    def init(key):
        return {"w": jax.random.normal(key, (dim, 1)) * 0.1, "step": jnp.zeros((), jnp.int32)}

    def step(state, batch, key):
        def loss(w):
            return jnp.mean((batch["x"] @ w - batch["y"]) ** 2)
        value, g = jax.value_and_grad(loss)(state["w"])
        return {"w": state["w"] - 0.1 * g, "step": state["step"] + 1}, {"loss": value, "one": 1.0}

    def evaluate(state, split, key):
        return {"mse": jnp.mean((split["x"] @ state["w"] - split["y"]) ** 2)}
    return Algorithm(init, step, evaluate, headline=("test_mse",))


def test_train_takes_an_algorithm_and_arrays(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 3)).astype(np.float32)
    y = x @ np.array([[1.0], [-2.0], [0.5]], np.float32)
    data = arrays(x, y, batch_size=20, test_fraction=0.25, shuffle=True)
    assert len(data.splits["test"]["x"]) == 50
    loop_cfg = {"steps": 60, "log_every": 10, "eval_every": 20, "checkpoint_every": 20,
                "plots": False}
    s = loop.train(_least_squares(), data, loop_cfg, tmp_path / "a", seeds=2, progress=False)
    assert s["metrics"]["test_mse"] < 0.05 and s["seeds"] == 2 and s["headline"] == ["test_mse"]
    rows = read_jsonl(tmp_path / "a" / "metrics.jsonl")
    assert rows[-1]["train/one"] == 1.0 and "test/mse" in rows[-1]
    # interrupted at 40 and resumed: the same parameters as the uninterrupted run
    loop.train(_least_squares(), data, {**loop_cfg, "steps": 40}, tmp_path / "b", seeds=2,
               progress=False)
    loop.train(_least_squares(), data, loop_cfg, tmp_path / "b", seeds=2, progress=False)
    assert_trees_equal(final_checkpoint(tmp_path / "a"), final_checkpoint(tmp_path / "b"))


def test_train_refuses_a_step_that_breaks_the_contract(tmp_path):
    good = _least_squares()
    data = arrays(np.zeros((10, 3), np.float32), np.zeros((10, 1), np.float32), batch_size=5,
                  test_fraction=0.2)
    bad = good._replace(step=lambda s, b, k: s)  # no metrics
    with pytest.raises(config_lib.ConfigError, match="must return .state, metrics."):
        loop.train(bad, data, {"steps": 2}, tmp_path, progress=False)
    vector = good._replace(step=lambda s, b, k: (s, {"v": jax.numpy.ones(3)}))
    with pytest.raises(config_lib.ConfigError, match="scalars"):
        loop.train(vector, data, {"steps": 2}, tmp_path, progress=False)
    # the state must come back as init made it: structure, then each leaf's shape and dtype
    metrics = {"loss": jax.numpy.zeros(())}
    extra = good._replace(step=lambda s, b, k: ({**s, "more": s["step"]}, metrics))
    with pytest.raises(config_lib.ConfigError, match="another structure than init's"):
        loop.train(extra, data, {"steps": 2}, tmp_path, progress=False)
    half = good._replace(step=lambda s, b, k: ({**s, "w": s["w"].astype("float16")}, metrics))
    with pytest.raises(config_lib.ConfigError, match=r"\['w'\] float32\[3, 1\] -> float16\[3, 1\]"):
        loop.train(half, data, {"steps": 2}, tmp_path, progress=False)
    grown = good._replace(step=lambda s, b, k: ({**s, "w": s["w"].reshape(1, 3)}, metrics))
    with pytest.raises(config_lib.ConfigError, match=r"float32\[3, 1\] -> float32\[1, 3\]"):
        loop.train(grown, data, {"steps": 2}, tmp_path, progress=False)
    assert not (tmp_path / "checkpoints").exists()
