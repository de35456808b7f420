"""dlcore.models: shapes, the residual/batch-norm/dropout options, initializers, build() checks,
a user's own Linen class by name, and an NNX model trained beside its Linen twin."""
from __future__ import annotations

import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from dlcore import experiment, models
from dlcore.config import ConfigError
from dlcore.models.mlp import ACTIVATIONS, MLP, logistic_regression

X = jax.random.normal(jax.random.key(1), (6, 7))


def dense(p, h):
    return h @ p["kernel"] + p["bias"]


def good_cfg(**kw):
    cfg = {"name": "mlp", "hidden": (8, 8), "activation": "relu", "residual": False,
           "dropout": 0.0, "batch_norm": False, "batch_norm_momentum": 0.9, "init": "lecun_normal",
           "input_shape": None}
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


def test_batch_norm_momentum_from_the_config():
    """model.batch_norm_momentum: running = momentum * running + (1 - momentum) * batch (PacGAN's
    generator keeps 0.95)."""
    m = models.build(good_cfg(hidden=(4,), batch_norm=True, batch_norm_momentum=0.95), (7,), 2)
    variables = m.init(jax.random.key(0), X)
    _, state = m.apply(variables, X, True, jax.random.key(0))
    z = np.asarray(dense(variables["params"]["dense_0"], X), np.float64)
    np.testing.assert_allclose(state["batch_stats"]["bn_0"]["mean"], 0.05 * z.mean(0), rtol=1e-4,
                               atol=1e-6)
    np.testing.assert_allclose(state["batch_stats"]["bn_0"]["var"], 0.95 + 0.05 * z.var(0),
                               rtol=1e-4)


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


def test_normal_002_init_is_dcgans():
    """'normal_002': kernels ~ N(0, 0.02²) whatever the fan-in, zero biases (DCGAN's, PacGAN's)."""
    p = MLP(hidden=(300,), num_outputs=200, initializer="normal_002").init(
        jax.random.key(0), jnp.ones((1, 2)))["params"]
    for w, n in ((p["dense_0"]["kernel"], 600), (p["head"]["kernel"], 60_000)):
        w = np.asarray(w, np.float64).ravel()
        assert abs(w.mean()) < 4 * 0.02 / np.sqrt(n) and abs(w.std() / 0.02 - 1) < 4 / np.sqrt(2 * n)
    np.testing.assert_array_equal(p["dense_0"]["bias"], 0.0)


# --- build ----------------------------------------------------------------------------------------

def test_build_mlp_and_logreg():
    assert set(good_cfg()) == set(models.defaults("mlp"))  # the full section
    m = models.build(good_cfg(hidden=(3, 4), activation="tanh", residual=True, init="torch"), (7,), 5)
    assert isinstance(m, models.Model) and isinstance(m.module, MLP)
    assert m.family.__name__ == "dlcore.models.mlp"
    assert (m.module.hidden, m.module.num_outputs, m.module.activation, m.module.residual,
            m.module.initializer) == ((3, 4), 5, "tanh", True, "torch")
    lr = models.build({**models.defaults("logreg"), "init": "torch"}, (40,), 7).module
    assert lr.hidden == () and lr.num_outputs == 7 and lr.initializer == "torch"
    assert models.defaults("logreg") == {"name": "logreg", "init": "lecun_normal", "input_shape": None}


def test_model_init_and_apply_are_the_linen_module_as_pure_functions():
    m = models.build(good_cfg(hidden=(5,), batch_norm=True, dropout=0.5), (7,), 3)
    variables = m.init(jax.random.key(0), X)
    assert set(variables) == {"params", "batch_stats"}
    ref = m.module.init({"params": jax.random.key(0), "dropout": jax.random.key(0)}, X)
    jax.tree.map(np.testing.assert_array_equal, variables, ref)
    out, state = m.apply(variables, X)  # evaluation: state unchanged, no key needed
    np.testing.assert_array_equal(out, m.module.apply(variables, X, train=False))
    jax.tree.map(np.testing.assert_array_equal, state, {"batch_stats": variables["batch_stats"]})
    key = jax.random.key(3)
    out, state = m.apply(variables, X, True, key)  # training: dropout from `key`, new statistics
    want, mutated = m.module.apply(variables, X, train=True, rngs={"dropout": key},
                                   mutable=["batch_stats"])
    np.testing.assert_array_equal(out, want)
    jax.tree.map(np.testing.assert_array_equal, state, mutated)
    assert not np.allclose(state["batch_stats"]["bn_0"]["mean"], 0.0)


