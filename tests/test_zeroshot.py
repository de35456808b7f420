"""dlcore.algorithms.zeroshot: compatibility shapes, learning a synthetic zero-shot problem, the
check for attributes, and the quick glyph experiments end to end."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dlcore import data as data_lib, experiment
from dlcore.algorithms import zeroshot
from dlcore.config import ConfigError
from dlcore.data import episodes

A, D = 20, 16  # attributes per class, embedding dimension


def synthetic(num_train=40, num_test=15, per_class=6, seed=0):
    """Class-major splits whose 'images' are the class's attribute vector plus noise:
    x [C, M, A], attributes [C, A] (distinct random sets of 3-5 of A attributes)."""
    rng = np.random.default_rng(seed)
    rows = set()
    while len(rows) < num_train + num_test:
        rows.add(tuple(sorted(rng.choice(A, rng.integers(3, 6), replace=False))))
    attributes = np.zeros((len(rows), A), np.float32)
    for i, row in enumerate(sorted(rows, key=lambda r: rng.random())):
        attributes[i, list(row)] = 1.0
    x = attributes[:, None, :] + rng.normal(0, 0.1, (len(rows), per_class, A)).astype(np.float32)
    cut = num_train
    return {"train": {"x": x[:cut], "attributes": attributes[:cut]},
            "test": {"x": x[cut:], "attributes": attributes[cut:]}}


def synthetic_config(steps=100, n_way=10, test_n_way=5):
    """(complete config, Data): the synthetic episodes are a Data value, given as data.name."""
    episode_cfg = {**episodes.defaults(), "batch_size": 2, "n_way": n_way, "k_shot": 1,
                   "q_query": 2, "test_n_way": test_n_way, "test_k_shot": 0, "test_q_query": 3,
                   "eval_tasks": 20, "eval_chunk": 10, "eval_seed": 0}
    data = episodes.episodic(synthetic(), episode_cfg)
    assert data.spec["attribute_dim"] == A and data.spec["num_train_classes"] == 40
    config = experiment.complete({
        "algorithm": "zeroshot", "data": {"name": data},
        "model": {"name": "mlp", "hidden": (32,)}, "meta": {"embedding_dim": D},
        "optim": {"name": "adam", "learning_rate": 1e-2}, "loop": {"steps": steps}})
    return config, data


def make(config, data):
    return zeroshot.make(config, data, config["loop"]["steps"])


def test_compatibility_logits_and_class_embeddings_have_the_right_shapes():
    config, data = synthetic_config()
    algo = make(config, data)
    adapt = algo.extras["adapt"]
    state = algo.init(jax.random.key(0))
    f, g = zeroshot.networks(config, data.spec)
    x, attributes = jnp.ones((7, A)), jnp.eye(A)[:3]
    out = zeroshot.compatibilities(f, g, state.params, x, attributes)
    assert out.shape == (7, 3)
    # the logits are the inner products of f(x) with the class embeddings adapt() returns
    classes = adapt(state.params, attributes, None)
    assert classes.shape == (3, D)
    z = f.apply({"params": state.params["image"]}, x, False, None)[0]
    np.testing.assert_allclose(out, z @ classes.T, rtol=1e-5, atol=1e-5)
    # an episode dict works as adapt's support too; the wrong attribute width does not
    np.testing.assert_allclose(adapt(state.params, {"attributes": attributes}, None), classes)
    with pytest.raises(ValueError, match=rf"attributes \[N, {A}\]"):
        adapt(state.params, jnp.ones((3, A + 1)), None)


def test_linear_compatibility_is_a_sum_of_attribute_scores():
    """With a linear g, <f(x), g(a)> = sum_j a_j s_j(x) + a term the same for every class."""
    config, data = synthetic_config()
    state = make(config, data).init(jax.random.key(0))
    f, g = zeroshot.networks(config, data.spec)
    x = jax.random.normal(jax.random.key(1), (4, A))
    attributes = jnp.asarray(synthetic()["train"]["attributes"][:6])
    directions = zeroshot.attribute_directions(g, state.params, A)
    assert directions.shape == (A, D)
    s = f.apply({"params": state.params["image"]}, x, False, None)[0] @ directions.T  # [4, A]
    out = zeroshot.compatibilities(f, g, state.params, x, attributes)
    shift = out - s @ attributes.T  # [4, 6]: constant along the class axis
    np.testing.assert_allclose(shift, shift[:, :1] * jnp.ones((1, 6)), rtol=1e-4, atol=1e-4)


@pytest.mark.timeout(120)
def test_learns_a_synthetic_zero_shot_problem():
    """Images are their class's attributes plus noise: after training on 40 classes, 15 unseen
    ones are told apart from their attribute vectors alone (chance 1/5)."""
    config, data = synthetic_config(steps=150)
    splits = jax.tree.map(jnp.asarray, data.splits)
    algo = make(config, data)
    sample = data.sample
    evaluate = jax.jit(algo.evaluate)

    @jax.jit
    def train(state, key):
        def body(state, t):
            batch = sample(splits["train"], t, key)
            return algo.step(state, batch, jax.random.fold_in(key, t))
        return jax.lax.scan(body, state, jnp.arange(150))

    state0 = algo.init(jax.random.key(0))
    before = evaluate(state0, splits["test"], jax.random.key(1))
    state, metrics = train(state0, jax.random.key(2))
    after = evaluate(state, splits["test"], jax.random.key(1))
    assert metrics["loss"][-10:].mean() < metrics["loss"][:10].mean()
    assert float(after["accuracy"]) > 0.9 > float(before["accuracy"])
    assert float(after["chance"]) == pytest.approx(0.2)
    assert set(after) == {"loss", "accuracy", "accuracy_ci95", "chance"}
    assert 0 <= float(after["accuracy_ci95"]) < 0.1


def test_data_without_attributes_is_refused():
    config = experiment.load("glyphs/zeroshot", quick=True,
                             overrides=["data.name=digits_classes", "data.n_way=5",
                                        "data.test_n_way=5"])
    data = data_lib.load(config["data"])
    assert data.spec["attribute_dim"] == 0
    with pytest.raises(ConfigError, match="data.name.*attribute.*digits_classes"):
        make(config, data)
    with pytest.raises(ConfigError, match="data.name.*attribute.*digits_classes"):
        experiment.build(config)


def test_batch_norm_is_refused():
    config, data = synthetic_config()
    config["model"]["batch_norm"] = True
    with pytest.raises(ConfigError, match="model.batch_norm"):
        make(config, data)


@pytest.mark.timeout(300)
def test_quick_experiment_runs_and_reports_chance(tmp_path):
    config = experiment.load("glyphs/zeroshot", quick=True)
    summary = experiment.run(config, tmp_path, progress=False)
    m = summary["metrics"]
    assert {"test_accuracy", "test_accuracy_ci95", "test_chance"} <= set(m)
    assert m["test_chance"] == pytest.approx(1 / config["data"]["test_n_way"])
    assert 0.0 <= m["test_accuracy"] <= 1.0 and m["test_accuracy_ci95"] > 0


@pytest.mark.timeout(300)
def test_all_unseen_classes_at_once_evaluates():
    """glyphs/zeroshot_all's test: every test class in each episode (20 in the quick config)."""
    config = experiment.load("glyphs/zeroshot_all", quick=True)
    assert config["experiment"] == "glyphs/zeroshot_all"
    data = data_lib.load(config["data"])
    splits, spec = data.splits, data.spec
    assert spec["test_n_way"] == len(splits["test"]["x"]) == config["data"]["test_classes"]
    algo = make(config, data)
    state = algo.init(jax.random.key(0))
    out = jax.jit(algo.evaluate)(state, jax.tree.map(jnp.asarray, splits["test"]),
                                 jax.random.key(0))
    assert float(out["chance"]) == pytest.approx(1 / spec["test_n_way"])
    assert np.isfinite(float(out["loss"])) and 0.0 <= float(out["accuracy"]) <= 1.0
