"""Meta-learning: sinusoid tasks, the inner loop, MAML's second-order gradient against its closed
form, FOMAML, Meta-SGD, Reptile, ProtoNets, the pretrained baseline, scoring, and bad input."""
import copy
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dlcore import data as data_lib, experiment, meta, models
from dlcore.algorithms import maml, metasgd, pretrained, protonet, reptile
from dlcore.config import ConfigError
from dlcore.data import sinusoid

pytestmark = pytest.mark.timeout(300)


def linear_loss(params, data):
    """Least squares of a linear model y = x w: quadratic, so MAML's gradient has a closed form."""
    err = jnp.mean((data["x"] @ params["w"] - data["y"]) ** 2)
    return err, err


def linear_task(seed: int, k: int = 6, d: int = 3) -> dict:
    rng = np.random.default_rng(seed)
    make = lambda: {"x": jnp.asarray(rng.normal(size=(k, d)), jnp.float32),
                    "y": jnp.asarray(rng.normal(size=(k, 1)), jnp.float32)}
    return {"support": make(), "query": make()}


# --- sinusoid tasks ---------------------------------------------------------------------------------

def test_sinusoid_tasks_follow_the_paper():
    b = sinusoid.sample_batch(jax.random.key(0), 500, 5, 7)
    assert b["support"]["x"].shape == (500, 5, 1) and b["query"]["y"].shape == (500, 7, 1)
    amp, ph = np.asarray(b["amplitude"]), np.asarray(b["phase"])
    assert 0.1 <= amp.min() and amp.max() <= 5.0 and 0 <= ph.min() and ph.max() <= math.pi
    x = np.asarray(b["support"]["x"])
    assert -5 <= x.min() and x.max() <= 5
    np.testing.assert_allclose(b["support"]["y"], amp[:, None, None] * np.sin(x - ph[:, None, None]),
                               rtol=1e-5, atol=1e-5)
    # the same task for the same (key, step), a new one for another step
    cfg = experiment.load("sinusoid/maml", quick=True)["data"]
    sample = sinusoid.load(cfg).sample
    key = jax.random.key(3)
    a, a2, c = sample({}, 5, key), sample({}, 5, key), sample({}, 6, key)
    np.testing.assert_array_equal(a["query"]["x"], a2["query"]["x"])
    assert not np.allclose(a["query"]["x"], c["query"]["x"])


def test_sinusoid_test_tasks_are_fixed_by_eval_seed():
    cfg = experiment.load("sinusoid/maml", quick=True)["data"]
    d1 = data_lib.load(cfg)
    s1, spec, s2 = d1.splits, d1.spec, data_lib.load(cfg).splits
    s3 = data_lib.load({**cfg, "eval_seed": cfg["eval_seed"] + 1}).splits
    np.testing.assert_array_equal(s1["test"]["support"]["x"], s2["test"]["support"]["x"])
    assert not np.allclose(s1["test"]["support"]["x"], s3["test"]["support"]["x"])
    # tasks drawn per step: no training split, and the fixed test tasks for the evaluation
    assert s1["train"] == {} and spec["eval_tasks"][0] == cfg["eval_tasks"]
    assert not d1.evaluate_train
    assert s1["test"]["query"]["x"].shape == (cfg["eval_tasks"], cfg["eval_query"], 1)


@pytest.mark.parametrize("key,value,message", [
    ("k_shot", 0, "data.k_shot"), ("amplitude", (5.0, 0.1), "data.amplitude"),
    ("eval_chunk", -1, "data.eval_chunk")])
def test_sinusoid_bad_settings(key, value, message):
    cfg = experiment.load("sinusoid/maml", quick=True)["data"]
    with pytest.raises(ConfigError, match=message):
        data_lib.load({**cfg, key: value})


# --- the inner loop -----------------------------------------------------------------------------------

