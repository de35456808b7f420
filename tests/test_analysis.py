"""dlcore.analysis and `dlcore report`'s pictures, and the study scripts' quick modes."""
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dlcore import analysis, experiment, models
from dlcore.cli import main

pytestmark = pytest.mark.timeout(600)
ROOT = Path(__file__).resolve().parents[1]


def _quick_run(tmp_path_factory, name, *sets):
    workdir = tmp_path_factory.mktemp(name.replace("/", "_"))
    args = ["run", name, "--quick", "--workdir", str(workdir), "--no-progress"]
    for s in sets:
        args += ["--set", s]
    assert main(args) == 0
    return workdir


@pytest.fixture(scope="module")
def cnn_run(tmp_path_factory):
    return _quick_run(tmp_path_factory, "mnist1d/cnn")


@pytest.fixture(scope="module")
def rnn_run(tmp_path_factory):
    return _quick_run(tmp_path_factory, "adding/rnn", "model.hidden_size=8")


def predict(run, state, x):
    """The run's model on x in evaluation mode, from a state of the run."""
    return run.model.apply(models.variables_of(state), x, False, None)[0]


def test_load_run_restores_init_and_final(cnn_run):
    run = experiment.load_run(cnn_run)
    assert run.step == run.config["loop"]["steps"]
    k0, k1 = run.init.params["conv_0"]["kernel"], run.final.params["conv_0"]["kernel"]
    assert k0.shape == k1.shape == (5, 1, 25)
    assert not np.allclose(k0, k1)  # trained
    # the final state evaluates to the accuracy the summary recorded
    summary = json.loads((cnn_run / "summary.json").read_text())
    x, y = run.data.splits["test"]["x"], run.data.splits["test"]["y"]
    out = predict(run, run.final, x)
    assert np.mean(np.argmax(out, -1) == y) == pytest.approx(summary["metrics"]["test_accuracy"])


def test_intermediates_and_layer_grad_norms(cnn_run):
    run = experiment.load_run(cnn_run)
    variables = models.variables_of(run.final)
    acts = analysis.intermediates(run.model, variables, run.data.splits["test"]["x"][:3])
    assert {k: v.shape for k, v in acts.items()} == {
        "stage_0": (3, 19, 25), "stage_1": (3, 10, 25), "stage_2": (3, 5, 25)}
    assert all((v >= 0).all() for v in acts.values())  # after ReLU
    batch = {k: v[:64] for k, v in run.data.splits["train"].items()}
    norms = analysis.layer_grad_norms(run.model, variables, batch, "classification")
    assert list(norms) == ["conv_0", "conv_1", "conv_2", "head"]
    assert all(np.isfinite(v) and v > 0 for v in norms.values())


def test_grad_through_time_last_step_matches_the_head(rnn_run):
    """At t = T-1 only the head sees h_t: dL_i/dh_T = 2 (out_i - y_i) W_head (per-example MSE)."""
    run = experiment.load_run(rnn_run)
    batch = {k: v[:32] for k, v in run.data.splits["test"].items()}
    g = analysis.grad_through_time(run.model, models.variables_of(run.final), batch, "regression")
    assert g.shape == (batch["x"].shape[1],) and np.all(np.isfinite(g))
    out = predict(run, run.final, batch["x"])
    w = np.asarray(run.final.params["head"]["kernel"])[:, 0]
    expected = np.mean(np.abs(2 * (np.asarray(out)[:, 0] - batch["y"][:, 0]))) * np.linalg.norm(w)
    assert g[-1] == pytest.approx(expected, rel=1e-4)
    assert g[0] < g[-1]  # a tanh RNN at this size forgets: the gradient shrinks going back


def test_report_draws_model_pictures(cnn_run, rnn_run, capsys):
    assert main(["report", str(cnn_run)]) == 0
    for name in ("filters.png", "activations.png", "accuracy.png"):
        assert (cnn_run / "plots" / name).stat().st_size > 5000
    assert main(["report", str(rnn_run)]) == 0
    assert (rnn_run / "plots" / "grad_through_time.png").stat().st_size > 5000


def test_report_reads_without_touching_checkpoints(cnn_run):
    before = sorted(p.name for p in (cnn_run / "checkpoints").iterdir())
    experiment.load_run(cnn_run)
    assert sorted(p.name for p in (cnn_run / "checkpoints").iterdir()) == before


def test_load_run_picks_a_seed_of_a_vmapped_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("seeds")
    assert main(["run", "digits/mlp", "--quick", "--seeds", "2", "--workdir", str(workdir),
                 "--no-progress", "--set", "loop.plots=false"]) == 0
    a, b = (experiment.load_run(workdir, seed_index=i) for i in (0, 1))
    ka, kb = (r.final.params["head"]["kernel"] for r in (a, b))
    assert ka.shape == kb.shape and not np.allclose(ka, kb)
    summary = json.loads((workdir / "summary.json").read_text())
    for i, r in enumerate((a, b)):
        out = predict(r, r.final, r.data.splits["test"]["x"])
        acc = np.mean(np.argmax(out, -1) == r.data.splits["test"]["y"])
        assert acc == pytest.approx(summary["per_seed"]["test_accuracy"][i])


def test_load_run_needs_a_run_directory(tmp_path):
    from dlcore.config import ConfigError
    with pytest.raises(ConfigError, match="not a run directory"):
        experiment.load_run(tmp_path)


# --- the study scripts (experiments/studies), quick modes ------------------------------------------

