"""dlcore.search: members drawn from a space, random search and successive halving in one program
per rung, chosen on the validation split only."""
import importlib.util
import json
from pathlib import Path

import jax
import numpy as np
import pytest

from dlcore import cli, experiment, loop, search
from dlcore.config import ConfigError
from dlcore.watch import Interrupted

ROOT = Path(__file__).resolve().parents[1]
TINY = ["loop.steps=20", "loop.steps_per_call=10", "loop.log_every=10", "loop.eval_every=20",
        "loop.checkpoint_every=20", "loop.plots=false", "model.hidden=16,16",
        "data.validation_fraction=0.2"]


def tiny(*sets):
    return experiment.load("mnist1d/mlp", overrides=[*TINY, *sets])


# --- the space and the draws ---------------------------------------------------------------------

def test_draws_are_reproducible_and_lie_in_the_space():
    space = search.parse_space(["optim.learning_rate=log:1e-4:1e-1", "meta.inner_steps=int:1:5",
                                "optim.b1=choice:0.8,0.9", "optim.weight_decay=uniform:0:0.5"])
    assert space["optim.learning_rate"] == search.Dim("log", 1e-4, 1e-1)
    drawn = search.draw(space, 600, search_seed=7)
    assert drawn == search.draw(space, 600, search_seed=7)
    assert drawn != search.draw(space, 600, search_seed=8)
    assert search.draw(space, 10, search_seed=7) == drawn[:10]  # a larger search extends a smaller
    lr = np.array([p["optim.learning_rate"] for p in drawn])
    assert lr.min() >= 1e-4 and lr.max() <= 1e-1
    # log-uniform: each decade about a third (uniform on [1e-4, 1e-1] would put 90 % in the last)
    assert np.histogram(np.log10(lr), bins=3, range=(-4, -1))[0].min() > 150
    steps = [p["meta.inner_steps"] for p in drawn]
    assert set(steps) == {1, 2, 3, 4, 5} and all(type(s) is int for s in steps)
    assert {p["optim.b1"] for p in drawn} == {0.8, 0.9}
    wd = np.array([p["optim.weight_decay"] for p in drawn])
    assert wd.min() >= 0 and wd.max() <= 0.5 and abs(wd.mean() - 0.25) < 0.03


@pytest.mark.parametrize("specs, message", [
    ([], "at least one key"),
    (["optim.learning_rate"], "expected KEY=KIND:ARGS"),
    (["optim.learning_rate=normal:0:1"], "unknown kind 'normal'"),
    (["optim.learning_rate=log:1e-4"], "two bounds"),
    (["optim.learning_rate=log:0:1"], "0 < LOW < HIGH"),
    (["optim.learning_rate=uniform:1:0.1"], "LOW <= HIGH"),
    (["optim.learning_rate=uniform:a:1"], "'a' is not a number"),
    (["meta.inner_steps=int:1.5:3"], "'1.5' is not an integer"),
    (["optim.b1=choice:"], "at least one value"),
    (["optim.name=choice:adam,sgd"], "run one search per name"),
    (["optim.b1=choice:0.9", "optim.b1=choice:0.8"], "given twice"),
])
def test_bad_space_syntax_is_one_config_error(specs, message):
    with pytest.raises(ConfigError, match=message):
        search.parse_space(specs)


def test_bad_keys_settings_and_missing_validation_are_refused_before_any_work(tmp_path):
    def refused(match, config=None, points=None, **kw):
        with pytest.raises(ConfigError, match=match):
            search.run_search(config or tiny(), points or [{"optim.learning_rate": 1e-3}],
                              tmp_path / "run", **kw)
    refused("unknown config key 'optim.lrate'", points=[{"optim.lrate": 1e-3}])
    refused("'model.hidden' cannot be searched in one program.*optim.learning_rate",
            points=[{"model.hidden": (4,)}])
    refused("validation split.*data.validation_fraction", tiny("data.validation_fraction=0.0"))
    refused("never used to choose", metric="test_accuracy")
    refused("not a scalar validation metric.*validation_accuracy", metric="validation_nope")
    refused("--rungs.*at least 90 steps", rungs=3, eta=3)
    refused("--eta", rungs=2, eta=1)
    refused("optim.weight_decay.*>= 0", points=[{"optim.weight_decay": -1.0}])  # every member
    refused("early_stopping_patience", tiny("loop.early_stopping_patience=2",
                                            "loop.best_metric=validation/accuracy"))
    assert not (tmp_path / "run").exists()


