"""loop.data=host (dlcore.feed): the training split stays on the host and each call's batches are
sent to the devices. The batches are the on-device path's, so the two runs are equal bit for bit:
with shuffling, augmentation, several steps per call, several seeds in one program, a mesh of 4
devices, a second batch array (unlabeled examples), and across a resume."""
import jax
import numpy as np
import pytest

from dlcore import experiment
from dlcore.config import ConfigError
from dlcore.writers import read_jsonl

pytestmark = pytest.mark.timeout(300)

BASE = {"loop.steps": 40, "loop.log_every": 10, "loop.eval_every": 20, "loop.checkpoint_every": 20,
        "loop.plots": "false", "model.hidden": "16,16", "data.shuffle": "true",
        "data.augment_shift": 3, "data.augment_noise": 0.1, "loop.steps_per_call": 5}


def run(workdir, place, seeds=1, name="mnist1d/mlp", base=BASE, **over):
    settings = {**base, "loop.data": place, **over}
    cfg = experiment.load(name, overrides=[f"{k}={v}" for k, v in settings.items()])
    summary = experiment.run(cfg, workdir, seeds=seeds, progress=False)
    return summary, experiment.load_run(workdir).final, read_jsonl(workdir / "metrics.jsonl")


def assert_same(a, b):
    """Two runs' summaries, final parameters and logged metrics are equal."""
    (sa, pa, ra), (sb, pb, rb) = a, b
    for x, y in zip(jax.tree.leaves(pa), jax.tree.leaves(pb), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    assert sa["metrics"]["test_accuracy"] == sb["metrics"]["test_accuracy"]
    assert [r.get("train/loss") for r in ra] == [r.get("train/loss") for r in rb]


@pytest.mark.parametrize("seeds, over", [
    (1, {}),
    (2, {}),  # two seeds in one program: each its own batches
    (1, {"loop.devices": 4}),  # the batch split over a mesh of 4 (fake CPU) devices
    (2, {"loop.devices": 4, "loop.steps_per_call": 1}),
])
def test_streamed_batches_train_as_the_on_device_ones(tmp_path, seeds, over):
    device = run(tmp_path / "device", "device", seeds, **over)
    host = run(tmp_path / "host", "host", seeds, **over)
    assert_same(device, host)
    # a streamed training split that fits on the device is scored whole at the end, as there
    assert host[0]["metrics"]["train_eval_accuracy"] == device[0]["metrics"]["train_eval_accuracy"]


def test_a_second_batch_array_is_streamed_too(tmp_path):
    """The semi-supervised digits source adds unlabeled examples to every batch."""
    base = {"loop.steps": 20, "loop.log_every": 10, "loop.eval_every": 10,
            "loop.checkpoint_every": 10, "loop.plots": "false", "loop.steps_per_call": 2}
    device = run(tmp_path / "device", "device", name="digits/fixmatch", base=base)
    host = run(tmp_path / "host", "host", name="digits/fixmatch", base=base)
    assert_same(device, host)


def test_a_streamed_run_resumes_exactly(tmp_path, capsys):
    whole = run(tmp_path / "whole", "host")
    run(tmp_path / "parts", "host", **{"loop.steps": 20})
    capsys.readouterr()
    parts = run(tmp_path / "parts", "host")
    assert parts[0]["start_step"] == 20 and "resumed from step 20" in capsys.readouterr().out
    assert_same(whole, parts)


def test_auto_streams_a_data_set_above_the_limit(tmp_path):
    """loop.data=auto (the default) keeps a data set that fits on the device and streams one that
    does not: the same run either way. 0.5 MB is below MNIST-1D's training split (0.6 MB) and
    above its test split (0.15 MB)."""
    fits = run(tmp_path / "fits", "auto")
    streamed = run(tmp_path / "streamed", "auto", **{"loop.max_device_data_mb": 0.5})
    assert "train_eval_accuracy" in fits[0]["metrics"]
    assert "train_eval_accuracy" not in streamed[0]["metrics"]  # above the limit: not scored
    assert_same(fits, streamed)


def test_what_cannot_be_on_the_device_is_refused_before_any_work(tmp_path):
    with pytest.raises(ConfigError, match="loop.data=host"):
        run(tmp_path / "a", "device", **{"loop.max_device_data_mb": 0.5})
    # the evaluation splits stay on the device even when the training split is streamed
    with pytest.raises(ConfigError, match="evaluation splits take"):
        run(tmp_path / "b", "host", **{"loop.max_device_data_mb": 0.001})
    with pytest.raises(ConfigError, match="loop.data"):
        run(tmp_path / "c", "disk")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    assert not (tmp_path / "c").exists()