def test_sgd_step_and_clip():
    task = linear_task(0)
    params = {"w": jnp.ones((3, 1))}
    g = jax.grad(lambda p: linear_loss(p, task["support"])[0])(params)["w"]
    new, clipped = meta.sgd_step(linear_loss, params, task["support"], 0.1, 0.0)
    np.testing.assert_allclose(new["w"], params["w"] - 0.1 * g, rtol=1e-6)
    assert not clipped
    small = float(jnp.linalg.norm(g)) / 4
    new, clipped = meta.sgd_step(linear_loss, params, task["support"], 0.1, small)
    assert clipped
    np.testing.assert_allclose(jnp.linalg.norm(new["w"] - params["w"]), 0.1 * small, rtol=1e-5)
    # a per-parameter rate (Meta-SGD)
    lr = {"w": jnp.array([[0.1], [0.0], [0.2]])}
    new, _ = meta.sgd_step(linear_loss, params, task["support"], lr, 0.0)
    np.testing.assert_allclose(new["w"], params["w"] - lr["w"] * g, rtol=1e-6)


def test_clip_keeps_a_diverging_adaptation_finite():
    """A rate far past 2 / curvature: plain gradient descent overflows, the clipped one cannot."""
    task = linear_task(1)
    params = {"w": jnp.zeros((3, 1))}
    free = meta.adaptation_curve(linear_loss, params, task, 50.0, 60, 0.0)["score"]
    clipped = meta.adaptation_curve(linear_loss, params, task, 50.0, 60, 10.0)
    assert not np.all(np.isfinite(free))
    assert np.all(np.isfinite(clipped["score"])) and bool(clipped["clipped"])


def test_adaptation_curve_matches_adapt():
    task = linear_task(2)
    params = {"w": jnp.full((3, 1), 0.3)}
    curve = meta.adaptation_curve(linear_loss, params, task, 0.05, 4, 0.0)
    assert curve["score"].shape == (5,)
    for s in (0, 1, 4):
        adapted = meta.adapt(linear_loss, params, task["support"], 0.05, s, 0.0)
        np.testing.assert_allclose(curve["score"][s], linear_loss(adapted, task["query"])[0],
                                   rtol=1e-5)


def test_maml_meta_gradient_matches_closed_form():
    """Least squares: w' = w - a g_s(w); d L_q(w') / dw = (I - a H_s) g_q(w'), H_s = 2 X^T X / k.
    First-order MAML drops the Hessian term."""
    task = linear_task(3)
    a = 0.1
    params = {"w": jnp.asarray([[0.5], [-0.2], [0.1]])}

    def outer(p, first_order):
        return linear_loss(meta.adapt(linear_loss, p, task["support"], a, 1, 0.0, first_order),
                           task["query"])[0]
    xs, xq = np.asarray(task["support"]["x"], np.float64), np.asarray(task["query"]["x"], np.float64)
    ys, yq = np.asarray(task["support"]["y"], np.float64), np.asarray(task["query"]["y"], np.float64)
    w = np.asarray(params["w"], np.float64)
    hs = 2 * xs.T @ xs / len(xs)
    w1 = w - a * (hs @ w - 2 * xs.T @ ys / len(xs))
    gq = 2 * xq.T @ (xq @ w1 - yq) / len(xq)
    np.testing.assert_allclose(jax.grad(outer)(params, False)["w"], (np.eye(3) - a * hs) @ gq,
                               rtol=1e-4)
    np.testing.assert_allclose(jax.grad(outer)(params, True)["w"], gq, rtol=1e-4)


@pytest.mark.parametrize("unroll", [False, True])
def test_evaluate_tasks_statistics(unroll):
    """Mean, 95 % interval and median over tasks against numpy, tasks not a multiple of the chunk;
    vmapped or unrolled chunks alike."""
    values = np.random.default_rng(0).gamma(2.0, size=(7, 3)).astype(np.float32)
    split = {"v": jnp.asarray(np.concatenate([values, np.zeros((1, 3), np.float32)]))}
    tasks = (7, 4, lambda s, i: jax.tree.map(lambda a: jax.lax.dynamic_slice_in_dim(a, i * 4, 4), s))
    out = meta.evaluate_tasks(lambda t: {"loss": t["v"], "score": t["v"], "clipped": t["v"][0] > 3},
                              split, tasks, "regression", unroll=unroll)
    np.testing.assert_allclose(out["mse_after_steps"], values.mean(0), rtol=1e-5)
    np.testing.assert_allclose(out["median_mse_after_steps"], np.median(values, 0), rtol=1e-5)
    np.testing.assert_allclose(out["mse_ci95_after_steps"],
                               1.96 * values.std(0, ddof=1) / np.sqrt(7), rtol=1e-4)
    assert float(out["mse"]) == pytest.approx(values[:, -1].mean(), rel=1e-5)
    assert float(out["clipped_fraction"]) == pytest.approx((values[:, 0] > 3).mean())


