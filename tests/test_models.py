"""dlcore.models: shapes, the residual/batch-norm/dropout options, initializers, build() checks."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dlcore import models
from dlcore.config import ConfigError
from dlcore.models import ACTIVATIONS, MLP, logistic_regression

X = jax.random.normal(jax.random.key(1), (6, 7))


def dense(p, h):
    return h @ p["kernel"] + p["bias"]


def good_cfg(**kw):
    cfg = {"name": "mlp", "hidden": (8, 8), "activation": "relu", "residual": False,
           "dropout": 0.0, "batch_norm": False, "init": "lecun_normal"}
    cfg.update(kw)
    return cfg


# --- shapes and activations -----------------------------------------------------------------------

@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
def test_mlp_each_activation(activation):
    model = MLP(hidden=(5,), num_outputs=3, activation=activation)
    variables = model.init(jax.random.key(0), X)
    out = model.apply(variables, X)
    assert out.shape == (6, 3) and out.dtype == jnp.float32
    assert np.all(np.isfinite(out))
    p = variables["params"]
    expected = dense(p["head"], ACTIVATIONS[activation](dense(p["dense_0"], X)))
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)


def test_activations_are_what_they_say():
    z = jnp.array([-2.0, -0.5, 0.0, 1.5])
    zn = np.asarray(z, np.float64)
    np.testing.assert_allclose(ACTIVATIONS["relu"](z), np.maximum(zn, 0))
    np.testing.assert_allclose(ACTIVATIONS["tanh"](z), np.tanh(zn), rtol=1e-6)
    np.testing.assert_allclose(ACTIVATIONS["sigmoid"](z), 1 / (1 + np.exp(-zn)), rtol=1e-6)
    np.testing.assert_allclose(ACTIVATIONS["identity"](z), zn)
    np.testing.assert_allclose(ACTIVATIONS["softplus"](z), np.log1p(np.exp(zn)), rtol=1e-6)
    np.testing.assert_allclose(ACTIVATIONS["elu"](z), np.where(zn > 0, zn, np.expm1(zn)), rtol=1e-6)
    np.testing.assert_allclose(ACTIVATIONS["silu"](z), zn / (1 + np.exp(-zn)), rtol=1e-6)
    np.testing.assert_allclose(ACTIVATIONS["leaky_relu"](z), np.where(zn > 0, zn, 0.01 * zn),
                               rtol=1e-6)


def test_mlp_flattens_inputs_and_stacks_layers():
    x = jnp.ones((2, 8, 8, 1))
    model = MLP(hidden=(16, 4, 9), num_outputs=10)
    variables = jax.jit(model.init)(jax.random.key(0), x)
    assert model.apply(variables, x).shape == (2, 10)
    shapes = jax.tree.map(jnp.shape, variables["params"])
    assert shapes == {"dense_0": {"kernel": (64, 16), "bias": (16,)},
                      "dense_1": {"kernel": (16, 4), "bias": (4,)},
                      "dense_2": {"kernel": (4, 9), "bias": (9,)},
                      "head": {"kernel": (9, 10), "bias": (10,)}}
    assert set(variables) == {"params"}


def test_residual_adds_where_widths_agree():
    model = MLP(hidden=(5, 5), num_outputs=2, residual=True, activation="tanh")
    variables = model.init(jax.random.key(0), X)
    p = variables["params"]
    h1 = jnp.tanh(dense(p["dense_0"], X))           # 7 -> 5: widths differ, no skip
    h2 = h1 + jnp.tanh(dense(p["dense_1"], h1))     # 5 -> 5: skip
    expected = dense(p["head"], h2)
    out = model.apply(variables, X)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)
    # without the skip the same parameters give a different answer
    plain = MLP(hidden=(5, 5), num_outputs=2, residual=False, activation="tanh").apply(variables, X)
    np.testing.assert_allclose(plain, dense(p["head"], jnp.tanh(dense(p["dense_1"], h1))),
                               rtol=1e-5, atol=1e-6)
    assert np.max(np.abs(out - plain)) > 1e-3


def test_residual_skips_first_layer_when_input_width_matches():
    x = X[:, :5]
    model = MLP(hidden=(5,), num_outputs=2, residual=True, activation="relu")
    variables = model.init(jax.random.key(0), x)
    p = variables["params"]
    expected = dense(p["head"], x + jax.nn.relu(dense(p["dense_0"], x)))
    np.testing.assert_allclose(model.apply(variables, x), expected, rtol=1e-5, atol=1e-6)


# --- batch norm -----------------------------------------------------------------------------------

def test_batch_norm_statistics():
    model = MLP(hidden=(4,), num_outputs=2, batch_norm=True)
    variables = model.init(jax.random.key(0), X)
    assert set(variables) == {"params", "batch_stats"}
    stats = variables["batch_stats"]["bn_0"]
    np.testing.assert_array_equal(stats["mean"], np.zeros(4))
    np.testing.assert_array_equal(stats["var"], np.ones(4))

    out, updated = model.apply(variables, X, train=True, mutable=["batch_stats"])
    assert out.shape == (6, 2)
    z = np.asarray(dense(variables["params"]["dense_0"], X), np.float64)
    new = updated["batch_stats"]["bn_0"]
    np.testing.assert_allclose(new["mean"], 0.1 * z.mean(0), rtol=1e-4, atol=1e-6)  # momentum 0.9
    np.testing.assert_allclose(new["var"], 0.9 + 0.1 * z.var(0), rtol=1e-4)

    # train mode normalises with the batch's own statistics
    p = variables["params"]
    zn = (z - z.mean(0)) / np.sqrt(z.var(0) + 1e-5) * np.asarray(p["bn_0"]["scale"]) \
        + np.asarray(p["bn_0"]["bias"])
    np.testing.assert_allclose(out, dense(p["head"], np.maximum(zn, 0)), rtol=1e-4, atol=1e-5)

    # eval mode uses the running statistics and changes nothing
    ev = model.apply({"params": p, "batch_stats": updated["batch_stats"]}, X, train=False)
    zr = (z - np.asarray(new["mean"])) / np.sqrt(np.asarray(new["var"]) + 1e-5)
    np.testing.assert_allclose(ev, dense(p["head"], np.maximum(zr, 0)), rtol=1e-4, atol=1e-5)


def test_batch_norm_train_without_mutable_fails():
    model = MLP(hidden=(4,), num_outputs=2, batch_norm=True)
    variables = model.init(jax.random.key(0), X)
    with pytest.raises(Exception, match="batch_stats"):
        model.apply(variables, X, train=True)


# --- dropout --------------------------------------------------------------------------------------

def test_dropout():
    model = MLP(hidden=(32,), num_outputs=3, dropout=0.5)
    variables = model.init(jax.random.key(0), X)
    k1, k2 = jax.random.key(10), jax.random.key(11)
    a = model.apply(variables, X, train=True, rngs={"dropout": k1})
    b = model.apply(variables, X, train=True, rngs={"dropout": k2})
    a2 = model.apply(variables, X, train=True, rngs={"dropout": k1})
    assert np.max(np.abs(a - b)) > 1e-3
    np.testing.assert_array_equal(a, a2)
    e1 = model.apply(variables, X)
    e2 = model.apply(variables, X, train=False, rngs={"dropout": k2})
    np.testing.assert_array_equal(e1, e2)
    # eval mode is exactly the network without dropout
    nodrop = MLP(hidden=(32,), num_outputs=3).apply(variables, X)
    np.testing.assert_allclose(e1, nodrop, rtol=1e-6)
    # train mode: kept units are scaled by 1/(1-rate), dropped ones are zero
    p = variables["params"]
    h = np.asarray(jax.nn.relu(dense(p["dense_0"], X)))
    _, inter = model.apply(variables, X, train=True, rngs={"dropout": k1},
                           capture_intermediates=True, mutable=["intermediates"])
    (dropped,) = inter["intermediates"]["Dropout_0"]["__call__"]
    dropped = np.asarray(dropped)
    kept = dropped != 0
    np.testing.assert_allclose(dropped[kept], 2.0 * h[kept], rtol=1e-5)
    alive = h > 1e-6
    assert 0.3 < kept[alive].mean() < 0.7  # about half of the active units survive
    np.testing.assert_allclose(a, dense(p["head"], dropped), rtol=1e-5, atol=1e-6)
    with pytest.raises(Exception):
        model.apply(variables, X, train=True)  # no dropout key: an error, not silent determinism


# --- logistic regression --------------------------------------------------------------------------

def test_logistic_regression():
    model = logistic_regression(10)
    x = jnp.ones((3, 40))
    variables = model.init(jax.random.key(0), x)
    assert list(variables["params"]) == ["head"]
    assert jax.tree.map(jnp.shape, variables["params"]) == {"head": {"kernel": (40, 10),
                                                                      "bias": (10,)}}
    np.testing.assert_allclose(model.apply(variables, x), dense(variables["params"]["head"], x),
                               rtol=1e-6)


# --- initializers ---------------------------------------------------------------------------------

def test_torch_init_bounds():
    model = MLP(hidden=(100, 50), num_outputs=10, initializer="torch")
    p = jax.jit(model.init)(jax.random.key(0), jnp.ones((1, 40)))["params"]  # one compile
    for layer, fan_in in (("dense_0", 40), ("dense_1", 100), ("head", 50)):
        bound = 1 / np.sqrt(fan_in)
        for leaf in ("kernel", "bias"):
            w = np.asarray(p[layer][leaf])
            assert np.all(np.abs(w) <= bound + 1e-7), (layer, leaf)
            # uniform on the whole interval, not squeezed into a corner of it
            assert np.abs(w).max() > 0.8 * bound, (layer, leaf)
            if w.size >= 50:
                assert w.min() < -0.8 * bound and w.max() > 0.8 * bound, (layer, leaf)
    k = np.asarray(p["dense_0"]["kernel"])
    assert np.var(k) == pytest.approx((1 / np.sqrt(40)) ** 2 / 3, rel=0.1)


def test_default_init_zero_bias():
    p = MLP(hidden=(8,), num_outputs=2).init(jax.random.key(0), X)["params"]
    np.testing.assert_array_equal(p["dense_0"]["bias"], 0.0)
    assert np.std(np.asarray(p["dense_0"]["kernel"])) > 0


# --- build ----------------------------------------------------------------------------------------

def test_build_mlp_and_logreg():
    m = models.build(good_cfg(hidden=(3, 4), activation="tanh", residual=True, init="torch"), 5)
    assert isinstance(m, MLP)
    assert (m.hidden, m.num_outputs, m.activation, m.residual, m.initializer) == \
        ((3, 4), 5, "tanh", True, "torch")
    lr = models.build({"name": "logreg", "init": "torch"}, 7)
    assert lr.hidden == () and lr.num_outputs == 7 and lr.initializer == "torch"


def test_build_mlp_without_init_key_uses_default():
    cfg = good_cfg()
    del cfg["init"]
    m = models.build(cfg, 3)
    assert m.initializer == "lecun_normal"


@pytest.mark.parametrize("overrides,key", [
    (dict(activation="rleu"), "model.activation"),
    (dict(name="transformer"), "model.name"),
    (dict(name=None), "model.name"),
    (dict(init="orthogonal"), "model.init"),
    (dict(dropout=1.0), "model.dropout"),
    (dict(dropout=-0.1), "model.dropout"),
    (dict(hidden=(8, 0)), "model.hidden"),
    (dict(hidden=(-4,)), "model.hidden"),
    (dict(hidden=(8.0,)), "model.hidden"),
])
def test_build_rejects(overrides, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        models.build(good_cfg(**overrides), 3)


def test_mlp_rejects_bad_activation_at_call():
    with pytest.raises(ConfigError, match="model.activation"):
        MLP(hidden=(2,), num_outputs=1, activation="nope").init(jax.random.key(0), X)
