"""The README's "Your own model, algorithm and data": each example, copied to a folder outside the
package, runs through `dlcore run <file>` and through the Python API, and `dlcore report` draws
the run from anywhere (the run directory records what to import)."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from dlcore import experiment

pytestmark = pytest.mark.timeout(600)
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
CASES = [("own_model", "resln_mnist1d.py", 0.3), ("own_algorithm", "mixup_mnist1d.py", 0.3),
         ("own_data", "spirals.py", 0.65)]


def _copy(folder: str, tmp_path: Path) -> Path:
    where = tmp_path / folder
    shutil.copytree(EXAMPLES / folder, where)
    if (where / "make_data.py").exists():
        subprocess.run([sys.executable, "make_data.py"], cwd=where, check=True)
    return where


@pytest.mark.parametrize("folder, config_file, bar", CASES)
def test_example_runs_from_the_command_line_and_reports(folder, config_file, bar, tmp_path):
    where = _copy(folder, tmp_path)
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    out = subprocess.run([sys.executable, "-m", "dlcore.cli", "run", config_file, "--quick",
                          "--no-progress", "--json", "--workdir", "run"],
                         cwd=where, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout.splitlines()[-1])
    assert summary["metrics"]["test_accuracy"] > bar
    # `dlcore report` from another folder imports the run's own code again
    report = subprocess.run([sys.executable, "-m", "dlcore.cli", "report", str(where / "run")],
                            cwd=tmp_path, env=env, capture_output=True, text=True)
    assert report.returncode == 0 and "Traceback" not in report.stderr, report.stderr
    assert "accuracy.png" in report.stdout


@pytest.mark.parametrize("folder, config_file, bar", CASES)
def test_example_runs_from_python(folder, config_file, bar, tmp_path):
    where = _copy(folder, tmp_path)
    config = experiment.load(str(where / config_file), quick=True)
    summary = experiment.run(config, tmp_path / "run", progress=False)
    assert summary["metrics"]["test_accuracy"] > bar
    r = experiment.load_run(tmp_path / "run")  # read back: the code is imported by its name
    assert r.step == config["loop"]["steps"]


def test_an_nnx_model_of_your_own_from_the_command_line(tmp_path):
    where = _copy("own_model", tmp_path)
    config = experiment.load(str(where / "resln_mnist1d.py"), quick=True,
                             overrides=["model.name=my_models:NNXMLP", "model.width=32",
                                        "loop.steps=100"])
    assert set(config["model"]) == {"name", "width", "input_shape"}  # its own arguments
    summary = experiment.run(config, tmp_path / "run", progress=False)
    assert summary["metrics"]["test_accuracy"] > 0.2


def test_a_relative_data_path_is_read_from_the_config_files_folder(tmp_path, monkeypatch):
    where = _copy("own_data", tmp_path)
    monkeypatch.chdir(tmp_path)  # elsewhere
    config = experiment.load(str(where / "spirals.py"), quick=True)
    assert config["data"]["path"] == str(where / "my_data.npz")