def test_build_mlp_section_without_init_key_uses_the_default():
    cfg = experiment.complete({"algorithm": "supervised", "data": {"name": "digits"},
                               "model": {"name": "mlp", "hidden": (8,)}})
    assert cfg["model"] == {**models.defaults("mlp"), "hidden": (8,)}
    assert cfg["model"]["init"] == "lecun_normal"
    assert models.build(cfg["model"], (8, 8, 1), 3).module.initializer == "lecun_normal"


@pytest.mark.parametrize("overrides,key", [
    (dict(activation="rleu"), "model.activation"),
    (dict(name="transfomer"), "model.name"),
    (dict(name=None), "model.name"),
    (dict(init="orthogonal"), "model.init"),
    (dict(dropout=1.0), "model.dropout"),
    (dict(dropout=-0.1), "model.dropout"),
    (dict(batch_norm_momentum=1.0), "model.batch_norm_momentum"),
    (dict(batch_norm_momentum="0.9"), "model.batch_norm_momentum"),
    (dict(hidden=(8, 0)), "model.hidden"),
    (dict(hidden=(-4,)), "model.hidden"),
    (dict(hidden=(8.0,)), "model.hidden"),
])
def test_build_rejects(overrides, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        models.build(good_cfg(**overrides), (7,), 3)


def test_mlp_rejects_bad_activation_at_call():
    with pytest.raises(ConfigError, match="model.activation"):
        MLP(hidden=(2,), num_outputs=1, activation="nope").init(jax.random.key(0), X)


# --- a user's own Linen class, by name ------------------------------------------------------------

USER_MODULE = '''
import flax.linen as nn


class Tiny(nn.Module):
    """A user's model: fields are its config keys; num_outputs comes from the data."""
    num_outputs: int
    width: int = 16
    activation: str = "relu"

    @nn.compact
    def __call__(self, x):
        h = nn.Dense(self.width, name="hidden")(x.reshape(x.shape[0], -1))
        h = nn.relu(h) if self.activation == "relu" else nn.tanh(h)
        return nn.Dense(self.num_outputs, name="out")(h)


class NeedsDepth(nn.Module):
    num_outputs: int
    depth: int  # no default: the config must set it

    @nn.compact
    def __call__(self, x):
        return nn.Dense(self.num_outputs)(x.reshape(x.shape[0], -1))
'''


def user_module(tmp_path, monkeypatch, name, source):
    (tmp_path / f"{name}.py").write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, name, raising=False)
    return tmp_path / f"{name}.py"


def test_user_linen_class_by_dotted_name(tmp_path, monkeypatch):
    user_module(tmp_path, monkeypatch, "user_linen_models", USER_MODULE)
    name = "user_linen_models:Tiny"
    # its fields are the section's keys (num_outputs is the data's)
    assert models.defaults(name) == {"name": name, "width": 16, "activation": "relu",
                                     "input_shape": None}
    cfg = experiment.complete({"algorithm": "supervised", "data": {"name": "digits"},
                               "model": {"name": name, "width": 8, "activation": "tanh"}})
    assert cfg["model"] == {"name": name, "width": 8, "activation": "tanh", "input_shape": None}
    algorithm, data = experiment.build(cfg)
    model = algorithm.extras["model"]
    import user_linen_models
    assert type(model.module) is user_linen_models.Tiny and model.family is user_linen_models.Tiny
    assert (model.module.num_outputs, model.module.width, model.module.activation) == (10, 8, "tanh")
    state = jax.eval_shape(algorithm.init, jax.random.key(0))
    assert jax.tree.map(lambda a: a.shape, state.params) == {
        "hidden": {"kernel": (64, 8), "bias": (8,)}, "out": {"kernel": (8, 10), "bias": (10,)}}
    # a key the class has no field for is refused, naming the keys it has
    with pytest.raises(ConfigError, match=r"'model\.depth' is not read.*activation, input_shape, "
                                          r"name, width"):
        experiment.complete({"algorithm": "supervised", "data": {"name": "digits"},
                             "model": {"name": name, "depth": 3}})
    # a field without a default must be set
    needs = "user_linen_models:NeedsDepth"
    assert models.defaults(needs)["depth"] == models.REQUIRED
    with pytest.raises(ConfigError, match=r"'model\.depth'.*needs a value"):
        models.build(models.defaults(needs), (4,), 2)
    assert models.build({**models.defaults(needs), "depth": 2}, (4,), 2).module.depth == 2
    # an attribute the module lacks
    with pytest.raises(ConfigError, match=r"'user_linen_models' has no attribute 'Huge'"):
        models.defaults("user_linen_models:Huge")


