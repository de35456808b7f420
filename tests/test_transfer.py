"""Transfer learning: optim.freeze (frozen parameters bit-identical after real training steps),
graft (copies by path, a new head kept fresh, shape mismatches refused), `dlcore run --init-from`
(the source run's files unchanged, vmapped seeds, exact resume, another source refused),
data.classes, and the two Keras-example experiments in quick mode."""
import hashlib
import json
import shutil
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dlcore import data as data_lib, experiment, optim, sweep, transfer
from dlcore.cli import main
from dlcore.config import ConfigError

pytestmark = pytest.mark.timeout(300)


def _train(config: dict, steps: int):
    """(initial state, state after `steps` jitted steps of real batches) of a config."""
    algorithm, data = experiment.build(config)
    keys = jax.random.split(jax.random.key(0), 3)
    state = init = algorithm.init(keys[0])

    @jax.jit
    def step(state, t):
        batch = data.sample(data.splits["train"], t, keys[1])
        return algorithm.step(state, batch, jax.random.fold_in(keys[2], t))
    for t in range(steps):
        state, _ = step(state, t)
    return init, state


def _leaves(tree) -> dict:
    return {optim.path_name(p): np.asarray(v)
            for p, v in jax.tree_util.tree_flatten_with_path(tree)[0]}


def test_frozen_parameters_stay_bit_identical_through_training():
    # weight decay, the L2 penalty and clipping all present: none may touch a frozen parameter
    config = experiment.load("digits/mlp", quick=True, overrides=[
        "optim.name=adamw", "optim.weight_decay=0.1", "optim.l2=0.01", "optim.clip_norm=0.5",
        "optim.learning_rate=0.01", "optim.freeze=['dense_0', 'head/bias']"])
    init, final = _train(config, 5)
    before, after = _leaves(init.params), _leaves(final.params)
    for name in ("dense_0/kernel", "dense_0/bias", "head/bias"):
        assert np.array_equal(before[name], after[name]), name
    for name in ("dense_1/kernel", "dense_1/bias", "head/kernel"):
        assert not np.array_equal(before[name], after[name]), name
    # the optimizer keeps no moments for frozen leaves (multi_transform masks them out)
    moments = sum(np.asarray(x).size for x in jax.tree.leaves(final.opt_state))
    trained = sum(after[n].size for n in ("dense_1/kernel", "dense_1/bias", "head/kernel"))
    assert 2 * trained <= moments < 2 * trained + 100  # Adam's two moments, a few scalars


def test_freeze_pattern_that_matches_nothing_names_it_and_the_paths():
    tx = optim.build(optim.defaults(freeze=["dense_0", "Conv_*"]), 10)
    params = {"dense_0": {"kernel": jnp.ones((2, 3))}, "head": {"kernel": jnp.ones((3, 2))}}
    with pytest.raises(ConfigError, match=r"'optim.freeze': pattern 'Conv_\*' matches no "
                       r"parameter; the parameter paths are: dense_0/kernel, head/kernel"):
        tx.init(params)
    with pytest.raises(ConfigError, match="optim.freeze"):
        optim.build(optim.defaults(freeze=[3]), 10)


def test_a_sweep_with_frozen_layers_still_sweeps(tmp_path):
    config = experiment.load("digits/mlp", quick=True, overrides=[
        "optim.freeze=dense_0", "loop.steps=4", "loop.eval_every=4", "loop.checkpoint_every=4",
        "loop.log_every=2", "loop.plots=false"])
    summary = sweep.run_sweep(config, {"optim.learning_rate": [1e-3, 1e-2]}, 1, tmp_path,
                              progress=False)
    assert [p["hyper"] for p in summary["points"]] == [{"optim.learning_rate": 1e-3},
                                                       {"optim.learning_rate": 1e-2}]
    losses = [p["metrics"]["test_loss"] for p in summary["points"]]
    assert losses[0] != losses[1]  # each member trained at its own rate


