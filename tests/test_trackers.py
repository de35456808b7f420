"""dlcore.trackers: Weights & Biases (offline mode: its run files read back) and MLflow (a local
file store, and a tracking server started on loopback), each skipped when its library is not
installed (`pip install -e '.[test]'` installs both)."""
from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from dlcore import trackers, writers
from dlcore.cli import main


def needs(library: str):
    why = f"{library} is not installed (pip install 'dlcore[{library}]')"
    return pytest.mark.skipif(importlib.util.find_spec(library) is None, reason=why)


def quick(workdir: Path, *extra: str) -> int:
    return main(["run", "mnist1d/logreg", "--quick", "--no-progress", "--workdir", str(workdir),
                 *extra])


def state(workdir: Path) -> dict:
    return json.loads((workdir / "tracker.json").read_text())


def jsonl_metrics(workdir: Path) -> dict[str, list[tuple[int, float]]]:
    """{metric: [(step, value)]} of the run's metrics.jsonl: what every tracker must hold."""
    out: dict[str, list] = {}
    for row in writers.read_jsonl(workdir / "metrics.jsonl"):
        for k, v in row.items():
            if k not in ("step", "time") and isinstance(v, float):
                out.setdefault(k, []).append((row["step"], v))
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- without any tracker library ------------------------------------------------------------------

def test_tracker_names_are_checked_before_anything_is_written(tmp_path, capsys, monkeypatch):
    assert quick(tmp_path / "a", "--tracker", "tensorboard") == 2
    err = capsys.readouterr().err
    assert err.strip() == ("dlcore: error: --tracker: 'tensorboard' is not a tracker; choose "
                           "wandb or mlflow (repeatable, or a comma list)")
    monkeypatch.setitem(sys.modules, "wandb", None)  # as if not installed
    assert quick(tmp_path / "b", "--tracker", "mlflow,wandb") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    if importlib.util.find_spec("mlflow") is not None:  # else mlflow is named first
        assert err.startswith("dlcore: error: --tracker wandb: wandb is not installed; "
                              "pip install 'dlcore[wandb]'")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    monkeypatch.setattr(trackers, "_installed", lambda name: True)
    assert trackers.check(["wandb, MLflow", "wandb", ""]) == ("wandb", "mlflow")
    assert trackers.check("mlflow") == ("mlflow",) and trackers.check(()) == ()


def test_no_tracker_imports_no_tracker_library(tmp_path):
    """A run and a report without --tracker import neither library, and write no tracker.json."""
    import jax
    run = tmp_path / "run"
    code = ("import sys\nfrom dlcore.cli import main\n"
            f"assert main(['run', 'mnist1d/logreg', '--quick', '--no-progress', '--workdir', "
            f"{str(run)!r}]) == 0\n"
            "from dlcore.cli import _send_pictures\n"
            f"_send_pictures(__import__('pathlib').Path({str(run)!r}), [], 'x')\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('wandb', 'mlflow'))\n"
            "assert not bad, bad\n")
    cache = jax.config.jax_compilation_cache_dir or "off"  # the tests' shared cache
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120,
                   env={**os.environ, "DLCORE_COMPILE_CACHE": cache})
    assert (run / "summary.json").exists() and not (run / "tracker.json").exists()


# --- Weights & Biases, offline --------------------------------------------------------------------

def wandb_records(path: Path, timeout: float = 60) -> list:
    """The records of an offline run's .wandb file, once its 'run' and 'exit' records are there:
    wandb's service process writes the file, and may still be writing it when `run.finish()`
    returned."""
    deadline = time.monotonic() + timeout
    while True:
        records = _wandb_file(path)
        kinds = {r.WhichOneof("record_type") for r in records}
        if {"run", "exit"} <= kinds or time.monotonic() > deadline:
            return records
        time.sleep(0.1)