def test_cli_bad_input_exits_2_with_one_line(tmp_path, capsys):
    base = ["search", "mnist1d/mlp", "--quick", "--workdir", str(tmp_path / "run")]
    for extra, said in [(["--space", "optim.learning_rate=log:1e-4"], "two bounds"),
                        (["--space", "model.hidden=int:1:3"], "cannot be searched"),
                        (["--space", "optim.learning_rate=log:1e-4:1e-1"], "validation split"),
                        (["--space", "optim.learning_rate=log:1e-4:1e-1", "--members", "0"],
                         "--members")]:
        assert cli.main(base + extra) == 2
        err = capsys.readouterr().err
        lines = [line for line in err.splitlines() if not line.startswith("dlcore: warning")]
        assert len(lines) == 1 and lines[0].startswith("dlcore: error:") and said in lines[0], err
        assert "Traceback" not in err
    assert not (tmp_path / "run").exists()


# --- choosing ------------------------------------------------------------------------------------

class _NoTest(dict):
    def __getitem__(self, key):
        assert not key.startswith("test_"), f"the choice read {key}"
        return super().__getitem__(key)


def test_survivors_are_the_top_1_over_eta_by_validation_alone():
    per_member = _NoTest(validation_accuracy=[0.5, 0.9, np.nan, 0.7, 0.9, 0.1],
                         test_accuracy=[0.9, 0.1, 0.9, 0.1, 0.1, 0.9])
    keep = search.keep_count(6, 3)
    assert keep == 2 and search.keep_count(2, 3) == 1
    assert search.survivors(per_member, "validation_accuracy", keep, "max") == [1, 4]
    assert search.survivors(per_member, "validation_accuracy", 3, "max") == [1, 3, 4]  # NaN last
    assert search.survivors(per_member, "validation_accuracy", 2, "min") == [0, 5]
    with pytest.raises(ConfigError, match="validation metric"):
        search.survivors(per_member, "test_accuracy", 2, "max")
    assert search.rung_steps(2000, 3, 3, 10) == [220, 660, 2000]
    assert search.rung_steps(20, 1, 3, 10) == [20]


@pytest.mark.timeout(300)
def test_halving_keeps_the_best_and_survivors_carry_on(tmp_path, monkeypatch):
    """6 members, 2 rungs of eta 2 (steps 10, 20), a cosine schedule over the 20-step budget,
    interrupted as the second rung starts and resumed: the three members of learning rate 1e-7
    are eliminated on validation loss even when the test losses say the opposite; a survivor's final state (parameters, optimizer state, step count)
    equals the same member's trained to the budget without halving (random search, one
    program). That a member of the one program equals its lone `dlcore run`: the study's smoke
    run below."""
    cfg = tiny("optim.schedule=cosine")
    points = [{"optim.learning_rate": lr} for lr in (1e-2, 1e-7, 3e-3, 1e-7, 5e-3, 1e-7)]
    train = loop.train

    def reversed_test(*args, **kwargs):  # the test losses rank the members backwards
        if interrupt and Path(args[3]).name == "rung_1":
            raise Interrupted("interrupted at step 10", 2)  # Ctrl-C as the second rung starts
        summary = train(*args, **kwargs)
        summary["per_seed"]["test_loss"] = [-v for v in summary["per_seed"]["test_loss"]]
        return summary
    monkeypatch.setattr(search.loop, "train", reversed_test)
    interrupt = True
    with pytest.raises(Interrupted):
        search.run_search(cfg, points, tmp_path / "halving", rungs=2, eta=2,
                          metric="validation_loss", progress=False)
    assert not json.loads((tmp_path / "halving" / "search.json").read_text())["finished"]
    rows = (tmp_path / "halving" / "rung_0" / "metrics.jsonl").read_text()
    interrupt = False  # the same call again resumes: the first rung is not trained again
    halving = search.run_search(cfg, points, tmp_path / "halving", rungs=2, eta=2,
                                metric="validation_loss", progress=False)
    monkeypatch.undo()
    assert (tmp_path / "halving" / "rung_0" / "metrics.jsonl").read_text() == rows
    assert [r["members"] for r in halving["rungs"]] == [[0, 1, 2, 3, 4, 5], [0, 2, 4]]
    assert [r["steps"] for r in halving["rungs"]] == [10, 20] and halving["mode"] == "min"
    assert halving["best"]["member"] in (0, 2, 4) and halving["member_steps"] == 6 * 10 + 3 * 10
    assert [m["steps"] for m in halving["members"]] == [20, 10, 20, 10, 20, 10]
    assert json.loads((tmp_path / "halving" / "search.json").read_text())["finished"]

    random = search.run_search(cfg, points, tmp_path / "random", metric="validation_loss",
                               progress=False)
    algorithm = experiment.build(cfg)[0]
    after = search.carried(algorithm, tmp_path / "halving" / "rung_1", 3, 20, [0, 1, 2])
    whole = search.carried(algorithm, tmp_path / "random" / "rung_0", 6, 20, [0, 2, 4])
    assert np.asarray(after.step).tolist() == [20, 20, 20]
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7), after, whole)
    for m in (0, 2, 4):
        np.testing.assert_allclose(halving["members"][m]["validation"][-1]["validation_loss"],
                                   random["members"][m]["validation"][-1]["validation_loss"],
                                   rtol=1e-5)