def test_graft_copies_by_path_and_keeps_reinitialised_leaves_fresh():
    k = jax.random.split(jax.random.key(1), 2)
    fresh = {"conv_0": {"kernel": jax.random.normal(k[0], (3, 3, 1, 4))},
             "head": {"kernel": jnp.zeros((4, 5)), "bias": jnp.zeros(5)}}
    source = {"conv_0": {"kernel": jax.random.normal(k[1], (3, 3, 1, 4))},
              "head": {"kernel": jnp.ones((4, 5)), "bias": jnp.ones(5)},
              "extra": {"kernel": jnp.ones(2)}}
    out = transfer.graft(fresh, source, ("head",))
    assert np.array_equal(out["conv_0"]["kernel"], source["conv_0"]["kernel"])
    assert np.array_equal(out["head"]["kernel"], fresh["head"]["kernel"])
    assert np.array_equal(out["head"]["bias"], fresh["head"]["bias"])
    assert transfer.left_out(fresh, source) == ["extra/kernel"]
    everything = transfer.graft(fresh, source, ())
    assert np.array_equal(everything["head"]["kernel"], source["head"]["kernel"])

    wide = {**source, "head": {"kernel": jnp.ones((4, 10)), "bias": jnp.ones(10)}}
    with pytest.raises(ConfigError, match=r"'head/bias' is float32\[10\] in the source run but "
                       r"float32\[5\] here"):
        transfer.graft(fresh, wide, ())
    assert transfer.graft(fresh, wide, ("head",))["head"]["kernel"].shape == (4, 5)
    with pytest.raises(ConfigError, match="source run has no parameter 'conv_0/kernel'"):
        transfer.graft(fresh, {"head": source["head"]}, ())
    with pytest.raises(ConfigError, match="'transfer.reinit': pattern 'dense_9' matches no"):
        transfer.graft(fresh, source, ("dense_9",))


def test_data_classes_keeps_and_relabels_them():
    cfg = {**data_lib.defaults("digits"), "name": "digits", "classes": [7, 2, 9]}
    whole = data_lib.load({**cfg, "classes": None})
    data = data_lib.load(cfg)
    assert data.spec["num_outputs"] == 3
    for split in ("train", "test"):
        y, x = whole.splits[split]["y"], whole.splits[split]["x"]
        kept = np.isin(y, [7, 2, 9])
        assert np.array_equal(data.splits[split]["x"], x[kept])  # the same examples, in order
        y = y[kept]  # 7 -> 0, 2 -> 1, 9 -> 2: positions in the list
        assert np.array_equal(data.splits[split]["y"], np.select([y == 7, y == 2, y == 9],
                                                                 [0, 1, 2]))
    few = data_lib.load({**cfg, "labels": 30, "batch_size": 10})  # 10 labels per class
    assert np.array_equal(np.bincount(few.splits["train"]["y"]), [10, 10, 10])
    for bad, message in (([7, 7], "twice"), ([12], "not among the 10 classes"), ("7", "a list"),
                         ([], "a list"), ([1.0], "a list")):
        with pytest.raises(ConfigError, match=message):
            data_lib.load({**cfg, "classes": bad})
    with pytest.raises(ConfigError, match="regression"):
        data_lib.load({**data_lib.defaults("diabetes"), "name": "diabetes", "classes": [0]})


# --- dlcore run --init-from, on the Keras example's two experiments in quick mode --------------

