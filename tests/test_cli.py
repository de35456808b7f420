"""The `dlcore` command: list, run (every experiment's --quick mode), report, and bad input."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from dlcore.cli import main
from dlcore.config import list_experiments

pytestmark = pytest.mark.timeout(300)
EXPERIMENTS = [name for name, _ in list_experiments()]
SHAKESPEARE = Path(__file__).resolve().parents[2] / "shared" / "data" / "tinyshakespeare.txt"


def offline_data(name: str, tmp_path, monkeypatch) -> list[str]:
    """What lets an experiment on tiny Shakespeare run here without the network: the reference
    copy in ../shared/data when it is there, else a small stand-in text read as data.name=text
    (the experiment's model, optimizer and loop are unchanged)."""
    from dlcore.experiment import load
    if load(name, quick=True)["data"]["name"] != "tiny_shakespeare":
        return []
    if SHAKESPEARE.exists():
        monkeypatch.setenv("DLCORE_DATA", str(SHAKESPEARE.parent))
        return []
    print("tiny Shakespeare is not at ../shared/data/tinyshakespeare.txt: a stand-in text is used")
    standin = tmp_path / "standin.txt"
    standin.write_text(("First Citizen:\nBefore we proceed any further, hear me speak.\n\n"
                        "All:\nSpeak, speak.\n\nROMEO:\nBut soft!\n\n") * 80)  # the prompts
    return ["--set", "data.name=text", "--set", f"data.path={standin}"]


def source_run(name: str, tmp_path, monkeypatch) -> None:
    """What an experiment that starts from another run needs (transfer.init_from, a run directory
    relative to the current directory): the experiment whose quick run writes there, trained first
    in tmp_path, which becomes the current directory."""
    from dlcore.cli import default_workdir
    from dlcore.experiment import load
    wanted = (load(name, quick=True).get("transfer") or {}).get("init_from")
    if not wanted:
        return
    found = [e for e in EXPERIMENTS if Path.cwd() / default_workdir(e, True, 1, []) == Path(wanted)]
    assert found, f"{name} starts from {wanted}, which no experiment's quick run writes"
    monkeypatch.chdir(tmp_path)
    assert main(["run", found[0], "--quick", "--no-progress"]) == 0


def test_list_prints_names_first(capsys):
    assert main(["list"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split()[0] for line in lines] == EXPERIMENTS
    assert {"mnist1d/mlp", "mnist1d/logreg"} <= set(EXPERIMENTS)
    # each description is its docstring's whole first sentence, never cut mid-sentence
    assert all(line.rstrip().endswith((".", ")")) for line in lines), lines


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_experiment_quick(name, tmp_path, capsys, monkeypatch):
    data = offline_data(name, tmp_path, monkeypatch)
    source_run(name, tmp_path, monkeypatch)
    assert main(["run", name, "--quick", "--workdir", str(tmp_path / "run"), "--json",
                 "--no-progress", *data]) == 0
    tmp_path = tmp_path / "run"
    out = capsys.readouterr().out.strip().splitlines()
    summary = json.loads(out[-1])
    for key in ("experiment", "metrics", "published", "seconds", "steps", "seeds", "headline"):
        assert key in summary
    assert summary["experiment"] == name
    assert summary["published"] == {}  # a --quick run is not the published protocol
    assert all(h in summary["metrics"] for h in summary["headline"])
    assert any(line.startswith(f"{name}: {summary['headline'][0]} = ") for line in out)
    assert summary == json.loads((tmp_path / "summary.json").read_text())
    if "test_accuracy" in summary["metrics"]:
        assert 0.0 <= summary["metrics"]["test_accuracy"] <= 1.0
    assert list((tmp_path / "plots").glob("*.png"))


def test_report_redraws_plots(tmp_path, capsys):
    assert main(["run", "mnist1d/mlp", "--quick", "--workdir", str(tmp_path),
                 "--no-progress"]) == 0
    for png in (tmp_path / "plots").glob("*.png"):
        png.unlink()
    assert main(["report", str(tmp_path)]) == 0
    assert (tmp_path / "plots" / "accuracy.png").stat().st_size > 1000
    assert (tmp_path / "plots" / "activations.png").exists()  # the algorithm's own pictures
    assert main(["report", str(tmp_path / "nothing")]) == 2


def test_user_config_file_runs_like_an_experiment(tmp_path, capsys):
    path = tmp_path / "my_experiment.py"
    path.write_text(
        '"""My own experiment."""\n'
        "def get_config():\n"
        "    return {'algorithm': 'supervised', 'data': {'name': 'digits', 'batch_size': 32},\n"
        "            'model': {'name': 'mlp', 'hidden': (16,)},\n"
        "            'loop': {'steps': 20, 'eval_every': 10, 'checkpoint_every': 10,\n"
        "                     'log_every': 10, 'plots': False}}\n")
    assert main(["run", str(path), "--workdir", str(tmp_path / "run"), "--json",
                 "--no-progress"]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["experiment"] == "my_experiment"


@pytest.mark.parametrize("args, message", [
    (["run", "mnist1d/nope"], "unknown experiment 'mnist1d/nope'"),
    (["run", "mnist1d/mlp", "--set", "optim.learnig_rate=1"], "did you mean optim.learning_rate"),
    (["run", "mnist1d/mlp", "--set", "loop.steps=many"], "'loop.steps' expects an integer"),
    (["run", "mnist1d/mlp", "--set", "optim.learning_rate=-1"], "'optim.learning_rate': must be > 0"),
    (["run", "mnist1d/mlp", "--set", "model.activation=swishy"], "'model.activation': must be one of"),
    (["run", "mnist1d/mlp", "--set", "optim"], "not of the form key=value"),
    (["run", "mnist1d/mlp", "--set", "optim=3"], "'optim' is a section"),
    (["run", "mnist1d/mlp", "--seeds", "0"], "'--seeds': must be >= 1"),
    (["run", "cartpole/ppo", "--set", "model.dropout=0.5"], "unknown config key 'model.dropout'"),
    (["run", "mnist1d/mlp", "--set", "model.name=my_missing.module:Net"],
     "cannot import 'my_missing.module:Net'"),
    (["run", "mnist1d/mlp", "--set", "model.name=transformr"], "no model 'transformr'"),
    (["run", "mnist1d/mlp", "--set", "algorithm=nope"], "no algorithm 'nope'"),
    (["run", "mnist1d/mlp", "--set", "data.name=npz"], "'data.path' must name the file"),
    (["run", "cartpole/ppo", "--set", "model.name=mlp"], "'ppo' builds its own network"),
    (["run", "mnist1d/mlp", "--set", "data.name=sinusoid"], "supervised learning takes batches"),
    (["run", "sinusoid/maml", "--set", "data.name=mnist1d", "--set", "model.input_shape=[40]"],
     "MAML learns from tasks"),
    (["run", "glyphs/maml", "--quick", "--set", "data.test_n_way=10"],
     "cannot score 10-way test tasks"),
    (["run", "cartpole/dqn", "--set", "model.activation=foo"], "'model.activation': must be one of"),
    (["run", "sinusoid/maml", "--set", "optim.log_details=true"],
     "unknown config key 'optim.log_details'"),
    (["run", "mnist1d/mlp", "--set", "seed=1.5"], "'seed' expects an integer"),
])
def test_bad_input_exits_2_with_one_message(args, message, tmp_path, capsys):
    assert main(args + ["--workdir", str(tmp_path / "run"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert message in err and err.startswith("dlcore: error:") and "Traceback" not in err
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_unwritable_run_directory(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    assert main(["run", "mnist1d/logreg", "--quick", "--workdir", str(blocker / "run")]) == 2
    assert "is not writable" in capsys.readouterr().err


def test_different_config_in_existing_run_directory_is_refused(tmp_path, capsys):
    args = ["run", "mnist1d/logreg", "--quick", "--workdir", str(tmp_path), "--no-progress"]
    assert main(args) == 0
    before = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert main(args + ["--set", "optim.learning_rate=0.5"]) == 2
    assert "holds a different run (optim.learning_rate: 0.01 -> 0.5)" in capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == before
    assert main(args + ["--set", "optim.learning_rate=0.5", "--fresh"]) == 0
    assert list(tmp_path.parent.glob(f"{tmp_path.name}.old-*"))  # the old run was kept aside


def test_nan_exits_1_naming_the_step(tmp_path, capsys):
    assert main(["run", "mnist1d/mlp", "--workdir", str(tmp_path), "--no-progress",
                 "--set", "optim.name=sgd", "--set", "optim.learning_rate=30",
                 "--set", "loop.log_every=5", "--set", "loop.checkpoint_every=5",
                 "--set", "loop.steps_per_call=1"]) == 1
    err = capsys.readouterr().err
    assert "NaN or Inf at step" in err and "last good checkpoint is step 5" in err


def test_console_script_exit_code():
    out = subprocess.run([sys.executable, "-m", "dlcore.cli", "run", "nothing/here"],
                         capture_output=True, text=True)
    assert out.returncode == 2 and "unknown experiment" in out.stderr


def test_default_run_directories_never_collide(tmp_path, monkeypatch, capsys):
    """The README's sequence: the same experiment alone, with seeds, with --set: three runs."""
    monkeypatch.chdir(tmp_path)
    base = ["run", "mnist1d/logreg", "--quick", "--no-progress"]
    assert main(base) == 0
    assert main(base + ["--seeds", "2"]) == 0
    assert main(base + ["--set", "optim.learning_rate=3e-3"]) == 0
    dirs = sorted(p.name for p in (tmp_path / "runs" / "mnist1d").iterdir())
    assert len(dirs) == 3 and dirs[0] == "logreg-quick" and "logreg-quick-seeds2" in dirs
    capsys.readouterr()
    assert main(base) == 0  # the same command again finds its run and resumes it
    assert "resumed from step 200" in capsys.readouterr().out


def test_published_figures_only_beside_the_published_protocol(tmp_path, capsys):
    args = ["run", "mnist1d/logreg", "--no-progress", "--set", "loop.plots=false"]
    assert main(args + ["--workdir", str(tmp_path / "a"), "--set", "loop.log_every=500"]) == 0
    out = capsys.readouterr().out
    assert "test_accuracy = " in out and "[published: paper_table: 0.32" in out
    assert main(args + ["--workdir", str(tmp_path / "b"), "--set", "data.shuffle=true",
                        "--set", "loop.steps=500"]) == 0
    out = capsys.readouterr().out
    assert "paper_table" not in out.split("(published")[0]
    assert "differs from the published protocol: data.shuffle=true, loop.steps=500" in out


def test_a_resumed_run_reports_the_steps_it_ran(tmp_path, capsys):
    args = ["run", "mnist1d/logreg", "--quick", "--workdir", str(tmp_path), "--no-progress"]
    assert main(args + ["--set", "loop.steps=100"]) == 0
    capsys.readouterr()
    assert main(args) == 0
    assert "100 steps (100 -> 200, resumed) in" in capsys.readouterr().out


def test_set_reaches_a_data_file_of_your_own(tmp_path, capsys):
    """--set data.name=npz --set data.path=...: every array key is reachable from the command line."""
    import numpy as np
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 4)).astype(np.float32)
    np.savez(tmp_path / "mine.npz", x=x, y=(x[:, 0] > 0).astype(np.int64))
    assert main(["run", "mnist1d/logreg", "--quick", "--workdir", str(tmp_path / "run"),
                 "--no-progress", "--json", "--set", f"data.path={tmp_path / 'mine.npz'}",
                 "--set", "data.name=npz", "--set", "data.test_fraction=0.25",
                 "--set", "data.batch_size=30"]) == 0
    summary = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert summary["config"]["data"]["name"] == "npz" and summary["metrics"]["test_accuracy"] > 0.9
    assert summary["config"]["model"]["name"] == "logreg"  # the rest of the experiment stays


def test_an_early_stopped_run_says_where_it_stopped(tmp_path, capsys):
    assert main(["run", "digits/mlp", "--quick", "--workdir", str(tmp_path), "--no-progress",
                 "--set", "data.validation_fraction=0.2", "--set", "loop.early_stopping_patience=1",
                 "--set", "loop.best_metric=validation/accuracy", "--set", "loop.steps=1000",
                 "--set", "loop.eval_every=10", "--set", "loop.log_every=10"]) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    stop = summary["early_stopping"]["stopped_at_step"]
    assert stop < 1000
    assert f"{stop} steps (early stopping; 1000 allowed)" in capsys.readouterr().out
