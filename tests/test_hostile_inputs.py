"""Hostile input through the command line: every refusal is one line (`dlcore: error: ...`, exit
2) naming the key or file, what was expected and what was found, with nothing written into the run
directory; damaged run files (metrics.jsonl, TensorBoard events) are read past, and a resume loses
no good row and shows no step twice.

Every case here was a traceback, a silently wrong run or a misleading message before."""
from __future__ import annotations

import io
import json
import shutil
import struct
import zipfile
import zlib

import numpy as np
import pytest

from dlcore import writers
from dlcore.cli import main

pytestmark = pytest.mark.timeout(300)


def refused(capsys, args: list[str], workdir, *fragments: str) -> str:
    """Run the CLI, expect exit 2 with one line holding every fragment, and no run directory."""
    assert main(args + ["--workdir", str(workdir), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("dlcore: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in err, err
    assert not workdir.exists()  # nothing written before the input was checked
    return err


def npz_run(path) -> list[str]:
    """`dlcore run` of the MNIST-1D MLP recipe on the arrays of `path`, kept tiny."""
    return ["run", "mnist1d/mlp", "--set", "data.name=npz", "--set", f"data.path={path}",
            "--set", "data.batch_size=8", "--set", "loop.steps=20", "--set", "loop.steps_per_call=5",
            "--set", "loop.log_every=5", "--set", "loop.eval_every=10",
            "--set", "loop.checkpoint_every=10", "--set", "loop.plots=false",
            "--set", "model.hidden=[8]"]


def three_classes(n: int = 60, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {"x": rng.normal(size=(n, 4)).astype(np.float32), "y": np.arange(n) % 3}


# --- 1. labels ------------------------------------------------------------------------------------

def test_a_test_label_outside_the_training_classes_is_refused(tmp_path, capsys):
    """A test label of 50 used to widen the output layer to 51 classes silently."""
    test = three_classes(12, seed=1)
    test["y"][0] = 50
    np.savez(tmp_path / "d.npz", **three_classes(), x_test=test["x"], y_test=test["y"])
    refused(capsys, npz_run(tmp_path / "d.npz"), tmp_path / "run", "d.npz' test: label 50 is "
            "outside the 3 classes of the training labels (0..2)")


def idx(array: np.ndarray, code: int = 0x08) -> bytes:
    dtype = {0x08: ">u1", 0x0C: ">i4"}[code]
    head = bytes([0, 0, code, array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape)
    return head + array.astype(dtype).tobytes()


def mnist_folder(folder, train_labels: np.ndarray, test_labels: np.ndarray, code: int = 0x08):
    """MNIST's four IDX files with tiny images and the given labels."""
    folder.mkdir()
    for name, labels in (("train", train_labels), ("t10k", test_labels)):
        (folder / f"{name}-images-idx3-ubyte").write_bytes(idx(np.zeros((len(labels), 28, 28))))
        (folder / f"{name}-labels-idx1-ubyte").write_bytes(idx(labels, code))
    return ["run", "mnist1d/mlp", "--set", "data.name=mnist_idx", "--set", f"data.path={folder}",
            "--set", "data.batch_size=4"]


@pytest.mark.parametrize("label, code", [(200, 0x08), (2 * 10**9, 0x0C)])
def test_mnist_idx_labels_that_are_no_class_indices_are_refused(label, code, tmp_path, capsys):
    """A label of 200 was accepted (201 outputs); one of 2e9 allocated 128 GB and died."""
    train = np.append(np.arange(30) % 10, label)
    args = mnist_folder(tmp_path / "mnist", train, np.arange(10), code)
    refused(capsys, args, tmp_path / "run", f"train: labels run up to {label} but only 11 distinct "
            "values occur", "labels must be class indices 0..C-1")


def test_mnist_idx_test_label_outside_the_training_classes(tmp_path, capsys):
    args = mnist_folder(tmp_path / "mnist", np.arange(30) % 10, np.array([3, 200]))
    refused(capsys, args, tmp_path / "run", "test: label 200 is outside the 10 classes of the "
            "training labels (0..9)")


def test_bool_labels_get_a_message_about_labels(tmp_path, capsys):
    """They used to be blamed on another key (loop.best_metric) or called 'not numeric'."""
    d = three_classes()
    np.savez(tmp_path / "d.npz", x=d["x"], y=d["y"] == 1)
    err = refused(capsys, npz_run(tmp_path / "d.npz"), tmp_path / "run",
                  "train: targets of dtype bool; class labels must be integers 0..C-1")
    assert "best_metric" not in err


# --- 2. one line, not a traceback -----------------------------------------------------------------

@pytest.mark.parametrize("body, fragment", [
    ("    raise RuntimeError('boom')", "get_config() raised RuntimeError: boom (bad.py line 2)"),
    ("    return {}", "get_config() returned an empty dict"),
    ("    return {'algorithm': 'supervised', 'model': {'name': 'mlp'}}",
     "config key 'data.name': the config names no data source"),
    ("    return {'algorithm': 'supervised', 'data': {'name': 'digits', 'batch_size': '32'}}",
     "config key 'data.batch_size': must be a positive integer; got '32'"),
    ("    return {'algorithm': 'supervised', 'data': {'name': 'digits'}, 'model': 'mlp'}",
     "config section 'model' must be a dict of keys; got 'mlp'"),
    ("    return {'algorithm': 'supervised', 'data': 'digits'}",
     "config section 'data' must be a dict of keys; got 'digits'"),
    ("    return {'algorithm': 'supervised', 'data': {'name': 5}}",
     "config key 'data.name': must be a name such as 'mnist1d'"),
])
def test_a_broken_config_file_is_one_line(body, fragment, tmp_path, capsys):
    path = tmp_path / "bad.py"
    path.write_text(f"def get_config():\n{body}\n")
    refused(capsys, ["run", str(path)], tmp_path / "run", fragment)


@pytest.mark.parametrize("experiment, setting, fragment", [
    ("mnist1d/mlp", "data.num_samples=-5", "'data.num_samples': must be an integer >= 10"),
    ("mnist1d/mlp", "data.final_seq_length=0", "'data.final_seq_length': must be an integer >= 1"),
    ("mnist1d/mlp", "data.seed=-1", "'data.seed': must be an integer in [0, 2**32)"),
    ("digits/mlp", "data.test_fraction=1.5", "'data.test_fraction': must be in (0, 1)"),
    ("digits/mlp", "data.split_seed=-1", "'data.split_seed': must be an integer in [0, 2**32)"),
])
def test_impossible_data_settings_are_one_line(experiment, setting, fragment, tmp_path, capsys):
    refused(capsys, ["run", experiment, "--set", setting], tmp_path / "run", fragment)


@pytest.mark.parametrize("arrays, fragment", [
    ({"x": np.array(3.0), "y": np.array(1)}, "need a leading example axis; got shapes () and ()"),
    ({"x": np.zeros((40, 4)), "y": np.stack([np.arange(40) % 3] * 2, 1)},
     "train: class labels must be [n]; got (40, 2)"),
])
def test_npz_arrays_of_the_wrong_shape_are_one_line(arrays, fragment, tmp_path, capsys):
    """A 0-d array and integer 2-D targets failed inside the stratified split."""
    np.savez(tmp_path / "d.npz", **arrays)
    refused(capsys, npz_run(tmp_path / "d.npz"), tmp_path / "run", fragment)


def damaged_deflate(good: bytes) -> bytes:
    """`good` (a compressed .npz) with bytes flipped in the middle of its deflate stream, at the
    first place where zlib itself fails (not merely the CRC check after it)."""
    for offset in range(len(good) // 2, len(good) // 2 + 4000, 7):
        bad = bytearray(good)
        bad[offset:offset + 4] = bytes(b ^ 0xFF for b in bad[offset:offset + 4])
        try:
            zipfile.ZipFile(io.BytesIO(bytes(bad))).read("x.npy")
        except zlib.error:
            return bytes(bad)
        except Exception:
            continue
    pytest.fail("no flip damaged the deflate stream")


def test_a_damaged_compressed_npz_is_one_line(tmp_path, capsys):
    rng = np.random.default_rng(0)
    np.savez_compressed(tmp_path / "d.npz", x=rng.normal(size=(2000, 10)), y=np.arange(2000) % 3)
    (tmp_path / "d.npz").write_bytes(damaged_deflate((tmp_path / "d.npz").read_bytes()))
    refused(capsys, npz_run(tmp_path / "d.npz"), tmp_path / "run",
            "d.npz is not a readable .npz file (error: Error -3 while decompressing data")


def test_a_text_file_given_as_npz_is_not_called_a_pickle(tmp_path, capsys):
    (tmp_path / "d.npz").write_text("x,y\n1,2\n")
    err = refused(capsys, npz_run(tmp_path / "d.npz"), tmp_path / "run",
                  "d.npz is not a readable .npz file: it does not start as a zip archive does")
    assert "pickle" not in err


def test_idx_sizes_whose_product_overflows_are_one_line(tmp_path, capsys):
    """(2**16)**4 wrapped to 0 in numpy, so a header-only file passed the size check."""
    args = mnist_folder(tmp_path / "mnist", np.arange(10), np.arange(10))
    dims = (2**16,) * 4
    (tmp_path / "mnist" / "train-images-idx3-ubyte").write_bytes(
        bytes([0, 0, 8, 4]) + b"".join(struct.pack(">I", d) for d in dims))
    refused(capsys, args, tmp_path / "run", "train-images-idx3-ubyte: 20 bytes for shape "
            "(65536, 65536, 65536, 65536), expected 18446744073709551636")


# --- 3. data that float32 cannot hold ---------------------------------------------------------------

def test_float64_data_beyond_float32_is_refused_at_load(tmp_path, capsys):
    """1e300 became Inf in float32 and was reported as a learning-rate divergence."""
    d = three_classes()
    np.savez(tmp_path / "d.npz", x=d["x"].astype(np.float64) * 1e300, y=d["y"])
    err = refused(capsys, npz_run(tmp_path / "d.npz"), tmp_path / "run",
                  "d.npz' train: inputs overflow float32 (array 'x'): magnitudes up to")
    assert "learning_rate" not in err


# --- damaged run files, and resume ----------------------------------------------------------------

@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A tiny 20-step run (rows at 5, 10, 15, 20; checkpoints at 10 and 20), trained once."""
    root = tmp_path_factory.mktemp("finished")
    np.savez(root / "d.npz", **three_classes())
    args = npz_run(root / "d.npz") + ["--workdir", str(root / "run"), "--no-progress"]
    assert main(args) == 0
    return root / "run", args


def interrupted_copy(finished_run, tmp_path):
    """The run as if killed after logging step 20 but before checkpointing it."""
    run, args = finished_run
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    shutil.rmtree(copy / "checkpoints" / "20")
    return copy, [a if a != str(run) else str(copy) for a in args]


BAD_LINES = [b"\xff\xfe not utf-8", b"[1, 2]", b'{"step": "abc", "train/loss": 1.0}']


def test_metrics_jsonl_with_bad_lines_resumes_and_reports(finished_run, tmp_path, capsys):
    run, args = interrupted_copy(finished_run, tmp_path)
    good = (run / "metrics.jsonl").read_bytes().splitlines()
    (run / "metrics.jsonl").write_bytes(b"\n".join(good[:1] + BAD_LINES + good[1:]) + b"\n")
    capsys.readouterr()
    assert main(["report", str(run)]) == 0  # draws, naming the lines it skipped
    err = capsys.readouterr().err
    assert "skipped 3 unreadable lines (line 2: not UTF-8 text; line 3: a JSON list, not an " \
           "object; line 4: its step is 'abc', not an integer)" in err and "Traceback" not in err

    assert main(args) == 0  # resumes from step 10
    err = capsys.readouterr().err
    assert "moved 3 unreadable lines" in err and "metrics.jsonl.unreadable" in err
    rows = writers.read_jsonl(run / "metrics.jsonl")
    assert [r["step"] for r in rows] == [5, 10, 15, 20]  # the good rows up to 10 kept
    assert [json.loads(g)["time"] for g in good[:2]] == [r["time"] for r in rows[:2]]
    assert (run / "metrics.jsonl.unreadable").read_bytes() == b"\n".join(BAD_LINES) + b"\n"


def test_tensorboard_shows_no_step_twice_after_a_resume(finished_run, tmp_path, capsys):
    run, args = interrupted_copy(finished_run, tmp_path)
    before = writers.read_tensorboard(run / "tensorboard")
    assert main(args) == 0  # resumes from 10: steps 15 and 20 are logged again
    steps = [s for s, tag, _ in writers.read_tensorboard(run / "tensorboard")
             if tag == "train/loss"]
    assert steps == [5, 10, 15, 20]
    assert sorted(s for s, t, _ in before if t == "train/loss") == [5, 10, 15, 20]
    try:  # TensorBoard itself, where it is installed, reads the same
        from tensorboard.backend.event_processing import event_accumulator as ea
    except ImportError:
        return
    acc = ea.EventAccumulator(str(run / "tensorboard"), size_guidance={ea.SCALARS: 0})
    acc.Reload()
    assert [e.step for e in acc.Scalars("train/loss")] == [5, 10, 15, 20]


# --- refused before anything is written, wherever the check lives ----------------------------------

def test_a_data_source_of_yours_that_raises_is_one_line(tmp_path, capsys):
    (tmp_path / "my_source.py").write_text(
        "import numpy as np\n"
        "def load(cfg):\n"
        "    return np.load('no-such-file.npy')\n")
    (tmp_path / "exp.py").write_text(
        "def get_config():\n"
        "    return {'algorithm': 'supervised', 'data': {'name': 'my_source:load'}}\n")
    refused(capsys, ["run", str(tmp_path / "exp.py")], tmp_path / "run",
            "config key 'data.name': my_source:load raised FileNotFoundError",
            "(my_source.py line 3)")


@pytest.mark.parametrize("setting, fragment", [
    ("data.batch_size=100000", "'data.batch_size': 100000 is larger than the 4000 training"),
    ("loop.best_metric=test/nothing", "'loop.best_metric': 'test/nothing' is not an evaluation"),
])
def test_seeds_one_after_another_make_no_directory_for_refused_input(setting, fragment, tmp_path,
                                                                     capsys):
    refused(capsys, ["run", "mnist1d/mlp", "--seeds", "2", "--set",
                     "loop.seeds_in_one_program=false", "--set", setting], tmp_path / "run",
            fragment)


def test_supervised_refuses_a_hand_built_data_whose_labels_pass_its_outputs():
    """Array data checks its labels; a Data built by hand reaches supervised learning unchecked."""
    from dlcore import experiment
    from dlcore.config import ConfigError
    from dlcore.core import Data
    from dlcore.data.arrays import arrays
    good = arrays(*three_classes().values(), batch_size=8)
    test = {**good.splits["test"], "y": good.splits["test"]["y"] + 5}
    config = experiment.load("mnist1d/mlp")
    config["data"] = {"name": Data({**good.splits, "test": test}, good.spec, good.sample)}
    with pytest.raises(ConfigError, match=r"test labels run from 5 to 7, outside the 3 classes"):
        experiment.build(config)
    config["data"] = {"name": good}
    experiment.build(config)  # the same Data with its own labels is fine


@pytest.mark.parametrize("name, key, value", [
    ("mnist1d/cnn", "model.pool_size", "0"),
    ("mnist1d/cnn", "model.padding", "1000000000000"),
    ("mnist1d/gru", "model.hidden_size", "1000000000000"),
    ("mnist1d/mlp", "model.hidden", "10000000000"),
])
def test_impossible_model_sizes_are_one_line(tmp_path, capsys, name, key, value):
    """Found by the probe: a ZeroDivisionError (pool_size 0) and OverflowErrors (sizes past
    XLA's int32 shapes) as tracebacks."""
    from dlcore.cli import main
    assert main(["run", name, "--quick", "--no-progress", "--workdir", str(tmp_path / "r"),
                 "--set", f"{key}={value}"]) == 2
    err = capsys.readouterr().err
    assert f"'{key}'" in err and err.count("\n") == 1
    assert not (tmp_path / "r").exists()
