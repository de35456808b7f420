"""TensorBoard beyond scalars: parameter histograms at checkpoint steps, the run's pictures as
images, text beside them; all read back by TensorBoard's own EventAccumulator."""
from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest

from dlcore import experiment, writers

pytestmark = pytest.mark.timeout(300)


def accumulator(logdir: Path):
    from tensorboard.backend.event_processing import event_accumulator as ea
    acc = ea.EventAccumulator(str(logdir), size_guidance={
        ea.SCALARS: 0, ea.TENSORS: 0, ea.HISTOGRAMS: 0, ea.IMAGES: 0})
    acc.Reload()
    return acc


def png(path: Path, width: int, height: int, mode: str = "RGB") -> Path:
    from PIL import Image
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (height, width, len(mode)), dtype=np.uint8)
    Image.fromarray(pixels, mode).save(path)
    return path


class State(NamedTuple):
    params: dict
    step: object


def test_histograms_one_per_leaf_named_by_path(tmp_path):
    import jax.numpy as jnp
    params = {"conv_0": {"kernel": np.arange(24, dtype=np.float32).reshape(2, 3, 4),
                         "bias": jnp.zeros(4, jnp.bfloat16)},  # bfloat16: numpy's odd one
              "blocks": [{"scale": np.ones(5)}],
              "diverged": np.array([1.0, np.nan]),  # not finite: left out
              "count": np.array(3, np.int32), "mask": np.ones(3, bool)}  # bool: left out
    w = writers.TensorBoardWriter(tmp_path)
    assert w.histograms(7, State(params, 0)) == 4
    assert w.histograms(8, {"no": "params"}) == 0  # a state without a `params` field
    w.close()
    acc = accumulator(tmp_path)
    got = {tag: [(e.step, e.histogram_value.num) for e in acc.Histograms(tag)]
           for tag in acc.Tags()["histograms"]}
    assert got == {"params/conv_0/kernel": [(7, 24)], "params/conv_0/bias": [(7, 4)],
                   "params/blocks/0/scale": [(7, 5)], "params/count": [(7, 1)]}
    (kernel,) = acc.Histograms("params/conv_0/kernel")
    h = kernel.histogram_value
    assert (h.min, h.max, h.sum) == (0.0, 23.0, float(sum(range(24))))
    assert sum(h.bucket) == 24 and len(h.bucket) <= writers.TensorBoardWriter.BINS + 1


def test_histograms_of_vmapped_seeds_are_seed_0s(tmp_path):
    seeds = {"dense": {"kernel": np.stack([np.full((3, 2), 1.0), np.full((3, 2), 5.0)])}}
    w = writers.TensorBoardWriter(tmp_path)
    w.histograms(1, State(seeds, 0), seed_axis=True)
    w.close()
    (e,) = accumulator(tmp_path).Histograms("params/dense/kernel")
    assert (e.histogram_value.num, e.histogram_value.min, e.histogram_value.max) == (6, 1.0, 1.0)


def test_pictures_as_images_and_text_replacing_earlier_ones(tmp_path):
    logdir = tmp_path / "tensorboard"
    w = writers.TensorBoardWriter(logdir)
    w.scalars(30, {"train/loss": 1.0})
    w.close()
    plots = tmp_path / "plots"
    plots.mkdir()
    pictures = [png(plots / "loss.png", 64, 48), png(plots / "attention.png", 20, 30, "RGBA"),
                plots / "sample.txt", plots / "notes.json", plots / "missing.png"]
    (plots / "sample.txt").write_text("# x/y, step 30: temperature 0.8\nTo be, or not\n")
    (plots / "notes.json").write_text("{}")
    assert writers.write_pictures(tmp_path / "elsewhere", 30, pictures) is None  # no folder
    first = writers.write_pictures(logdir, 30, pictures)
    again = writers.write_pictures(logdir, 30, pictures)  # `dlcore report` once more
    assert first is not None and again is not None and not first.exists() and again.exists()
    acc = accumulator(logdir)
    assert sorted(acc.Tags()["images"]) == ["plots/attention", "plots/loss"]
    sizes = {tag: [(e.step, e.width, e.height) for e in acc.Images(tag)]
             for tag in acc.Tags()["images"]}
    assert sizes == {"plots/loss": [(30, 64, 48)], "plots/attention": [(30, 20, 30)]}
    (text,) = acc.Tensors("plots/sample/text_summary")
    assert text.step == 30
    assert text.tensor_proto.string_val[0].decode() == \
        "```\n# x/y, step 30: temperature 0.8\nTo be, or not\n```"
    assert [e.step for e in acc.Scalars("train/loss")] == [30]  # the run's own file stays


def test_a_run_writes_histograms_at_checkpoints_and_its_plots(tmp_path):
    import orbax.checkpoint as ocp
    from PIL import Image

    from dlcore import cli
    over = {"loop.steps": 40, "loop.log_every": 10, "loop.eval_every": 20,
            "loop.checkpoint_every": 20, "model.hidden": "16,16"}
    cfg = experiment.load("mnist1d/mlp", overrides=[f"{k}={v}" for k, v in over.items()])
    run = tmp_path / "run"
    experiment.run(cfg, run, seeds=2, progress=False)
    with ocp.CheckpointManager((run / "checkpoints").resolve()) as m:
        params = m.restore(40)["state"]["params"]
    import jax
    leaves = {"params/" + "/".join(str(k.key) for k in path): np.asarray(x)
              for path, x in jax.tree_util.tree_flatten_with_path(params)[0]}
    assert set(leaves) == {"params/dense_0/kernel", "params/dense_0/bias",
                           "params/dense_1/kernel", "params/dense_1/bias",
                           "params/head/kernel", "params/head/bias"}
    acc = accumulator(run / "tensorboard")
    assert sorted(acc.Tags()["histograms"]) == sorted(leaves)
    for tag, x in leaves.items():  # x: both seeds; the histograms: seed 0's
        got = [(e.step, e.histogram_value.num) for e in acc.Histograms(tag)]
        assert got == [(20, x[0].size), (40, x[0].size)], tag
        h = acc.Histograms(tag)[-1].histogram_value
        assert (h.min, h.max) == pytest.approx((x[0].min(), x[0].max()))
    drawn = sorted(p.stem for p in (run / "plots").glob("*.png"))
    assert drawn and sorted(acc.Tags()["images"]) == [f"plots/{s}" for s in drawn]
    for stem in drawn:
        (image,) = acc.Images(f"plots/{stem}")
        with Image.open(run / "plots" / f"{stem}.png") as im:
            assert (image.step, image.width, image.height) == (40, *im.size)
    assert len(acc.Tensors("config/text_summary")) == 1

    assert cli.main(["report", str(run)]) == 0  # draws again: replaces, never adds
    acc = accumulator(run / "tensorboard")
    assert len(list((run / "tensorboard").glob(f"*{writers.PICTURES}"))) == 1
    assert all(len(acc.Images(tag)) == 1 for tag in acc.Tags()["images"])
    assert [e.step for e in acc.Histograms("params/head/kernel")] == [20, 40]