# --- the algorithms ---------------------------------------------------------------------------------

def build(name: str, module, **sets):
    config = experiment.load(name, quick=True)
    for key, value in sets.items():
        section, k = key.split("__")
        config[section][k] = value
    data = data_lib.load(config["data"])
    return config, data, data.spec, module.make(config, data, config["loop"]["steps"])


def test_maml_learns_to_adapt():
    """After 1500 meta-updates one inner step helps a new sinusoid a lot: the point of MAML."""
    config, data, spec, alg = build("sinusoid/maml", maml, loop__steps=1500)
    sample = data.sample

    @jax.jit
    def train(state, key):
        def body(s, t):
            return alg.step(s, sample({}, t, key), jax.random.fold_in(key, t))[0], None
        return jax.lax.scan(body, state, jnp.arange(1500))[0]
    state = train(alg.init(jax.random.key(0)), jax.random.key(1))
    m = jax.jit(alg.evaluate)(state, data.splits["test"], jax.random.key(2))
    assert m["mse_after_steps"].shape == (11,)
    assert m["mse_after_steps"][1] < 0.6 * m["mse_after_steps"][0]
    assert np.all(np.isfinite(m["mse_after_steps"]))


def test_adapt_checks_the_support_set():
    _, data, spec, alg = build("sinusoid/maml", maml)
    adapt = alg.extras["adapt"]
    state = alg.init(jax.random.key(0))
    good = {"x": jnp.zeros((10, 1)), "y": jnp.zeros((10, 1))}
    assert jax.tree.structure(adapt(state.params, good, jax.random.key(0))) == \
        jax.tree.structure(state.params)
    with pytest.raises(ValueError, match=r"shape \(2,\), the model takes \(1,\)"):
        adapt(state.params, {"x": jnp.zeros((10, 2)), "y": jnp.zeros((10, 1))}, None)
    with pytest.raises(ValueError, match="10 inputs but 9 targets"):
        adapt(state.params, {"x": jnp.zeros((10, 1)), "y": jnp.zeros((9, 1))}, None)
    with pytest.raises(ValueError, match=r"\[K, 1\] regression targets"):
        adapt(state.params, {"x": jnp.zeros((10, 1)), "y": jnp.zeros((10,))}, None)


def test_protonet_prototypes_and_label_check():
    config, data, spec, alg = build("digits/protonet", protonet)
    adapt = alg.extras["adapt"]
    state = alg.init(jax.random.key(0))
    x = jnp.asarray(data.splits["train"]["x"][:5, :2].reshape(10, 8, 8, 1))
    y = jnp.repeat(jnp.arange(5), 2)
    protos = adapt(state.params, {"x": x, "y": y}, None)
    embed = meta.model_apply(models.build(config["model"], spec["input_shape"], 64),
                             spec["input_shape"])
    z = jax.jit(embed)(state.params, x)
    np.testing.assert_allclose(protos, np.asarray(z).reshape(5, 2, -1).mean(1), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="labels must lie in 0..4"):
        adapt(state.params, {"x": x, "y": y + 1}, None)


def test_metasgd_learns_its_rates():
    config, data, spec, alg = build("sinusoid/maml", metasgd)
    state = alg.init(jax.random.key(0))
    assert jax.tree.structure(state.params["lr"]) == jax.tree.structure(state.params["net"])
    batch = data.sample({}, 0, jax.random.key(1))
    new, metrics = jax.jit(alg.step)(state, batch, jax.random.key(2))
    moved = jax.tree.leaves(jax.tree.map(lambda a, b: float(jnp.abs(a - b).max()),
                                         new.params["lr"], state.params["lr"]))
    assert all(m > 0 for m in moved) and np.isfinite(float(metrics["loss"]))


