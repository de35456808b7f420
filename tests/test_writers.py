"""dlcore.writers: TensorBoard event files, JSON lines (progress: test_progress.py)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from dlcore import writers


# --- TensorBoard (tensorboardX writes, TensorBoard's own reader reads back) ---------------------

def accumulator(logdir):
    from tensorboard.backend.event_processing import event_accumulator as ea
    acc = ea.EventAccumulator(str(logdir), size_guidance={ea.SCALARS: 0, ea.TENSORS: 0})
    acc.Reload()
    return acc


@pytest.fixture
def event_file(tmp_path):
    w = writers.TensorBoardWriter(tmp_path / "tb")
    w.scalars(1, {"train/loss": 2.5, "test/accuracy": 0.125})
    w.scalars(300, {"train/loss": 0.3333, "note": "text is skipped", "count": 7})
    w.scalars(2 ** 40, {"train/loss": -1e-3})
    w.close()
    return w.path


def test_tensorboard_round_trip(event_file):
    assert event_file.name.startswith("events.out.tfevents.")
    assert [p.name for p in event_file.parent.iterdir()] == [event_file.name]
    got = writers.read_tensorboard(event_file)
    assert [(s, t) for s, t, _ in got] == [(1, "train/loss"), (1, "test/accuracy"),
                                          (300, "train/loss"), (300, "count"),
                                          (2 ** 40, "train/loss")]
    values = [v for _, _, v in got]
    assert values == pytest.approx([2.5, 0.125, 0.3333, 7.0, -1e-3], rel=1e-6)
    acc = accumulator(event_file.parent)
    assert sorted(acc.Tags()["scalars"]) == ["count", "test/accuracy", "train/loss"]
    assert [(e.step, e.value) for e in acc.Scalars("test/accuracy")] == [(1, 0.125)]


def test_tensorboard_numpy_and_jax_scalars_are_written(tmp_path):
    import jax.numpy as jnp
    w = writers.TensorBoardWriter(tmp_path)
    w.scalars(5, {"a": np.float32(0.5), "b": np.float64(1.5), "c": np.int32(3), "d": True,
                  "e": np.array(0.25, np.float32), "f": jnp.float32(4.0),
                  "vector": np.zeros(3), "one": np.ones(1), "s": "x", "none": None})
    w.close()
    got = {t: v for _, t, v in writers.read_tensorboard(w.path)}
    assert got == {"a": 0.5, "b": 1.5, "c": 3.0, "d": 1.0, "e": 0.25, "f": 4.0}


def test_tensorboard_two_writers_two_files_read_in_order(tmp_path):
    for step in (1, 2, 3):  # within one second: each its own file, in name order
        w = writers.TensorBoardWriter(tmp_path)
        w.scalars(step, {"x": float(step)})
        w.close()
    assert len(list(tmp_path.iterdir())) == 3
    assert [(s, v) for s, _, v in writers.read_tensorboard(tmp_path)] == \
        [(1, 1.0), (2, 2.0), (3, 3.0)]


def test_tensorboard_resume_drops_what_came_after_the_checkpoint(tmp_path):
    w = writers.TensorBoardWriter(tmp_path, start=0)
    for step in (5, 10, 15):
        w.scalars(step, {"x": float(step)})
    w.close()
    w = writers.TensorBoardWriter(tmp_path, start=10)  # resumed from the checkpoint at 10
    for step in (15, 20):
        w.scalars(step, {"x": -float(step)})
    w.close()
    assert [(s, v) for s, _, v in writers.read_tensorboard(tmp_path)] == \
        [(5, 5.0), (10, 10.0), (15, -15.0), (20, -20.0)]
    assert [(e.step, e.value) for e in accumulator(tmp_path).Scalars("x")] == \
        [(5, 5.0), (10, 10.0), (15, -15.0), (20, -20.0)]


def test_tensorboard_config_as_text_and_hyperparameters(tmp_path):
    from tensorboard.plugins.hparams import plugin_data_pb2
    config = {"experiment": "x/y", "optim": {"learning_rate": 0.01, "name": "adam"},
              "model": {"hidden": [16, 16], "dropout": None}, "flag": True}
    (tmp_path / "config.json").write_text(json.dumps(config))
    w = writers.TensorBoardWriter(tmp_path / "tensorboard")  # the config beside the folder
    w.scalars(10, {"test/accuracy": 0.5})
    w.close()
    acc = accumulator(tmp_path / "tensorboard")
    (text,) = acc.Tensors("config/text_summary")
    assert text.step == 0
    assert json.loads(text.tensor_proto.string_val[0].decode().strip("`\n")) == config
    content = acc.PluginTagToContent("hparams")  # what the HParams view reads
    assert list(content) == ["_hparams_/session_start_info"]
    hp = plugin_data_pb2.HParamsPluginData.FromString(
        content["_hparams_/session_start_info"]).session_start_info.hparams
    assert {k: v.WhichOneof("kind") and getattr(v, v.WhichOneof("kind")) for k, v in hp.items()} \
        == {"experiment": "x/y", "optim.learning_rate": 0.01, "optim.name": "adam",
            "model.hidden": "[16, 16]", "model.dropout": "null", "flag": True}
    # a resumed run does not write them again
    w = writers.TensorBoardWriter(tmp_path / "tensorboard", start=10)
    w.close()
    assert len(accumulator(tmp_path / "tensorboard").Tensors("config/text_summary")) == 1


def test_tensorboard_writer_does_not_import_torch(tmp_path):
    """tensorboardX imports PyTorch, where installed, for a type alias: +1.5 s and +190 MiB on a
    quick run. The writer hides it during that import; torch imports normally afterwards."""
    import importlib.util
    import subprocess
    import sys
    if importlib.util.find_spec("torch") is None:
        pytest.skip("PyTorch is not installed: nothing to hide")
    code = ("import sys, pathlib; from dlcore import writers\n"
            f"w = writers.TensorBoardWriter(pathlib.Path({str(tmp_path)!r})); w.close()\n"
            "assert 'torch' not in sys.modules and 'tensorboardX' in sys.modules\n"
            "import torch; from tensorboardX.x2num import make_np\n"
            "assert make_np(torch.ones(2)).sum() == 2")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_tensorboard_of_a_run_equals_metrics_jsonl_and_resumes_without_repeats(tmp_path):
    import shutil

    from dlcore import experiment
    over = {"loop.steps": 40, "loop.log_every": 10, "loop.eval_every": 20,
            "loop.checkpoint_every": 20, "model.hidden": "16,16", "loop.plots": "false"}
    cfg = experiment.load("mnist1d/mlp", overrides=[f"{k}={v}" for k, v in over.items()])
    run = tmp_path / "run"
    experiment.run(cfg, run, progress=False)

    def both():
        rows = writers.read_jsonl(run / "metrics.jsonl")
        want = sorted((r["step"], k, v) for r in rows for k, v in r.items()
                      if k not in ("step", "time") and isinstance(v, float))
        acc = accumulator(run / "tensorboard")
        got = sorted((e.step, tag, e.value) for tag in acc.Tags()["scalars"]
                     for e in acc.Scalars(tag))
        assert [(s, t) for s, t, _ in got] == [(s, t) for s, t, _ in want]
        assert [v for *_, v in got] == pytest.approx([v for *_, v in want], rel=1e-6)
        return got

    first = both()
    assert {t for _, t, _ in first} >= {"train/loss", "test/accuracy"}
    assert [s for s, t, _ in first if t == "train/loss"] == [10, 20, 30, 40]
    shutil.rmtree(run / "checkpoints" / "40")  # as if killed after logging 40, before saving it
    experiment.run(cfg, run, progress=False)  # resumes from 20: 30 and 40 logged again
    assert len(list((run / "tensorboard").iterdir())) == 2
    again = both()  # one value per step and tag, equal to metrics.jsonl
    assert [(s, t) for s, t, _ in again] == [(s, t) for s, t, _ in first]
    acc = accumulator(run / "tensorboard")
    assert [e.step for e in acc.Scalars("train/loss")] == [10, 20, 30, 40]


# --- JSON lines -----------------------------------------------------------------------------------

def test_jsonl_append_read_truncate(tmp_path):
    path = tmp_path / "metrics.jsonl"
    assert writers.read_jsonl(path) == []
    for step in (1, 2, 3, 4):
        writers.append_jsonl(path, {"step": step, "train/loss": 1.0 / step})
    assert [r["step"] for r in writers.read_jsonl(path)] == [1, 2, 3, 4]
    assert writers.read_jsonl(path)[2]["train/loss"] == pytest.approx(1 / 3)
    assert path.read_text().count("\n") == 4

    writers.truncate_jsonl(path, 2)
    assert [r["step"] for r in writers.read_jsonl(path)] == [1, 2]
    writers.append_jsonl(path, {"step": 3, "train/loss": 9.0})
    assert [(r["step"], r["train/loss"]) for r in writers.read_jsonl(path)][-1] == (3, 9.0)
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.jsonl"]
    writers.truncate_jsonl(tmp_path / "absent.jsonl", 5)  # nothing to do, no error
    assert not (tmp_path / "absent.jsonl").exists()


def test_jsonl_skips_torn_last_line(tmp_path):
    path = tmp_path / "m.jsonl"
    writers.append_jsonl(path, {"step": 1, "v": 1.0})
    writers.append_jsonl(path, {"step": 2, "v": 2.0})
    with open(path, "a") as f:
        f.write('{"step": 3, "v": 3.')  # killed mid-write
    assert writers.read_jsonl(path) == [{"step": 1, "v": 1.0}, {"step": 2, "v": 2.0}]
    writers.truncate_jsonl(path, 10)  # a resume repairs the file
    assert path.read_text() == "".join(json.dumps(r) + "\n" for r in
                                       [{"step": 1, "v": 1.0}, {"step": 2, "v": 2.0}])
