"""Early stopping (loop.early_stopping_patience): when a run stops, which state it keeps, resume,
several seeds in one program, and config errors. The stopping rule is replayed from
metrics.jsonl."""
import json
import shutil

import jax.numpy as jnp
import numpy as np
import pytest

from dlcore import early_stopping, experiment, loop
from dlcore.config import ConfigError
from dlcore.writers import read_jsonl

pytestmark = pytest.mark.timeout(300)

PATIENCE, EVAL_EVERY, STEPS = 3, 10, 400


def config(validation_fraction=0.1, model=None, **loop_kw):
    """digits with a tiny MLP: validation accuracy plateaus long before STEPS."""
    loop_cfg = {"steps": STEPS, "eval_every": EVAL_EVERY, "log_every": EVAL_EVERY,
                "checkpoint_every": 100, "keep_checkpoints": 2, "plots": False,
                "steps_per_call": EVAL_EVERY,
                "best_metric": "validation/accuracy", "best_mode": "max",
                "early_stopping_patience": PATIENCE}
    loop_cfg.update(loop_kw)
    return experiment.complete({
        "experiment": "early-stopping-test", "algorithm": "supervised",
        "data": {"name": "digits", "batch_size": 32, "shuffle": True,
                 "validation_fraction": validation_fraction},
        "model": model or {"name": "mlp", "hidden": (16,)},
        "optim": {"name": "adam", "learning_rate": 1e-2}, "loop": loop_cfg})


def run(cfg, workdir, **kw):
    return experiment.run(cfg, workdir, progress=False, **kw)


def replay(values, patience, mode="max"):
    """The stopping rule over [(step, [value per seed])]: (stop step or None, best steps, bests)."""
    seeds = len(values[0][1])
    best = [-np.inf if mode == "max" else np.inf] * seeds
    best_step, since = [0] * seeds, [0] * seeds
    for step, vals in values:
        for i, v in enumerate(vals):
            if (v > best[i]) if mode == "max" else (v < best[i]):
                best[i], best_step[i], since[i] = v, step, 0
            else:
                since[i] += 1
        if all(s >= patience for s in since):
            return step, best_step, best
    return None, best_step, best


def evaluations(rows, name="validation/accuracy", per_seed=False):
    return [(r["step"], r["per_seed"][name] if per_seed else [r[name]]) for r in rows if name in r]