def _wandb_file(path: Path) -> list:
    """The whole records of a .wandb file: W&B's framing of LevelDB's log format (a 7-byte file
    header ':W&B', 0xBEE1, version; 32 KiB blocks of records, each a 7-byte header (CRC, length,
    type: full/first/middle/last) and a piece of a `wandb_internal_pb2.Record`)."""
    from wandb.proto import wandb_internal_pb2 as pb
    data = path.read_bytes()
    ident, magic, _ = struct.unpack("<4sHB", data[:7])
    assert (ident, magic) == (b":W&B", 0xBEE1)
    records, pos, piece = [], 7, b""
    while pos + 7 <= len(data):
        left = 32768 - pos % 32768
        if left < 7:  # a block's tail too short for a header is padding
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if pos + 7 + length > len(data):  # being written
            break
        if kind == 0 and length == 0:
            pos += left
            continue
        piece += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # full, or last piece
            record = pb.Record()
            record.ParseFromString(piece)
            records.append(record)
            piece = b""
    return records


def wandb_items(records, kind: str) -> list[dict]:
    """Each history row or summary update as {key: value} (nested keys joined by '/')."""
    out = []
    for r in records:
        if r.WhichOneof("record_type") == kind:
            items = r.history.item if kind == "history" else r.summary.update
            out.append({i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in items})
    return out