def test_unknown_model_name_lists_dlcores_families():
    with pytest.raises(ConfigError) as e:
        models.build({**good_cfg(), "name": "transfomer"}, (7,), 3)
    msg = str(e.value)
    assert "'model.name'" in msg and "no model 'transfomer'" in msg
    assert "dlcore's are cnn, deconv, gnn, gpt, logreg, maxout, mlp, rnn, transformer" in msg
    with pytest.raises(ConfigError, match="dlcore's are cnn, deconv, gnn, gpt, logreg, maxout, mlp, rnn, transformer"):
        experiment.complete({"algorithm": "supervised", "data": {"name": "digits"},
                             "model": {"name": "transfomer"}})
    with pytest.raises(ConfigError, match=r"cannot import 'no_such_package\.models:Net'"):
        models.defaults("no_such_package.models:Net")


def test_broken_user_module_is_a_one_line_error_naming_file_and_line(tmp_path, monkeypatch):
    path = user_module(tmp_path, monkeypatch, "user_broken_models",
                       "import flax.linen as nn\n\nclass Net(nn.Module)\n    pass\n")
    with pytest.raises(ConfigError) as e:
        models.defaults("user_broken_models:Net")
    msg = str(e.value)
    assert len(msg.splitlines()) == 1 and "Traceback" not in msg
    assert "'model.name'" in msg and "SyntaxError" in msg
    assert f"{path} line 3" in msg
    # an error raised while importing it names the file and line too
    user_module(tmp_path, monkeypatch, "user_raising_models",
                "x = 1\nraise ValueError('no GPU here')\n")
    with pytest.raises(ConfigError) as e:
        experiment.complete({"algorithm": "supervised", "data": {"name": "digits"},
                             "model": {"name": "user_raising_models:Net"}})
    msg = str(e.value)
    assert len(msg.splitlines()) == 1
    assert "ValueError: no GPU here (user_raising_models.py line 2)" in msg


# --- an NNX model and its Linen twin ---------------------------------------------------------------

class LinenTwin(nn.Module):
    num_outputs: int
    width: int = 16
    batch_norm: bool = False

    @nn.compact
    def __call__(self, x, train: bool = False):
        h = nn.Dense(self.width, name="l1")(x.reshape(x.shape[0], -1))
        if self.batch_norm:
            h = nn.BatchNorm(use_running_average=not train, momentum=0.9, name="bn")(h)
        return nn.Dense(self.num_outputs, name="l2")(nn.relu(h))


class NnxTwin(nnx.Module):
    def __init__(self, in_features, num_outputs, width=16, batch_norm=False, *, rngs):
        self.l1 = nnx.Linear(in_features, width, rngs=rngs)
        self.bn = nnx.BatchNorm(width, momentum=0.9, rngs=rngs) if batch_norm else None
        self.l2 = nnx.Linear(width, num_outputs, rngs=rngs)

    def __call__(self, x):
        h = self.l1(x.reshape(x.shape[0], -1))
        if self.bn is not None:
            h = self.bn(h)
        return self.l2(nnx.relu(h))


def twin_config(model, batch_norm):
    return experiment.complete({
        "algorithm": "supervised",
        "data": {"name": "digits", "batch_size": 32, "shuffle": True},
        "model": {"name": model, "width": 16, "batch_norm": batch_norm},
        "optim": {"learning_rate": 1e-2}, "loop": {"steps": 20}})


def copy_tree(tree):
    return jax.tree.map(jnp.array, tree)