@pytest.fixture(scope="module")
def stopped(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("es") / "run"
    summary = run(config(), workdir)
    return workdir, summary, read_jsonl(workdir / "metrics.jsonl")


def test_stops_where_the_rule_says(stopped):
    workdir, summary, rows = stopped
    es = summary["early_stopping"]
    assert es["stopped_at_step"] < STEPS
    stop, best_step, _ = replay(evaluations(rows), PATIENCE)
    assert es["stopped_at_step"] == stop
    assert es["best_step"] == best_step
    assert stop - best_step[0] == PATIENCE * EVAL_EVERY  # `patience` evaluations without a gain
    assert rows[-1]["step"] == stop  # nothing was trained after the stop
    # the stop is checkpointed (a resumed run must know it stopped), the summary is on disk
    assert str(stop) in {p.name for p in (workdir / "checkpoints").iterdir()}
    on_disk = json.loads((workdir / "summary.json").read_text())
    assert on_disk["early_stopping"] == es and on_disk["metrics"] == summary["metrics"]


def test_final_metrics_are_those_of_the_best_state(stopped):
    _, summary, rows = stopped
    best_step = summary["early_stopping"]["best_step"][0]
    best_row = next(r for r in rows if r["step"] == best_step)
    m = summary["metrics"]
    assert m["validation_accuracy"] == max(v[0] for _, v in evaluations(rows))
    assert m["validation_accuracy"] == best_row["validation/accuracy"]
    # every split of the summary comes from that same state (evaluation is deterministic)
    assert m["validation_loss"] == best_row["validation/loss"]
    assert m["test_accuracy"] == best_row["test/accuracy"]
    assert m["test_loss"] == best_row["test/loss"]
    assert "train_eval_accuracy" in m


def test_resuming_a_stopped_run_trains_no_further(stopped, tmp_path, capsys):
    workdir, summary, rows = stopped
    copy = tmp_path / "copy"
    shutil.copytree(workdir, copy)
    checkpoints = sorted(p.name for p in (copy / "checkpoints").iterdir())
    capsys.readouterr()
    again = run(config(), copy)
    stop = summary["early_stopping"]["stopped_at_step"]
    assert f"resumed from step {stop}" in capsys.readouterr().out
    assert again["early_stopping"] == summary["early_stopping"]
    assert again["metrics"] == summary["metrics"]
    assert read_jsonl(copy / "metrics.jsonl") == rows
    assert sorted(p.name for p in (copy / "checkpoints").iterdir()) == checkpoints
    assert not list(copy.glob("corrupt-*"))


def test_stopped_run_resumed_with_more_patience_carries_on(stopped, tmp_path, capsys):
    """The best value, best step, evaluations since and the best state all come back from the
    checkpoint: replaying the rule with the new patience over the whole log gives the new stop."""
    workdir, summary, _ = stopped
    copy = tmp_path / "copy"
    shutil.copytree(workdir, copy)
    first_stop = summary["early_stopping"]["stopped_at_step"]
    more = PATIENCE + 2
    capsys.readouterr()
    again = run(config(early_stopping_patience=more), copy)
    assert f"resumed from step {first_stop}" in capsys.readouterr().out
    rows = read_jsonl(copy / "metrics.jsonl")
    assert rows[-1]["step"] > first_stop  # it trained on
    stop, best_step, best = replay(evaluations(rows), more)
    assert again["early_stopping"]["stopped_at_step"] == (stop or STEPS)
    assert again["early_stopping"]["best_step"] == best_step
    best_row = next(r for r in rows if r["step"] == best_step[0])
    assert again["metrics"]["validation_accuracy"] == best[0] == best_row["validation/accuracy"]
    assert again["metrics"]["test_loss"] == best_row["test/loss"]


def test_several_seeds_in_one_program_keep_their_own_best(tmp_path):
    summary = run(config(), tmp_path, seeds=2)
    rows = read_jsonl(tmp_path / "metrics.jsonl")
    values = evaluations(rows, per_seed=True)
    stop, best_step, best = replay(values, PATIENCE)
    es = summary["early_stopping"]
    assert stop is not None and es["stopped_at_step"] == stop < STEPS
    assert es["best_step"] == best_step and len(best_step) == 2
    assert summary["per_seed"]["validation_accuracy"] == best
    assert summary["metrics"]["validation_accuracy"] == pytest.approx(np.mean(best))
    for i, step in enumerate(best_step):  # per seed, the test metrics of its own best state
        row = next(r for r in rows if r["step"] == step)
        assert summary["per_seed"]["test_accuracy"][i] == row["per_seed"]["test/accuracy"][i]


# --- the helpers, on tiny pytrees -----------------------------------------------------------------

def test_update_and_select_per_seed():
    states = {"w": jnp.zeros((3, 2, 2)), "b": jnp.zeros((3,)), "step": jnp.zeros((3,), jnp.int32)}
    stopper = early_stopping.init(states, 3, "max")
    assert stopper["best"].tolist() == [-np.inf] * 3 and stopper["since"].tolist() == [0, 0, 0]
    stopper["best"] = np.array([0.5, 0.5, 0.5])
    stopper["since"] = np.array([2, 0, 1])
    stopper["best_step"] = np.array([10, 20, 30])
    new = {"w": jnp.ones((3, 2, 2)), "b": jnp.full((3,), 2.0), "step": jnp.full((3,), 7, jnp.int32)}
    values = np.array([0.6, 0.5, 0.4], np.float32)
    out = early_stopping.update(stopper, new, values, 40, "max")
    # only seed 0 improved (equal is not better)
    assert out["best"].tolist() == [pytest.approx(0.6), 0.5, 0.5]
    assert out["since"].tolist() == [0, 1, 2]
    assert out["best_step"].tolist() == [40, 20, 30]
    np.testing.assert_array_equal(out["state"]["w"][0], np.ones((2, 2)))
    np.testing.assert_array_equal(out["state"]["w"][1:], np.zeros((2, 2, 2)))
    assert out["state"]["b"].tolist() == [2.0, 0.0, 0.0]
    assert out["state"]["step"].tolist() == [7, 0, 0] and out["state"]["step"].dtype == jnp.int32
    assert not early_stopping.spent(out, 2) and early_stopping.spent(out, 0)
    out = early_stopping.update(out, new, np.array([0.1, 0.1, 0.1]), 50, "max")
    assert out["since"].tolist() == [1, 2, 3] and not early_stopping.spent(out, 2)
    assert early_stopping.spent(out, 1)


def test_update_min_mode_and_single_seed():
    state = {"w": jnp.zeros((2,))}
    stopper = early_stopping.init(state, None, "min")
    assert stopper["best"].shape == () and stopper["best"] == np.inf
    s1 = early_stopping.update(stopper, {"w": jnp.ones(2)}, np.float32(0.3), 10, "min")
    assert s1["best_step"] == 10 and s1["since"] == 0 and float(s1["best"]) == pytest.approx(0.3)
    np.testing.assert_array_equal(s1["state"]["w"], [1.0, 1.0])
    s2 = early_stopping.update(s1, {"w": jnp.full(2, 5.0)}, np.float32(0.4), 20, "min")
    assert s2["best_step"] == 10 and s2["since"] == 1
    np.testing.assert_array_equal(s2["state"]["w"], [1.0, 1.0])  # the worse state is not kept
    s3 = early_stopping.update(s2, {"w": jnp.full(2, 3.0)}, np.float32(0.2), 30, "min")
    assert s3["best_step"] == 30 and s3["since"] == 0
    np.testing.assert_array_equal(s3["state"]["w"], [3.0, 3.0])
    assert early_stopping.spent(s2, 1) and not early_stopping.spent(s3, 1)


def test_select_broadcasts_the_seed_mask():
    improved = jnp.array([True, False])
    new = {"a": jnp.ones((2, 3, 4)), "b": jnp.ones((2,))}
    old = {"a": jnp.zeros((2, 3, 4)), "b": jnp.zeros((2,))}
    out = early_stopping._select(improved, new, old)
    assert out["a"][0].min() == 1.0 and out["a"][1].max() == 0.0
    assert out["b"].tolist() == [1.0, 0.0]
    scalar = early_stopping._select(jnp.asarray(False), {"a": jnp.ones((3, 4))}, {"a": jnp.zeros((3, 4))})
    assert scalar["a"].max() == 0.0


def test_init_copies_the_state():
    states = {"w": jnp.arange(4.0)}
    stopper = early_stopping.init(states, None, "max")
    assert stopper["state"]["w"] is not states["w"]  # `states` is donated to the next step
    np.testing.assert_array_equal(stopper["state"]["w"], states["w"])


# --- config errors --------------------------------------------------------------------------------

@pytest.mark.parametrize("over, key", [
    ({"early_stopping_patience": 2, "best_metric": "test/accuracy"}, "loop.best_metric"),
    ({"early_stopping_patience": 2, "best_metric": "train/loss"}, "loop.best_metric"),
    ({"early_stopping_patience": -1}, "loop.early_stopping_patience"),
    ({"early_stopping_patience": 1.5}, "loop.early_stopping_patience"),
    ({"early_stopping_patience": "3"}, "loop.early_stopping_patience"),
])
def test_bad_settings_are_config_errors_before_anything_starts(over, key, tmp_path):
    with pytest.raises(ConfigError, match=f"'{key}'"):
        loop.validate(loop.defaults(**over))
    with pytest.raises(ConfigError, match=f"'{key}'"):
        run(config(**over), tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_off_by_default_and_test_metric_allowed_without_it():
    assert loop.defaults()["early_stopping_patience"] == 0
    loop.validate(loop.defaults(best_metric="test/accuracy"))
    loop.validate(loop.defaults(early_stopping_patience=1, best_metric="validation/mse",
                                best_mode="min"))


def test_validation_metric_without_validation_split_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="validation"):
        run(config(validation_fraction=0.0, model={"name": "logreg"}, steps=20), tmp_path)