def test_reptile_moves_toward_the_mean_adapted_params():
    """With SGD of rate 1 as the outer optimizer, the new initialisation is the tasks' mean."""
    config, data, spec, alg = build("sinusoid/reptile", reptile, optim__name="sgd",
                                    optim__learning_rate=1.0)
    state = alg.init(jax.random.key(0))
    batch = data.sample({}, 0, jax.random.key(1))
    new, _ = jax.jit(alg.step)(state, batch, jax.random.key(2))
    every = jax.tree.map(lambda s, q: jnp.concatenate([s, q], 1), batch["support"], batch["query"])
    adapt = jax.jit(lambda p, s: alg.extras["adapt"](p, s, None))
    adapted = [adapt(state.params, jax.tree.map(lambda a: a[i], every))
               for i in range(config["data"]["batch_size"])]
    mean = jax.tree.map(lambda *a: jnp.mean(jnp.stack(a), 0), *adapted)
    for got, want in zip(jax.tree.leaves(new.params), jax.tree.leaves(mean)):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)


def test_pretrained_classifier_uses_global_labels_and_a_fresh_head():
    config, data, spec, alg = build("digits/pretrained", pretrained)
    state = alg.init(jax.random.key(0))
    assert state.params["head"]["kernel"].shape[-1] == spec["num_train_classes"]
    support = {"x": jnp.asarray(data.splits["test"]["x"][:, 0]), "y": jnp.arange(5)}
    tuned = alg.extras["adapt"](state.params, support, None, steps=0)
    assert not np.any(np.asarray(tuned["head"]["kernel"])) and tuned["head"]["kernel"].shape[-1] == 5


@pytest.mark.parametrize("sets,message", [
    ({"data.n_way": 6}, r"data.n_way': 6-way episodes need 6 classes; the 'train' split has only 5"),
    ({"data.test_n_way": 7}, r"data.test_n_way"),
    ({"data.k_shot": 170}, r"data.k_shot': 170 support \+ \d+ query examples per class"),
    ({"meta.inner_lr": -1.0}, r"meta.inner_lr"),
])
def test_fewshot_bad_config_is_one_clear_error(sets, message, tmp_path):
    config = experiment.load("digits/maml", quick=True)
    config = experiment.apply_overrides(config, [f"{k}={v}" for k, v in sets.items()])
    with pytest.raises(ConfigError, match=message):
        experiment.run(config, tmp_path, progress=False)
    assert not (tmp_path / "checkpoints").exists()


def test_models_with_batch_norm_are_refused():
    with pytest.raises(ConfigError, match="model.batch_norm"):
        build("sinusoid/maml", maml, model__batch_norm=True)


# --- through the loop -------------------------------------------------------------------------------

def test_sinusoid_summary_reports_every_step_for_seeds_in_one_program(tmp_path):
    config = experiment.load("sinusoid/maml", quick=True)
    s = experiment.run(config, tmp_path, seeds=2, progress=False)
    m = s["metrics"]
    assert len(m["test_mse_after_steps"]) == 11 and len(m["test_median_mse_after_steps"]) == 11
    assert np.asarray(s["per_seed"]["test_mse_after_steps"]).shape == (2, 11)
    assert "mse_after_steps" not in m  # no aliases: every final metric is <split>_<name>
    assert np.all(np.isfinite(m["test_mse_after_steps"]))
    # the two seeds trained differently
    a, b = np.asarray(s["per_seed"]["test_mse_after_steps"])
    assert not np.allclose(a, b)


def test_fewshot_summary_and_resume(tmp_path):
    config = experiment.load("digits/protonet", quick=True)
    s = experiment.run(copy.deepcopy(config), tmp_path, progress=False)
    assert 0.0 <= s["metrics"]["test_accuracy"] <= 1.0 and s["metrics"]["test_accuracy_ci95"] > 0
    again = experiment.run(copy.deepcopy(config), tmp_path, progress=False)  # resumes at the end
    assert again["metrics"]["test_accuracy"] == s["metrics"]["test_accuracy"]


def test_unrolled_meta_batch_equals_vmapped():
    """meta.task_batching only changes how the program runs, not what it computes."""
    config, data, spec, alg = build("sinusoid/maml", maml)
    unrolled = maml.make({**config, "meta": {**config["meta"], "task_batching": "unroll"}}, data,
                         config["loop"]["steps"])
    state = alg.init(jax.random.key(0))
    batch = data.sample({}, 0, jax.random.key(1))
    a, ma = jax.jit(alg.step)(state, batch, jax.random.key(2))
    b, mb = jax.jit(unrolled.step)(state, batch, jax.random.key(2))
    np.testing.assert_allclose(ma["loss"], mb["loss"], rtol=1e-5)
    for x, y in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params)):
        np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-6)
