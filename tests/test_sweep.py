"""dlcore.sweep: hyperparameter grids x seeds in one program; the masked inner loop it relies on."""
import importlib.util
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dlcore import experiment, loop, meta, sweep
from dlcore.config import ConfigError
from dlcore.models.mlp import MLP

ROOT = Path(__file__).resolve().parents[1]
TINY = ["loop.steps=20", "loop.steps_per_call=10", "loop.log_every=10", "loop.eval_every=20",
        "loop.checkpoint_every=20", "loop.plots=false", "data.eval_tasks=16", "data.eval_chunk=16",
        "data.eval_query=20", "meta.test_steps=3"]


def tiny_config(*sets, name="sinusoid/maml"):
    return experiment.load(name, quick=True, overrides=[*TINY, *sets])


# --- the masked inner loop (dlcore.meta.adapt with max_steps) ---------------------------------------

def _problem():
    model = MLP(hidden=(8, 8), num_outputs=1)
    params = model.init(jax.random.key(0), jnp.zeros((1, 1)))["params"]
    loss = meta.task_loss(lambda p, x: model.apply({"params": p}, x), "regression")
    x = jax.random.uniform(jax.random.key(1), (10, 1), minval=-5, maxval=5)
    support, query = {"x": x[:5], "y": 3 * jnp.sin(x[:5])}, {"x": x[5:], "y": 3 * jnp.sin(x[5:])}
    return loss, params, support, query


@pytest.mark.parametrize("first_order", [False, True])
def test_masked_adapt_equals_the_plain_loop(first_order):
    """inner_steps = k under max_steps = 3 (a traced count) gives the plain k-step adaptation and
    the same meta-gradient, for k = 0..3."""
    loss, params, support, query = _problem()

    def meta_loss(p, steps, max_steps):
        adapted = meta.adapt(loss, p, support, 0.05, steps, 100.0, first_order, max_steps=max_steps)
        return loss(adapted, query)[0]

    masked = jax.jit(jax.value_and_grad(lambda p, k: meta_loss(p, k, 3)))
    plain = jax.jit(jax.value_and_grad(lambda p, k: meta_loss(p, k, None)), static_argnums=1)
    for k in range(4):
        plain_loss, plain_grad = plain(params, k)
        got_loss, got_grad = masked(params, jnp.asarray(k, jnp.int32))
        np.testing.assert_allclose(got_loss, plain_loss, rtol=1e-5)
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6),
                     got_grad, plain_grad)
    # the step counts differ across a vmap of one program
    losses = jax.jit(jax.vmap(lambda k: meta_loss(params, k, 3)))(jnp.arange(4))
    np.testing.assert_allclose(losses, [plain(params, k)[0] for k in range(4)], rtol=1e-5)


def test_adapt_step_count_checks():
    loss, params, support, _ = _problem()
    with pytest.raises(TypeError, match="max_steps"):
        jax.jit(lambda k: meta.adapt(loss, params, support, 0.1, k, 0.0))(jnp.asarray(1))
    with pytest.raises(ValueError, match="more than max_steps"):
        meta.adapt(loss, params, support, 0.1, 3, 0.0, max_steps=2)


# --- the grid ---------------------------------------------------------------------------------------

def test_bad_grid_key_names_the_key(tmp_path):
    with pytest.raises(ConfigError, match="'model.hidden'.*shapes.*optim.learning_rate.*"
                                          "meta.inner_lr, meta.inner_steps"):
        sweep.run_sweep(tiny_config(), {"meta.inner_lr": [0.01], "model.hidden": [(4,)]}, 1,
                        tmp_path)
    with pytest.raises(ConfigError, match="meta.inner_steps"):  # every point checked first
        sweep.run_sweep(tiny_config(), {"meta.inner_steps": [1, 0]}, 1, tmp_path)
    with pytest.raises(ConfigError, match="sweep.meta.inner_lr"):
        sweep.run_sweep(tiny_config(), {"meta.inner_lr": []}, 1, tmp_path)
    with pytest.raises(ConfigError, match="'meta.inner_lr'.*reptile"):
        sweep.run_sweep(tiny_config(name="sinusoid/reptile"), {"meta.inner_lr": [0.01]}, 1,
                        tmp_path)
    assert not (tmp_path / "summary.json").exists()


