"""The `dlcore` command: list, run (every experiment's --quick mode), report, and bad input."""
import json
import subprocess
import sys

import pytest

from dlcore.cli import main
from dlcore.config import list_experiments

pytestmark = pytest.mark.timeout(300)
EXPERIMENTS = [name for name, _ in list_experiments()]


def test_list_prints_names_first(capsys):
    assert main(["list"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split()[0] for line in lines] == EXPERIMENTS
    assert {"mnist1d/mlp", "mnist1d/logreg"} <= set(EXPERIMENTS)


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_experiment_quick(name, tmp_path, capsys):
    assert main(["run", name, "--quick", "--workdir", str(tmp_path), "--json",
                 "--no-progress"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for key in ("experiment", "metrics", "published", "seconds", "steps", "seeds"):
        assert key in summary
    assert summary["experiment"] == name
    assert summary == json.loads((tmp_path / "summary.json").read_text())
    if "test_accuracy" in summary["metrics"]:
        assert 0.0 <= summary["metrics"]["test_accuracy"] <= 1.0
    assert list((tmp_path / "plots").glob("*.png"))


def test_report_redraws_plots(tmp_path, capsys):
    assert main(["run", "mnist1d/logreg", "--quick", "--workdir", str(tmp_path),
                 "--no-progress"]) == 0
    for png in (tmp_path / "plots").glob("*.png"):
        png.unlink()
    assert main(["report", str(tmp_path)]) == 0
    assert (tmp_path / "plots" / "accuracy.png").stat().st_size > 1000
    assert main(["report", str(tmp_path / "nothing")]) == 2


def test_user_config_file_runs_like_an_experiment(tmp_path, capsys):
    path = tmp_path / "my_experiment.py"
    path.write_text(
        '"""My own experiment."""\n'
        "from dlcore.algorithms.supervised import default_config\n"
        "def get_config():\n"
        "    return default_config(data={'name': 'digits', 'batch_size': 32},\n"
        "                          loop={'steps': 20, 'eval_every': 10, 'checkpoint_every': 10,\n"
        "                                'log_every': 10, 'plots': False})\n")
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
    assert "different config (optim.learning_rate)" in capsys.readouterr().err
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