def _digest(folder: Path) -> dict:
    """SHA-256 of every file under `folder` (and which files there are)."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """runs/mnist_digits/cnn_0to4-quick under a fresh directory: the quick source of
    transfer_5to9 (its config names that path, relative to the current directory)."""
    home = tmp_path_factory.mktemp("transfer")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(home)
        src = home / "runs" / "mnist_digits" / "cnn_0to4-quick"
        assert main(["run", "mnist_digits/cnn_0to4", "--quick", "--no-progress", "--workdir",
                     str(src), "--set", "loop.plots=false"]) == 0
    return home, src


def test_both_experiments_quick_vmapped_seeds_and_the_source_untouched(source, monkeypatch,
                                                                       capsys):
    home, src = source
    before = _digest(src)
    monkeypatch.chdir(home)
    assert main(["run", "mnist_digits/transfer_5to9", "--quick", "--seeds", "2", "--json",
                 "--no-progress"]) == 0  # the experiment as it is (plots included)
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert 0.0 <= summary["metrics"]["test_accuracy"] <= 1.0
    run_dir = home / "runs" / "mnist_digits" / "transfer_5to9-quick-seeds2"
    recorded = json.loads((run_dir / "config.json").read_text())["transfer"]
    origin = experiment.load_run(src)
    assert recorded["init_from"] == str(src) and recorded["source"]["step"] == origin.step
    assert recorded["source"]["digest"] == transfer.digest(
        (origin.final.params, origin.final.model_state))
    seeds = [experiment.load_run(run_dir, i) for i in range(2)]
    for r in seeds:  # grafted, then frozen: the source's convolutions, bit for bit
        for name in ("conv_0", "conv_1"):
            for leaf in ("kernel", "bias"):
                assert np.array_equal(r.final.params[name][leaf], origin.final.params[name][leaf])
        assert np.array_equal(r.init.params["dense_0"]["kernel"],
                              origin.final.params["dense_0"]["kernel"])
    heads = [np.asarray(r.init.params["head"]["kernel"]) for r in seeds]
    assert not np.array_equal(heads[0], heads[1])  # each seed's own fresh head
    assert not np.array_equal(heads[0], origin.final.params["head"]["kernel"])
    assert _digest(src) == before


def test_resume_of_an_init_from_run_is_exact_and_another_source_refused(source, tmp_path,
                                                                        monkeypatch, capsys):
    home, src = source
    monkeypatch.chdir(home)
    base = ["run", "mnist_digits/transfer_5to9", "--quick", "--no-progress", "--set",
            "loop.plots=false", "--set", "loop.eval_every=4", "--set", "loop.checkpoint_every=4"]
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    assert main([*base, "--workdir", str(whole), "--set", "loop.steps=8"]) == 0
    assert main([*base, "--workdir", str(parts), "--set", "loop.steps=4"]) == 0
    assert main([*base, "--workdir", str(parts), "--set", "loop.steps=8"]) == 0
    assert "resumed from step 4" in capsys.readouterr().out
    a, b = experiment.load_run(whole), experiment.load_run(parts)
    assert a.step == b.step == 8
    for x, y in zip(jax.tree.leaves(a.final), jax.tree.leaves(b.final)):
        assert np.array_equal(x, y)

    other = tmp_path / "other_source"
    shutil.copytree(src, other)
    assert main([*base, "--workdir", str(parts), "--set", "loop.steps=8",
                 "--init-from", str(other)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "holds a different run" in err[0] and "transfer.init_from" in err[0]


def test_bad_transfer_input_is_one_line_and_exit_2(source, tmp_path, monkeypatch, capsys):
    home, src = source
    before = _digest(src)
    monkeypatch.chdir(home)
    base = ["run", "mnist_digits/transfer_5to9", "--quick", "--no-progress"]

    def refused(*argv):
        workdir = tmp_path / f"w{len(list(tmp_path.iterdir()))}"
        assert main([*base, "--workdir", str(workdir), *argv]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("dlcore: error:"), err
        assert not workdir.exists()  # refused before anything was written
        return err[0]
    assert ("parameter 'dense_0/bias' is float32[128] in the source run but float32[64] here"
            in refused("--set", "model.dense=[64]"))
    assert "not a run directory" in refused("--init-from", str(tmp_path / "nothing"))
    assert "has seeds [0]; got 3" in refused("--init-seed", "3")
    assert "pattern 'Conv_*' matches no parameter" in refused("--set", "optim.freeze=['Conv_*']")
    assert "'transfer.reinit': pattern 'output'" in refused("--set", "transfer.reinit=['output']")
    assert "data.classes" in refused("--set", "data.classes=[5,5]")
    assert main(["run", "mnist1d/mlp", "--quick", "--init-seed", "1"]) == 2  # no source
    assert "--init-seed" in capsys.readouterr().err
    assert _digest(src) == before