@pytest.mark.timeout(300)
def test_cli_search_writes_the_report_resumes_and_refuses_another(tmp_path, capsys):
    # the study's space and sizes: the smoke run of the study below reuses these programs
    args = ["search", "mnist1d/mlp", "--space", "optim.learning_rate=log:1e-3:1e-1",
            "--space", "optim.weight_decay=log:1e-4:1", "--members", "2", "--search-seed", "3", "--workdir", str(tmp_path), "--no-progress",
            *[a for s in TINY for a in ("--set", s)]]
    assert cli.main(args) == 0
    out = capsys.readouterr().out
    assert "| member | seed | optim.learning_rate | optim.weight_decay | validation_accuracy @20 |" \
        in out
    assert "best (by validation_accuracy): member" in out and "(reported, not used to choose)" in out
    report = json.loads((tmp_path / "search.json").read_text())
    assert len(report["members"]) == 2 and report["search"]["search_seed"] == 3
    saved = json.loads((tmp_path / "config.json").read_text())["search"]
    assert saved["members"] == search.draw(search.parse_space([args[3], args[5]]), 2, 3)
    rows = (tmp_path / "rung_0" / "metrics.jsonl").read_text()
    assert cli.main(args) == 0  # the same command resumes: nothing is trained again
    assert (tmp_path / "rung_0" / "metrics.jsonl").read_text() == rows
    assert json.loads((tmp_path / "search.json").read_text())["best"] == report["best"]
    capsys.readouterr()
    assert cli.main([*args, "--search-seed", "4"]) == 2  # another search: refused, untouched
    assert "holds a different run" in capsys.readouterr().err
    assert json.loads((tmp_path / "search.json").read_text())["best"] == report["best"]


@pytest.mark.timeout(300)
def test_search_study_quick(tmp_path):
    spec = importlib.util.spec_from_file_location(
        "search_study", ROOT / "experiments" / "studies" / "search.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path / "study"
    assert module.main(["--quick", "--members", "2", "--rungs", "2", "--out", str(out),
                        "--set", "model.hidden=16,16"]) == 0
    text = (out / "search.md").read_text()
    assert "2 members in one program" in text and "one after another" in text
    assert "x the random search in one program" in text and "test accuracy" in text
    data = json.loads((out / "search.json").read_text())
    # every member of the one-program random search computes what its lone `dlcore run` computes
    assert data["timing"]["largest_relative_validation_loss_difference"] < 1e-4
    assert [len(r["members"]) for r in data["halving"]["rungs"]] == [2, 1]
    assert len(data["random"]["members"]) == 2