def test_grid_points_and_point_config():
    points = sweep.grid_points({"meta.inner_lr": [0.1, 0.2], "meta.inner_steps": [1, 2, 3]})
    assert len(points) == 6 and points[1] == {"meta.inner_lr": 0.1, "meta.inner_steps": 2}
    cfg = tiny_config()
    got = sweep.point_config(cfg, points[5])
    assert (got["meta"]["inner_lr"], got["meta"]["inner_steps"]) == (0.2, 3)
    assert cfg["meta"]["inner_steps"] == 1  # a copy


# --- one program, members as if alone -----------------------------------------------------------------

@pytest.mark.timeout(300)
def test_sweep_members_equal_their_runs_alone(tmp_path):
    """4 grid points x 2 seeds in one program (masked to 2 inner steps); a member with 1 inner step
    (masked) and one with 2, of different seeds and rates, match `dlcore run` of that member alone
    (the plain default path)."""
    grid = {"meta.inner_lr": [0.01, 0.03], "meta.inner_steps": [1, 2]}
    summary = sweep.run_sweep(tiny_config(), grid, 2, tmp_path / "sweep", progress=False)
    assert summary["members"] == 8 and len(summary["points"]) == 4
    assert [p["hyper"] for p in summary["points"]] == sweep.grid_points(grid)
    rows = [json.loads(line) for line in (tmp_path / "sweep" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [10, 20]
    assert len(rows[-1]["per_seed"]["train/loss"]) == 8  # the loop's rows: per member
    for p, s in [(0, 0), (3, 1)]:  # (inner_lr, inner_steps) (0.01, 1) seed 0, (0.03, 2) seed 1
        point = summary["points"][p]
        cfg = tiny_config(f"meta.inner_lr={point['hyper']['meta.inner_lr']}",
                          f"meta.inner_steps={point['hyper']['meta.inner_steps']}", f"seed={s}")
        alone = experiment.run(cfg, tmp_path / f"alone_{p}_{s}", progress=False)
        np.testing.assert_allclose(point["per_seed"]["test_mse_after_steps"][s],
                                   alone["metrics"]["test_mse_after_steps"], rtol=1e-4)
    # seeds differ, and so do the points
    per_seed = np.asarray(summary["points"][0]["per_seed"]["test_mse_after_steps"])
    assert not np.allclose(per_seed[0], per_seed[1])
    assert summary["points"][0]["metrics"]["test_mse"] != summary["points"][3]["metrics"]["test_mse"]


@pytest.mark.timeout(300)
def test_sinusoid_sweep_study_quick(tmp_path):
    spec = importlib.util.spec_from_file_location(
        "sinusoid_sweep", ROOT / "experiments" / "studies" / "sinusoid_sweep.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path / "study"
    sets = [a for s in TINY if not s.startswith("meta.") for a in ("--set", s)]
    assert module.main(["--quick", "--seeds", "2", "--out", str(out), *sets]) == 0
    table = [line for line in (out / "sinusoid_sweep.md").read_text().splitlines()
             if line.startswith("|")]
    assert len(table) == 2 + 12 and table[2].startswith("| 0.003 | 1 |")
    assert "±" in table[2] and "members in one program" in (out / "sinusoid_sweep.md").read_text()
    data = json.loads((out / "sinusoid_sweep.json").read_text())
    assert data["timing"]["members"] == 24
    assert len(data["points"][0]["per_seed"]["test_mse_after_steps"]) == 2


def test_sweep_refuses_another_run_or_sweep_directory(tmp_path, monkeypatch):
    (tmp_path / "config.json").write_text(json.dumps({"algorithm": "maml", "seed": 7}))
    with pytest.raises(ConfigError, match="different run"):
        sweep.run_sweep(tiny_config(), {"meta.inner_lr": [0.01]}, 1, tmp_path)
    (tmp_path / "config.json").unlink()

    def stop(*_):  # the first thing after the run directory is ready
        raise RuntimeError("stop")
    monkeypatch.setattr(loop.writers, "truncate_jsonl", stop)
    with pytest.raises(RuntimeError, match="stop"):
        sweep.run_sweep(tiny_config(), {"meta.inner_lr": [0.01]}, 1, tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["sweep"]["grid"] == \
        {"meta.inner_lr": [0.01]}
    with pytest.raises(ConfigError, match="different run.*sweep"):  # another grid
        sweep.run_sweep(tiny_config(), {"meta.inner_lr": [0.01, 0.03]}, 1, tmp_path)


@pytest.mark.timeout(300)
def test_sweep_resumes_in_its_directory(tmp_path):
    """A second run_sweep in the same directory resumes from the final checkpoint: no step is
    trained again, and the summary is the same."""
    grid = {"meta.inner_lr": [0.01, 0.03]}
    first = sweep.run_sweep(tiny_config(), grid, 2, tmp_path, progress=False)
    assert (tmp_path / "checkpoints" / "20").exists()
    rows = (tmp_path / "metrics.jsonl").read_text()
    again = sweep.run_sweep(tiny_config(), grid, 2, tmp_path, progress=False)
    assert (tmp_path / "metrics.jsonl").read_text() == rows
    # nothing was left to train: the summary keeps the training's rate
    assert again["steps_per_second"] == first["steps_per_second"] is not None
    for a, b in zip(first["points"], again["points"]):
        assert a["hyper"] == b["hyper"]
        for name in a["per_seed"]:
            np.testing.assert_allclose(b["per_seed"][name], a["per_seed"][name], rtol=1e-6)
    assert json.loads((tmp_path / "summary.json").read_text())["points"][1]["hyper"] == \
        {"meta.inner_lr": 0.03}


def test_cli_sweep(tmp_path, capsys):
    from dlcore import cli
    assert cli.main(["sweep", "sinusoid/maml", "--quick", "--grid", "lr=1",
                     "--workdir", str(tmp_path / "bad")]) == 2
    assert "sweep key 'lr'" in capsys.readouterr().err
    assert cli.main(["sweep", "sinusoid/maml", "--quick", "--grid", "meta.inner_lr=0.003,0.03",
                     "--seeds", "2", "--set", "loop.steps=20", "--set", "loop.steps_per_call=10",
                     "--set", "loop.log_every=10",
                     "--set", "loop.eval_every=20", "--set", "loop.checkpoint_every=20",
                     "--workdir", str(tmp_path / "ok"), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "{'meta.inner_lr': 0.003}: test_mse" in out and "4 members in one program" in out


# --- sweeping anything the state carries: the optimizer's hyperparameters ----------------------------

@pytest.mark.timeout(300)
def test_optimizer_sweep_members_equal_their_runs_alone(tmp_path):
    """`dlcore sweep mnist1d/mlp --grid optim.learning_rate=... --grid optim.weight_decay=0,0.1`:
    one program (optax.inject_hyperparams keeps the numbers in the state), every member as if
    alone, including a member without weight decay in a program built with it."""
    sets = ["loop.steps=30", "loop.steps_per_call=10", "loop.log_every=10", "loop.eval_every=30",
            "loop.checkpoint_every=30", "loop.plots=false", "model.hidden=16,16"]
    cfg = experiment.load("mnist1d/mlp", overrides=sets)
    grid = {"optim.learning_rate": [3e-3, 1e-2], "optim.weight_decay": [0.0, 0.1]}
    summary = sweep.run_sweep(cfg, grid, 2, tmp_path / "sweep", progress=False)
    assert summary["members"] == 8
    for p, s in [(0, 1), (3, 0), (1, 0)]:
        point = summary["points"][p]
        alone = experiment.run(
            experiment.apply_overrides(cfg, [f"{k}={v}" for k, v in point["hyper"].items()]
                                       + [f"seed={s}"]),
            tmp_path / f"alone_{p}_{s}", progress=False)
        for name in ("test_loss", "train_eval_loss"):
            np.testing.assert_allclose(point["per_seed"][name][s], alone["metrics"][name], rtol=1e-4)
    losses = [p["metrics"]["test_loss"] for p in summary["points"]]
    assert len(set(np.round(losses, 5))) == 4  # the points really differ


def test_cli_sweeps_the_optimizer(tmp_path, capsys):
    from dlcore import cli
    assert cli.main(["sweep", "mnist1d/logreg", "--quick", "--grid", "optim.learning_rate=1e-3,1e-2",
                     "--grid", "optim.l2=0,0.01", "--workdir", str(tmp_path), "--no-progress",
                     "--set", "loop.plots=false"]) == 0
    out = capsys.readouterr().out
    assert "{'optim.learning_rate': 0.001, 'optim.l2': 0}: test_accuracy" in out
    assert "4 members in one program" in out
