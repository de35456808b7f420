"""dlcore.models.rnn: shapes, cells against numpy and PyTorch, padding, perturbations, init, errors.

XLA compiles take most of the time here, so shapes and errors are checked with `jax.eval_shape`
(tracing only), parameters are random numbers of the right shapes wherever their initial values
do not matter, and tests share one jitted `run` (same model and shapes: a cache hit).
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dlcore.config import ConfigError
from dlcore.models.rnn import GATES, HEADS, RNN

CELLS = sorted(GATES)
X = jax.random.normal(jax.random.key(1), (4, 6, 2))


def stacked(cell, head="sequence", **kw):
    """The model most tests use: two bidirectional layers of width 3."""
    return RNN(num_outputs=3, cell=cell, hidden_size=3, layers=2, bidirectional=True, head=head,
               **kw)


def random_variables(model, x, seed=0, scale=0.5):
    """Variables of the right shapes without compiling `init`; non-zero biases everywhere."""
    shapes = jax.eval_shape(model.init, jax.random.key(0), x)
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda s: jnp.asarray(scale * rng.normal(size=s.shape), jnp.float32),
                        shapes)


@functools.partial(jax.jit, static_argnums=0)
def run(model, variables, x, lengths=None, perturbation=None):
    """(model output, top layer's output sequence [b, T, D*H])."""
    out, state = model.apply(variables, x, lengths=lengths, perturbation=perturbation,
                             mutable=["intermediates"])
    return out, state["intermediates"]["outputs"][0]


# --- numpy reference of the equations -------------------------------------------------------------

def sigmoid(a):
    return 1 / (1 + np.exp(-a))


def np_direction(cell, p, x):
    """x [b, T, F] -> [b, T, H], float64, written straight from the PyTorch equations."""
    w_i, w_h, b_i, b_h = (np.asarray(p[k], np.float64) for k in ("w_i", "w_h", "b_i", "b_h"))
    H = w_h.shape[0]
    h = c = np.zeros((x.shape[0], H))
    out = []
    for t in range(x.shape[1]):
        a, r = x[:, t] @ w_i + b_i, h @ w_h + b_h
        if cell == "rnn":
            h = np.tanh(a + r)
        elif cell == "lstm":
            i, f, g, o = np.split(a + r, 4, axis=-1)
            c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
            h = sigmoid(o) * np.tanh(c)
        else:
            rr = sigmoid(a[:, :H] + r[:, :H])
            z = sigmoid(a[:, H:2 * H] + r[:, H:2 * H])
            n = np.tanh(a[:, 2 * H:] + rr * r[:, 2 * H:])
            h = (1 - z) * n + z * h
        out.append(h)
    return np.stack(out, axis=1)


def np_rnn(cell, params, x, layers, bidirectional):
    seq = np.asarray(x, np.float64)
    for layer in range(layers):
        outs = [np_direction(cell, params[f"layer_{layer}_fwd"], seq)]
        if bidirectional:
            outs.append(np_direction(cell, params[f"layer_{layer}_bwd"], seq[:, ::-1])[:, ::-1])
        seq = np.concatenate(outs, axis=-1)
    return seq


# --- shapes (tracing only) ------------------------------------------------------------------------

@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("head", HEADS)
@pytest.mark.parametrize("bidirectional,layers", [(False, 1), (True, 2), (False, 3)])
def test_shapes(cell, head, bidirectional, layers):
    model = RNN(num_outputs=4, cell=cell, hidden_size=3, layers=layers,
                bidirectional=bidirectional, head=head)
    variables = jax.eval_shape(model.init, jax.random.key(0), X)
    out, seq = jax.eval_shape(functools.partial(run, model), variables, X)
    assert out.shape == ((4, 6, 4) if head == "sequence" else (4, 4))
    D, G = (2 if bidirectional else 1), GATES[cell]
    assert seq.shape == (4, 6, D * 3)
    shapes = jax.tree.map(jnp.shape, variables["params"])
    assert set(shapes) == {"head"} | {f"layer_{i}_{d}" for i in range(layers)
                                      for d in ("fwd", "bwd")[:D]}
    assert shapes["layer_0_fwd"] == {"w_i": (2, G * 3), "w_h": (3, G * 3), "b_i": (G * 3,),
                                     "b_h": (G * 3,)}
    if layers > 1:
        assert shapes[f"layer_{layers - 1}_fwd"]["w_i"] == (D * 3, G * 3)
    head_rows = {"flatten": 6 * D * 3}.get(head, D * 3)
    assert shapes["head"] == {"kernel": (head_rows, 4), "bias": (4,)}


def test_two_dimensional_input_gets_one_feature():
    model = RNN(num_outputs=2, hidden_size=3, head="sequence")
    variables = jax.eval_shape(model.init, jax.random.key(0), jnp.ones((4, 6)))
    assert variables["params"]["layer_0_fwd"]["w_i"].shape == (1, 9)
    assert jax.eval_shape(model.apply, variables, jnp.ones((4, 6))).shape == (4, 6, 2)


# --- the equations --------------------------------------------------------------------------------

@pytest.mark.parametrize("cell", CELLS)
def test_cells_match_numpy_reference(cell):
    model = stacked(cell)
    variables = random_variables(model, X)
    out, seq = run(model, variables, X)
    expected = np_rnn(cell, variables["params"], X, layers=2, bidirectional=True)
    np.testing.assert_allclose(seq, expected, rtol=1e-5, atol=1e-5)
    head = variables["params"]["head"]
    np.testing.assert_allclose(out, expected @ head["kernel"] + head["bias"], rtol=1e-5,
                               atol=1e-5)


@pytest.mark.parametrize("cell", CELLS)
def test_cells_match_torch(cell):
    torch = pytest.importorskip("torch")
    model = stacked(cell)
    variables = random_variables(model, X, seed=1)
    net = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[cell](
        2, 3, num_layers=2, bidirectional=True, batch_first=True)
    with torch.no_grad():
        for layer in range(2):
            for direction, suffix in (("fwd", ""), ("bwd", "_reverse")):
                p = variables["params"][f"layer_{layer}_{direction}"]
                for k, name in (("w_i", "weight_ih"), ("w_h", "weight_hh"), ("b_i", "bias_ih"),
                                ("b_h", "bias_hh")):
                    w = np.array(p[k])  # torch stores [G*H, in]: the transpose of ours
                    getattr(net, f"{name}_l{layer}{suffix}").copy_(torch.from_numpy(w.T.copy()))
        expected = net(torch.from_numpy(np.array(X)))[0].numpy()
    np.testing.assert_allclose(run(model, variables, X)[1], expected, atol=1e-5)


# --- padding --------------------------------------------------------------------------------------

LENGTHS = np.array([6, 2, 1, 2])


@pytest.mark.parametrize("cell", CELLS)
def test_padded_batch_equals_unpadded_sequences(cell):
    model = stacked(cell)
    variables = random_variables(model, X)
    x = X.at[1:, 2:].set(7.0)  # garbage in the padding: must not leak into anything
    out, seq = run(model, variables, x, jnp.asarray(LENGTHS))
    for n in sorted(set(LENGTHS)):  # every sequence of length n, run alone on its n steps
        alone_out, alone_seq = run(model, variables, x[:, :n])
        for i in np.flatnonzero(LENGTHS == n):
            np.testing.assert_allclose(seq[i, :n], alone_seq[i], rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(out[i, :n], alone_out[i], rtol=1e-5, atol=1e-6)
            np.testing.assert_array_equal(seq[i, n:], 0.0)
            np.testing.assert_array_equal(out[i, n:], 0.0)


@pytest.mark.parametrize("head", ["last", "mean"])
def test_heads_use_valid_steps_only(head):
    model = stacked("gru", head=head)
    variables = random_variables(model, X)
    out, seq = run(model, variables, X, jnp.asarray(LENGTHS))
    seq = np.asarray(seq)
    if head == "last":  # forward direction ends at step length-1, backward at step 0
        feats = np.stack([np.concatenate([s[n - 1, :3], s[0, 3:]])
                          for s, n in zip(seq, LENGTHS)])
    else:
        feats = np.stack([s[:n].mean(axis=0) for s, n in zip(seq, LENGTHS)])
    p = variables["params"]["head"]
    np.testing.assert_allclose(out, feats @ p["kernel"] + p["bias"], rtol=1e-5, atol=1e-5)
    # the unpadded sequence of full length: lengths=T is lengths=None
    np.testing.assert_allclose(out[0], run(model, variables, X)[0][0], rtol=1e-5, atol=1e-6)


# --- perturbations: dL/dh_t -----------------------------------------------------------------------

@pytest.mark.parametrize("cell", CELLS)
def test_zero_perturbation_changes_nothing(cell):
    model = stacked(cell)
    variables = random_variables(model, X)
    zeros = jnp.zeros((4, 6, 3))
    out, seq = run(model, variables, X)
    np.testing.assert_allclose(run(model, variables, X, None, zeros)[0], out, atol=1e-6)
    bumped = run(model, variables, X, None, zeros.at[:, 2].set(0.5))[1][..., :3]  # top forward
    np.testing.assert_allclose(bumped[:, :2], seq[:, :2, :3], atol=1e-6)  # the past is untouched
    assert not np.any(np.isclose(bumped[:, 2:], seq[:, 2:, :3]))


def test_perturbation_gradient_vanishes_back_in_time():
    T, H = 12, 4
    x = jax.random.normal(jax.random.key(5), (2, T, 1))
    model = RNN(num_outputs=1, cell="rnn", hidden_size=H, head="last", initializer="lecun_normal")
    variables = random_variables(model, x)
    variables["params"]["layer_0_fwd"]["w_h"] = 0.2 * jnp.eye(H, H)  # ||W_h|| < 1

    def loss(p):
        return jnp.sum(model.apply(variables, x, perturbation=p) ** 2)

    g = jax.jit(jax.grad(loss))(jnp.zeros((2, T, H)))
    assert g.shape == (2, T, H)
    norms = np.linalg.norm(np.asarray(g), axis=(0, 2))
    assert norms[-1] > 0 and np.all(np.diff(norms) > 0), norms
    assert norms[0] < 1e-6 * norms[-1]


# --- parameters and initialisation ----------------------------------------------------------------

def test_mnist1d_gru_matches_pytorch_parameter_count():
    model = RNN(num_outputs=10, cell="gru", hidden_size=6, bidirectional=True, head="flatten",
                initializer="torch")
    x = jnp.ones((2, 40))
    variables = jax.eval_shape(model.init, jax.random.key(0), x)
    out, seq = jax.eval_shape(functools.partial(run, model), variables, x)
    assert out.shape == (2, 10) and seq.shape == (2, 40, 12)
    assert variables["params"]["head"]["kernel"].shape == (480, 10)
    assert sum(a.size for a in jax.tree.leaves(variables["params"])) == 2 * 162 + 4810 == 5134


@functools.partial(jax.jit, static_argnums=0)
def init_all(models, x):
    """Several models' variables in one compile."""
    return [m.init(jax.random.key(0), x) for m in models]


def test_initializers_and_forget_bias():
    H = 16
    torch_lstm = RNN(num_outputs=5, cell="lstm", hidden_size=H, bidirectional=True,
                     forget_bias=1.0)
    xavier_gru = RNN(num_outputs=2, cell="gru", hidden_size=H, initializer="xavier_uniform")
    lecun_lstm = RNN(num_outputs=2, cell="lstm", hidden_size=H, initializer="lecun_normal",
                     forget_bias=1.0)
    torch_p, xavier_p, lecun_p = (v["params"] for v in
                                  init_all((torch_lstm, xavier_gru, lecun_lstm), X))
    # torch: every weight and bias U(+-1/sqrt(H)) as torch.nn.LSTM; the head as nn.Linear(2H, 5)
    bound = 1 / np.sqrt(H)
    forget = np.s_[H:2 * H]
    for name, p in torch_p.items():
        b = bound if name != "head" else 1 / np.sqrt(2 * H)
        for k, a in p.items():
            a = np.array(a)
            if k == "b_i":  # forget_bias shifts the forget gate's input bias only
                assert np.all(np.abs(a[forget] - 1.0) <= b) and a[forget].min() > 0.4
                a = np.delete(a, forget)
            assert np.abs(a).max() <= b and np.abs(a).max() > 0.8 * b, (name, k)
    # other initializers: orthogonal recurrent block per gate, zero biases
    p = xavier_p["layer_0_fwd"]
    for g in range(3):
        block = np.asarray(p["w_h"][:, g * H:(g + 1) * H])
        np.testing.assert_allclose(block.T @ block, np.eye(H), atol=1e-5)
    np.testing.assert_array_equal(p["b_i"], 0.0)
    np.testing.assert_array_equal(p["b_h"], 0.0)
    limit = np.sqrt(6 / (2 + 3 * H))  # xavier_uniform over the fused [F, 3H] kernel
    assert np.abs(p["w_i"]).max() <= limit
    b_i = np.asarray(lecun_p["layer_0_fwd"]["b_i"])
    np.testing.assert_array_equal(b_i, np.r_[np.zeros(H), np.ones(H), np.zeros(2 * H)])
    np.testing.assert_array_equal(lecun_p["layer_0_fwd"]["b_h"], 0.0)


# --- errors (raised while tracing) ----------------------------------------------------------------

def test_clear_errors():
    model = RNN(num_outputs=2, hidden_size=3)
    trace = functools.partial(jax.eval_shape, model.init, jax.random.key(0))
    with pytest.raises(ValueError, match=r"\[batch, time, features\].*\(2, 3, 4, 5\)"):
        trace(jnp.ones((2, 3, 4, 5)))
    with pytest.raises(ValueError, match=r"\[batch, time, features\].*\(7,\)"):
        trace(jnp.ones((7,)))
    with pytest.raises(ValueError, match=r"perturbation.*\(4, 6, 3\)"):
        trace(X, perturbation=jnp.zeros((4, 6, 4)))
    with pytest.raises(ConfigError, match="model.cell.*'gruu'"):
        jax.eval_shape(RNN(num_outputs=2, cell="gruu").init, jax.random.key(0), X)
    with pytest.raises(ConfigError, match="model.head.*'final'"):
        jax.eval_shape(RNN(num_outputs=2, head="final").init, jax.random.key(0), X)
    flat = RNN(num_outputs=2, hidden_size=3, bidirectional=True, head="flatten")
    variables = jax.eval_shape(flat.init, jax.random.key(0), X)
    with pytest.raises(ValueError, match="built for sequences of length 6; got length 7"):
        jax.eval_shape(flat.apply, variables, jnp.ones((4, 7, 2)))


# --- transformations, dropout, gradients ----------------------------------------------------------

def test_jit_and_vmap_over_init_keys():
    model = RNN(num_outputs=2, cell="lstm", hidden_size=3, bidirectional=True, unroll=2)
    keys = jax.random.split(jax.random.key(0), 3)

    @jax.jit
    def init_and_apply(keys, x):
        variables = jax.vmap(model.init, in_axes=(0, None))(keys, x)
        return variables, jax.vmap(model.apply, in_axes=(0, None))(variables, x)

    variables, out = init_and_apply(keys, X)
    assert variables["params"]["layer_0_fwd"]["w_h"].shape == (3, 3, 12)
    assert out.shape == (3, 4, 2) and not np.allclose(out[0], out[1])
    one = jax.tree.map(lambda a: a[1], variables)  # unroll does not change the numbers
    np.testing.assert_allclose(out[1], run(model.clone(unroll=1), one, X)[0], rtol=1e-5,
                               atol=1e-6)


def test_gradients_finite_and_dropout():
    models = [stacked(cell, head="mean", dropout=0.3) for cell in CELLS]
    lengths = jnp.array([6, 2, 1, 4])

    @jax.jit
    def grads_and_outputs(all_params):
        def loss(params, model):
            out = model.apply({"params": params}, X, train=True, lengths=lengths,
                              rngs={"dropout": jax.random.key(1)})
            return jnp.sum(out ** 2)
        grads = [jax.grad(loss)(p, m) for p, m in zip(all_params, models)]
        outs = [(m.apply({"params": p}, X, train=True, rngs={"dropout": jax.random.key(1)}),
                 m.apply({"params": p}, X)) for p, m in zip(all_params, models)]
        return grads, outs

    grads, outs = grads_and_outputs([random_variables(m, X)["params"] for m in models])
    for cell, g in zip(CELLS, grads):
        for path, leaf in jax.tree_util.tree_leaves_with_path(g):
            assert np.all(np.isfinite(leaf)) and np.any(leaf != 0), (cell, path)
    for train_out, eval_out in outs:  # dropout only when training
        assert not np.allclose(train_out, eval_out)


# --- the `rnn` family: a config section becomes the module ----------------------------------------

def test_family_build_from_a_config_section():
    from dlcore import models
    from dlcore.models import rnn
    cfg = {**models.defaults("rnn"), "cell": "lstm", "hidden_size": 8, "layers": 2,
           "bidirectional": True, "head": "mean", "forget_bias": 1.0}
    assert set(cfg) == {"name", "input_shape", *rnn.defaults()}
    m = models.build(cfg, (12, 2), 1)
    assert m.family is rnn and isinstance(m.module, RNN)
    mod = m.module
    assert (mod.num_outputs, mod.cell, mod.hidden_size, mod.layers, mod.bidirectional, mod.head,
            mod.forget_bias, mod.initializer) == (1, "lstm", 8, 2, True, "mean", 1.0, "torch")
    for change, key in ((dict(cell="transformer"), "model.cell"), (dict(head="first"), "model.head"),
                        (dict(hidden_size=0), "model.hidden_size"), (dict(layers=1.5), "model.layers"),
                        (dict(unroll=0), "model.unroll"), (dict(dropout=-0.1), "model.dropout"),
                        (dict(init="nope"), "model.init")):
        with pytest.raises(ConfigError, match=f"'{key}'"):
            models.build({**cfg, **change}, (12, 2), 1)
    with pytest.raises(ConfigError, match=r"model 'rnn' cannot take inputs of shape \(8, 8, 1\)"):
        models.build(cfg, (8, 8, 1), 10)