@needs("wandb")
def test_wandb_offline_run_holds_config_metrics_summary_pictures_and_resumes(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_PROJECT", "dlcore-tests")
    run = tmp_path / "run"
    assert quick(run, "--tracker", "wandb", "--set", "loop.steps=100") == 0  # stopped at 100
    run_id = state(run)["wandb"]["id"]
    assert quick(run, "--tracker", "wandb") == 0  # resumed: 100 -> 200, the same W&B run
    shutil.rmtree(run / "checkpoints" / "200")  # as if killed after logging 200, before saving
    assert quick(run, "--tracker", "wandb") == 0  # resumed from 100: 150 and 200 are not resent
    assert state(run)["wandb"] == {"id": run_id, "project": "dlcore-tests", "step": 200}

    files = list(tmp_path.glob("wandb/offline-run-*/run-*.wandb"))  # one per process
    assert len(files) == 3

    def started(records):
        return [r.run.start_time.ToNanoseconds() for r in records
                if r.WhichOneof("record_type") == "run"]
    # in the order the processes ran (names made within one second get a suffix: not in order)
    files, records = zip(*sorted(((f, wandb_records(f)) for f in files),
                                 key=lambda fr: started(fr[1])))
    starts = [r.run for rs in records for r in rs if r.WhichOneof("record_type") == "run"]
    assert [(s.run_id, s.project, s.run_group, list(s.tags)) for s in starts] == \
        [(run_id, "dlcore-tests", "mnist1d/logreg", ["mnist1d/logreg"])] * 3
    config = {c.key: json.loads(c.value_json) for c in starts[-1].config.update}
    saved = json.loads((run / "config.json").read_text())
    assert config["optim.learning_rate"] == saved["optim"]["learning_rate"]
    assert config["loop.steps"] == 200 and config["data.name"] == "mnist1d"
    assert config["seeds"] == "[0]"  # lists as JSON text

    history = [wandb_items(rs, "history") for rs in records]
    got: dict[str, list] = {}
    for rows in history:
        for row in rows:
            for k, v in row.items():
                if not k.startswith(("_", "plots/")) and k != "step":
                    got.setdefault(k, []).append((row["step"], v))
    want = jsonl_metrics(run)
    assert set(got) == set(want) >= {"train/loss", "train/accuracy", "test/accuracy"}
    for k in want:  # each step once, in order, the value metrics.jsonl has
        assert [s for s, _ in got[k]] == [s for s, _ in want[k]]
        assert [v for _, v in got[k]] == pytest.approx([v for _, v in want[k]], rel=1e-6)
    assert [s for s, _ in got["train/loss"]] == [50, 100, 150, 200]
    # the last process sent no metrics (it had them all), only the pictures at step 200
    pictures = [sorted({k.split("/")[1] for k in row if k.startswith("plots/")})
                for row in history[2]]
    assert pictures == [["accuracy", "loss"]]
    assert all(row["step"] == 200 for row in history[2])
    images = list(files[2].parent.glob("files/media/images/plots/*.png"))
    assert sorted(p.name.split("_")[0] for p in images) == ["accuracy", "loss"]

    summary = {}
    for update in wandb_items(records[2], "summary"):
        summary.update(update)
    final = json.loads((run / "summary.json").read_text())
    assert summary["test_accuracy"] == pytest.approx(final["metrics"]["test_accuracy"])
    assert summary["steps_per_second"] == pytest.approx(final["steps_per_second"])
    exits = [r.exit.exit_code for rs in records for r in rs
             if r.WhichOneof("record_type") == "exit"]
    assert exits == [0, 0, 0]


# --- MLflow ---------------------------------------------------------------------------------------

def check_mlflow(client, run_id: str, run: Path, pictures: bool = True) -> None:
    """The MLflow run holds the config as params, each metrics.jsonl row once at its step, the
    summary metrics, config.json and summary.json, and the pictures."""
    found = client.get_run(run_id)
    assert found.info.status == "FINISHED"
    assert client.get_experiment(found.info.experiment_id).name == "mnist1d/logreg"
    assert found.data.tags["dlcore.experiment"] == "mnist1d/logreg"
    saved = json.loads((run / "config.json").read_text())
    params = found.data.params
    assert params["optim.learning_rate"] == str(saved["optim"]["learning_rate"])
    assert params["model.name"] == saved["model"]["name"] and params["seeds"] == "[0]"
    for k, want in jsonl_metrics(run).items():
        history = sorted((m.step, m.value) for m in client.get_metric_history(run_id, k))
        assert [s for s, _ in history] == [s for s, _ in want], k
        assert [v for _, v in history] == pytest.approx([v for _, v in want], rel=1e-6)
    final = json.loads((run / "summary.json").read_text())
    assert found.data.metrics["test_accuracy"] == pytest.approx(final["metrics"]["test_accuracy"])
    artifacts = {a.path for a in client.list_artifacts(run_id)}
    assert {"config.json", "summary.json"} <= artifacts
    sent = json.loads(Path(client.download_artifacts(run_id, "summary.json")).read_text())
    assert sent["metrics"] == final["metrics"]
    plots = sorted(a.path for a in client.list_artifacts(run_id, "plots"))
    assert plots == (sorted(f"plots/{p.name}" for p in (run / "plots").glob("*.png"))
                     if pictures else [])


@pytest.fixture
def file_store(tmp_path, monkeypatch):
    """MLflow's local file store (in maintenance mode in MLflow 3: allowed explicitly)."""
    uri = (tmp_path / "mlruns").as_uri()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    return uri


@needs("mlflow")
def test_mlflow_file_store_run_resumes_and_report_adds_the_pictures(tmp_path, file_store):
    from mlflow.tracking import MlflowClient
    run = tmp_path / "run"
    no_plots = ["--set", "loop.plots=false"]  # pictures come from `dlcore report` below
    assert quick(run, "--tracker", "mlflow", "--set", "loop.steps=100", *no_plots) == 0
    run_id = state(run)["mlflow"]["run_id"]
    assert quick(run, "--tracker", "mlflow", *no_plots) == 0  # 100 -> 200, the same run
    assert state(run)["mlflow"] == {"run_id": run_id, "tracking_uri": file_store, "step": 200}
    client = MlflowClient(file_store)
    check_mlflow(client, run_id, run, pictures=False)
    assert len(client.search_runs([client.get_run(run_id).info.experiment_id])) == 1
    assert main(["report", str(run)]) == 0  # to the run's tracker, the same run
    check_mlflow(client, run_id, run)
    assert client.get_run(run_id).info.status == "FINISHED"


@needs("mlflow")
def test_each_seed_of_a_run_is_tracked_beside_the_mean(tmp_path, file_store):
    """Seeds in one program: each seed's value as '<name>_seed<i>' at every logged step and in the
    summary, beside the mean, equal to metrics.jsonl's and summary.json's per-seed values."""
    from mlflow.tracking import MlflowClient
    run = tmp_path / "run"
    assert quick(run, "--tracker", "mlflow", "--seeds", "2", "--set", "loop.plots=false") == 0
    client = MlflowClient(file_store)
    run_id = state(run)["mlflow"]["run_id"]
    rows = writers.read_jsonl(run / "metrics.jsonl")
    for i in (0, 1):
        history = sorted((m.step, m.value) for m in client.get_metric_history(run_id,
                                                                              f"train/loss_seed{i}"))
        want = [(r["step"], r["per_seed"]["train/loss"][i]) for r in rows]
        assert [s for s, _ in history] == [s for s, _ in want]
        assert [v for _, v in history] == pytest.approx([v for _, v in want], rel=1e-6)
    final = json.loads((run / "summary.json").read_text())
    metrics = client.get_run(run_id).data.metrics
    assert [metrics[f"test_accuracy_seed{i}"] for i in (0, 1)] == pytest.approx(
        final["per_seed"]["test_accuracy"])
    assert metrics["test_accuracy"] == pytest.approx(final["metrics"]["test_accuracy"])
    assert "train/loss" in metrics and "train/loss_seed2" not in metrics


@needs("mlflow")
def test_a_tracker_that_fails_warns_once_training_goes_on_and_a_resume_catches_up(
        tmp_path, capsys, monkeypatch, file_store):
    from mlflow.tracking import MlflowClient
    run = tmp_path / "run"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{free_port()}")  # nobody there
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    assert quick(run, "--tracker", "mlflow") == 0
    err = capsys.readouterr().err
    assert err.count("dlcore: warning: mlflow: ") == 1 and "training goes on without it" in err
    assert (run / "summary.json").exists() and len(jsonl_metrics(run)["train/loss"]) == 4
    assert not (run / "tracker.json").exists()

    monkeypatch.setenv("MLFLOW_TRACKING_URI", file_store)  # the store is back: run again
    assert quick(run, "--tracker", "mlflow") == 0
    run_id = state(run)["mlflow"]["run_id"]
    check_mlflow(MlflowClient(file_store), run_id, run)  # the missed rows sent from metrics.jsonl

    # a store gone in the middle of a run: one warning, that tracker dropped, the rest goes on
    tracked = trackers.start(["mlflow"], run, {"experiment": "mnist1d/logreg"}, "x")
    tracked.log(300, {"train/loss": 0.5})
    shutil.rmtree(tmp_path / "mlruns")
    capsys.readouterr()
    for step in (400, 500):
        tracked.log(step, {"train/loss": 0.25})
    tracked.images(sorted((run / "plots").glob("*.png")))
    tracked.close()
    assert capsys.readouterr().err.count("dlcore: warning: mlflow: ") == 1
    assert state(run)["mlflow"]["step"] == 300


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    """An MLflow tracking server on a free loopback port (its artifacts served through it),
    stopped at the end; the full `mlflow` package is needed (mlflow-skinny has no server)."""
    try:
        importlib.metadata.distribution("mlflow")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("the MLflow server needs the full mlflow package (pip install mlflow)")
    folder = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    log = open(folder / "server.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1", "--backend-store-uri", (folder / "mlruns").as_uri(),
         "--artifacts-destination", str(folder / "artifacts")],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        env={**os.environ, "MLFLOW_ALLOW_FILE_STORE": "true"})
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, (folder / "server.log").read_text()[-2000:]
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, "the MLflow server did not answer within 90 s"
            time.sleep(0.2)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # the server and its workers: our process group
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


@needs("mlflow")
def test_mlflow_server_run_resumes_the_same_run_without_repeated_steps(tmp_path, monkeypatch,
                                                                      mlflow_server):
    from mlflow.tracking import MlflowClient
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    run = tmp_path / "run"
    assert quick(run, "--tracker", "mlflow") == 0
    run_id = state(run)["mlflow"]["run_id"]
    shutil.rmtree(run / "checkpoints" / "200")  # as if killed after logging 200, before saving
    assert quick(run, "--tracker", "mlflow") == 0  # resumed from 100: 150, 200 not sent again
    assert state(run)["mlflow"] == {"run_id": run_id, "tracking_uri": mlflow_server, "step": 200}
    client = MlflowClient(mlflow_server)
    check_mlflow(client, run_id, run)  # artifacts uploaded and listed through the server
    assert client.get_run(run_id).info.artifact_uri.startswith("mlflow-artifacts:")