def _study(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "experiments" / "studies" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_regularization_study_quick(tmp_path):
    out = tmp_path / "reg"
    assert _study("regularization").main(["--quick", "--seeds", "2", "--out", str(out),
                                          "--only", "none,early stopping"]) == 0
    table = (out / "regularization.md").read_text().splitlines()
    assert len(table) == 4 and table[2].startswith("| none |")
    data = json.loads((out / "regularization.json").read_text())
    es = data["variants"]["early stopping"]
    assert len(es["per_seed"]["test_accuracy"]) == 2 and es["early_stopping"]["best_step"]
    # the gap column is train minus test accuracy
    none = data["variants"]["none"]["metrics"]
    gap = float(table[2].split("|")[4].split("±")[0])
    assert gap == pytest.approx(100 * (none["train_eval_accuracy"] - none["test_accuracy"]),
                                abs=0.06)


def test_activations_study_quick_shows_vanishing_sigmoid_gradients(tmp_path):
    out = tmp_path / "act"
    assert _study("activations").main(["--quick", "--seeds", "1", "--out", str(out)]) == 0
    data = json.loads((out / "activations.json").read_text())["activations"]
    for act in ("sigmoid", "tanh", "relu"):
        assert len(data[act]["grad_norm_init"]) == 13  # 12 hidden layers and the output layer
    sig = data["sigmoid"]["grad_norm_init"]
    assert sig[0] / sig[-1] < 1e-4  # 12 sigmoid layers: the input side barely gets a gradient
    tanh = data["tanh"]["grad_norm_init"]
    assert tanh[0] / tanh[-1] > 1e-2
    assert (out / "activations.png").stat().st_size > 5000


def test_adding_study_quick(tmp_path):
    out = tmp_path / "adding"
    assert _study("adding_gradients").main(["--quick", "--out", str(out)]) == 0
    data = json.loads((out / "adding.json").read_text())["cells"]
    assert set(data) == {"rnn", "lstm", "gru"}
    assert all(len(c["grad_init"]) == 20 for c in data.values())  # quick: sequences of 20
    assert (out / "grad_through_time.png").stat().st_size > 5000


def test_pacgan_study_quick_tables_every_seed_and_re_reports_a_finished_row(tmp_path):
    out = tmp_path / "pacgan"
    args = ["--quick", "--seeds", "2", "--only", "ring/pacgan2", "--out", str(out)]
    assert _study("pacgan").main(args) == 0
    row = (out / "pacgan.md").read_text().splitlines()[2].split(" | ")
    data = json.loads((out / "pacgan.json").read_text())["rows"]["ring/pacgan2"]
    modes = data["per_seed"]["test_modes"]
    assert row[0] == "| `ring/pacgan2`" and row[1] == "40" and row[2] == "7.9 ± 0.1"
    assert row[3] == f"{np.mean(modes):.1f} ({modes[0]:.1f}, {modes[1]:.1f})"
    assert row[4] == "95.6 %" and row[6] == "0.07"
    rate = data["steps_per_second"]
    assert rate > 0
    # a finished row is re-reported without training, its figures and training speed kept
    assert _study("pacgan").main(args) == 0
    again = json.loads((out / "pacgan.json").read_text())["rows"]["ring/pacgan2"]
    assert again == data
    summary = json.loads((out / "ring_pacgan2" / "summary.json").read_text())
    assert summary["steps_run"] == 0 and summary["steps_per_second"] == rate


def test_layer_grad_norms_come_in_depth_order():
    """Pytrees sort dict keys as strings; the study needs layer 2 before layer 10."""
    from dlcore.models.mlp import MLP
    model = MLP(hidden=(3,) * 12, num_outputs=2)
    variables = model.init(jax.random.key(0), jnp.zeros((1, 4)))
    batch = {"x": jnp.ones((5, 4)), "y": jnp.zeros((5,), jnp.int32)}
    names = list(analysis.layer_grad_norms(model, variables, batch, "classification"))
    assert names == [f"dense_{i}" for i in range(12)] + ["head"]


def test_report_on_seeds_run_one_after_another_reports_each_seed(tmp_path, capsys):
    assert main(["run", "digits/mlp", "--quick", "--seeds", "2", "--workdir", str(tmp_path),
                 "--no-progress", "--set", "loop.seeds_in_one_program=false",
                 "--set", "loop.plots=false"]) == 0
    capsys.readouterr()
    assert main(["report", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    for seed in (0, 1):
        assert (tmp_path / f"seed_{seed}" / "plots" / "activations.png").exists()
        assert f"seed_{seed}" in printed


@pytest.mark.skipif(sys.platform == "win32", reason="run directories are locked with flock")
def test_a_study_says_in_one_line_that_its_run_directory_is_in_use(tmp_path):
    """A study is a command too: another process holding a row's run directory is one line and
    exit status 2 (cli.guarded), not ConfigError's traceback; the holder's run is left alone."""
    import fcntl
    held = tmp_path / "ring_gan"
    held.mkdir()
    fd = os.open(held / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.pwrite(fd, b"process 1 on elsewhere since 2026-12-03 05:41:07", 0)
    try:
        r = subprocess.run([sys.executable, str(ROOT / "experiments" / "studies" / "pacgan.py"),
                            "--quick", "--only", "ring/gan", "--out", str(tmp_path)],
                           capture_output=True, text=True, timeout=300)
    finally:
        os.close(fd)
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr
    errors = [line for line in r.stderr.splitlines() if line.startswith("dlcore: error:")]
    assert errors == [f"dlcore: error: run directory {held} is in use by process 1 on elsewhere "
                      "since 2026-12-03 05:41:07; wait for that run to end, or choose another "
                      "--workdir"]
    assert sorted(p.name for p in held.iterdir()) == [".lock"] and not (tmp_path / "pacgan.md").exists()