@pytest.mark.parametrize("batch_norm", [False, True])
def test_nnx_model_trains_exactly_as_its_linen_twin(batch_norm):
    assert models.defaults(NnxTwin) == {**models.defaults(LinenTwin),
                                        "name": models.defaults(NnxTwin)["name"]}
    assert set(models.defaults(NnxTwin)) == {"name", "width", "batch_norm", "input_shape"}
    (alg_l, data), (alg_n, _) = (experiment.build(twin_config(m, batch_norm))
                                 for m in (LinenTwin, NnxTwin))
    assert isinstance(alg_n.extras["model"].module, NnxTwin)
    linen = alg_l.init(jax.random.key(0))
    nnx_state = alg_n.init(jax.random.key(0))
    # the same parameter tree; the NNX one starts from the Linen initial values
    assert jax.tree.structure(nnx_state.params) == jax.tree.structure(linen.params)
    assert not all(np.allclose(a, b) for a, b in zip(jax.tree.leaves(nnx_state.params),
                                                    jax.tree.leaves(linen.params)))
    nnx_state = nnx_state._replace(params=copy_tree(linen.params),
                                   opt_state=copy_tree(linen.opt_state))
    if batch_norm:
        assert set(linen.model_state) == {"batch_stats"} and set(nnx_state.model_state) == {"state"}
        np.testing.assert_array_equal(nnx_state.model_state["state"]["bn"]["var"], np.ones(16))
    step_l, step_n, sample = jax.jit(alg_l.step), jax.jit(alg_n.step), jax.jit(data.sample)
    key_data, key_step = jax.random.split(jax.random.key(1))
    for t in range(20):
        batch, key = sample(data.splits["train"], t, key_data), jax.random.fold_in(key_step, t)
        linen, metrics_l = step_l(linen, batch, key)
        nnx_state, metrics_n = step_n(nnx_state, batch, key)
        np.testing.assert_allclose(metrics_n["loss"], metrics_l["loss"], rtol=1e-5)
    for a, b in zip(jax.tree.leaves(nnx_state.params), jax.tree.leaves(linen.params)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    moved = jax.tree.map(lambda a, b: float(jnp.abs(a - b).max()), linen.params,
                         alg_l.init(jax.random.key(0)).params)
    assert min(jax.tree.leaves(moved)) > 1e-3  # 20 steps really trained both
    if batch_norm:  # the running statistics were updated alike in training
        stats_l, stats_n = linen.model_state["batch_stats"]["bn"], nnx_state.model_state["state"]["bn"]
        for k in ("mean", "var"):
            np.testing.assert_allclose(stats_n[k], stats_l[k], rtol=1e-5, atol=1e-5)
        assert np.abs(np.asarray(stats_n["mean"])).max() > 1e-3
    test = data.splits["test"]
    ev_l, ev_n = (alg.evaluate(s, test, jax.random.key(2))
                  for alg, s in ((alg_l, linen), (alg_n, nnx_state)))
    np.testing.assert_allclose(ev_n["loss"], ev_l["loss"], rtol=1e-5)
    assert float(ev_n["accuracy"]) == float(ev_l["accuracy"])


def test_nnx_batch_norm_statistics_update_in_training_only():
    model = models.build({**models.defaults(NnxTwin), "name": NnxTwin, "width": 4,
                          "batch_norm": True}, (7,), 2)
    variables = model.init(jax.random.key(0), X)
    assert set(variables) == {"params", "state"}
    stats = variables["state"]["bn"]
    np.testing.assert_array_equal(stats["mean"], np.zeros(4))
    np.testing.assert_array_equal(stats["var"], np.ones(4))
    z = np.asarray(X @ variables["params"]["l1"]["kernel"] + variables["params"]["l1"]["bias"],
                   np.float64)

    out, new = jax.jit(model.apply, static_argnums=2)(variables, X, True, jax.random.key(1))
    assert out.shape == (6, 2)
    np.testing.assert_allclose(new["state"]["bn"]["mean"], 0.1 * z.mean(0), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(new["state"]["bn"]["var"], 0.9 + 0.1 * z.var(0), rtol=1e-4)
    # training normalises with the batch's own statistics
    p = variables["params"]
    zn = (z - z.mean(0)) / np.sqrt(z.var(0) + 1e-5) * np.asarray(p["bn"]["scale"]) \
        + np.asarray(p["bn"]["bias"])
    np.testing.assert_allclose(out, dense(p["l2"], np.maximum(zn, 0)), rtol=1e-4, atol=1e-5)

    # evaluation uses the running statistics and leaves them as they were
    trained = {"params": p, "state": new["state"]}
    ev, after = jax.jit(model.apply, static_argnums=2)(trained, X, False, None)
    jax.tree.map(np.testing.assert_array_equal, after, {"state": new["state"]})
    zr = (z - np.asarray(new["state"]["bn"]["mean"])) / np.sqrt(np.asarray(new["state"]["bn"]["var"])
                                                                + 1e-5)
    np.testing.assert_allclose(ev, dense(p["l2"], np.maximum(zr, 0)), rtol=1e-4, atol=1e-5)
    # and the input variables are never changed in place
    np.testing.assert_array_equal(variables["state"]["bn"]["mean"], np.zeros(4))


class _TenClasses(nn.Module):
    """A model of one's own that fixes its width instead of taking num_outputs."""
    @nn.compact
    def __call__(self, x, train: bool = False):
        return nn.Dense(10)(x.reshape(x.shape[0], -1))


def test_a_model_whose_outputs_do_not_fit_the_data_is_refused():
    """Ten logits for five classes (digits 0-4) would train silently with unused outputs, and
    with more classes than logits cross-entropy would read past them: one ConfigError instead."""
    config = {"algorithm": "supervised", "model": {"name": _TenClasses},
              "data": {"name": "digits", "classes": [0, 1, 2, 3, 4]}}
    with pytest.raises(ConfigError, match=r"outputs of shape \(1, 10\).*needs 5 outputs"):
        experiment.build(experiment.complete(config))
    config["data"]["classes"] = list(range(10))  # ten classes: it fits
    experiment.build(experiment.complete(config))
