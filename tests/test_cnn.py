"""dlcore.models.cnn: shapes, the MNIST-1D recipe, convolutions against numpy loops, initializers,
residual shortcuts, errors, jit/vmap and gradients.

Compiling dominates, and `model.init` compiles a random draw per parameter (about a second each on
a small CPU): tests that are not about initializers fill the shapes `jax.eval_shape(model.init)`
gives with numpy random numbers instead.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dlcore.config import ConfigError
from dlcore.models.cnn import CNN

KEY = jax.random.key(0)


def fake_init(model, x, seed=0):
    """Variables shaped as `model.init` makes them, drawn by numpy (no compiling)."""
    rng = np.random.default_rng(seed)

    def fill(path, leaf):
        if path[-1].key == "var":  # batch-norm running variance
            return np.ones(leaf.shape, leaf.dtype)
        return (0.5 * rng.standard_normal(leaf.shape)).astype(leaf.dtype)
    return jax.tree_util.tree_map_with_path(fill, jax.eval_shape(model.init, KEY, x))


def run(model, x, variables=None):
    """(outputs, variables, {stage name: sown activation}) for inference mode."""
    variables = variables or fake_init(model, x)
    out, state = model.apply(variables, x, mutable=["intermediates"])
    return out, variables, {k: v[0] for k, v in state["intermediates"].items()}


def n_params(variables) -> int:
    return sum(a.size for a in jax.tree.leaves(variables["params"]))


# --- shapes -------------------------------------------------------------------------------------

@pytest.mark.parametrize("shape, kw, stages", [
    ((3, 12), dict(dims=1), [(3, 12, 4), (3, 12, 6)]),
    ((3, 12, 2), dict(dims=1, head="avg", strides=(2, 1)), [(3, 6, 4), (3, 6, 6)]),
    ((3, 9, 8), dict(dims=2, head="max", pool="max"), [(3, 4, 4, 4), (3, 2, 2, 6)]),
    ((3, 14, 12, 2), dict(dims=2, pool="avg", padding="VALID", dense=(5,)),
     [(3, 6, 5, 4), (3, 2, 1, 6)]),
])
def test_output_and_stage_shapes(shape, kw, stages):
    model = CNN(num_outputs=3, channels=(4, 6), **kw)
    out, variables, inter = run(model, jax.random.normal(KEY, shape))
    assert out.shape == (3, 3) and np.all(np.isfinite(out))
    assert [inter["stage_0"].shape, inter["stage_1"].shape] == stages
    assert variables["params"]["conv_0"]["kernel"].shape == (3,) * kw["dims"] + (
        shape[-1] if len(shape) == kw["dims"] + 2 else 1, 4)


def test_missing_channel_axis_is_added():
    model = CNN(num_outputs=2, dims=2, channels=(3,), kernel_sizes=(3,), strides=(1,))
    x = jax.random.normal(KEY, (2, 5, 5))
    variables = fake_init(model, x)
    np.testing.assert_allclose(model.apply(variables, x), model.apply(variables, x[..., None]))


def test_pooling_is_max_and_mean_over_windows():
    x = jax.random.normal(KEY, (1, 6, 1))
    for pool, reduce in (("max", np.max), ("avg", np.mean)):
        model = CNN(num_outputs=1, dims=1, channels=(2,), kernel_sizes=(1,), strides=(1,),
                    pool=pool, pool_size=3, activation="identity")
        _, v, inter = run(model, x)
        conv = np.asarray(x) * np.asarray(v["params"]["conv_0"]["kernel"])[0] \
            + np.asarray(v["params"]["conv_0"]["bias"])
        np.testing.assert_allclose(inter["stage_0"], reduce(conv.reshape(1, 2, 3, 2), axis=2),
                                   rtol=1e-5, atol=1e-6)


def test_residual_batch_norm_train_and_eval():
    model = CNN(num_outputs=3, channels=(4, 8), strides=(1, 2), residual=True, batch_norm=True)
    x = jax.random.normal(KEY, (4, 6, 6, 2))
    variables = fake_init(model, x)
    assert "bias" not in variables["params"]["conv_0"]  # batch norm makes a conv bias redundant
    out, updates = model.apply(variables, x, train=True, mutable=["batch_stats"])
    assert out.shape == (4, 3)
    old, new = variables["batch_stats"]["bn_0"]["mean"], updates["batch_stats"]["bn_0"]["mean"]
    assert not np.allclose(old, new)  # running statistics moved
    evaluated = model.apply({**variables, **updates}, x, train=False)
    assert evaluated.shape == (4, 3) and not np.allclose(evaluated, out)


def test_dropout_only_in_training():
    model = CNN(num_outputs=3, dims=1, channels=(4,), kernel_sizes=(3,), strides=(1,),
                dense=(16,), dropout=0.5)
    x = jax.random.normal(KEY, (2, 8))
    variables = fake_init(model, x)
    np.testing.assert_allclose(model.apply(variables, x), model.apply(variables, x))
    a, b = (model.apply(variables, x, train=True, rngs={"dropout": jax.random.key(k)})
            for k in (1, 2))
    assert a.shape == (2, 3) and not np.allclose(a, b)
    no_hidden = CNN(num_outputs=3, dims=1, channels=(4,), kernel_sizes=(3,), strides=(1,),
                    dropout=0.5)  # dropout then falls on the flattened features
    v = fake_init(no_hidden, x)
    a, b = (no_hidden.apply(v, x, train=True, rngs={"dropout": jax.random.key(k)}) for k in (1, 2))
    assert not np.allclose(a, b)


# --- MNIST-1D recipe ----------------------------------------------------------------------------

def test_mnist1d_convbase_shapes_and_parameter_count():
    # Greydanus & Kobak's ConvBase: Conv1d(1, 25, 5, stride=2, padding=1), then twice
    # Conv1d(25, 25, 3, stride=2, padding=1), ReLU after each, flatten, Linear(125, 10).
    model = CNN(num_outputs=10, dims=1, channels=(25, 25, 25), kernel_sizes=(5, 3, 3),
                strides=(2, 2, 2), padding=1, activation="relu", head="flatten",
                initializer="torch")
    out, variables, inter = run(model, jnp.ones((2, 40)))
    assert out.shape == (2, 10)
    assert [inter[f"stage_{i}"].shape for i in range(3)] == [(2, 19, 25), (2, 10, 25), (2, 5, 25)]
    torch_count = (1 * 25 * 5 + 25) + 2 * (25 * 25 * 3 + 25) + (125 * 10 + 10)
    assert n_params(variables) == torch_count == 5210
    assert variables["params"]["conv_0"]["kernel"].shape == (5, 1, 25)
    assert variables["params"]["head"]["kernel"].shape == (125, 10)


# --- arithmetic against plain loops -------------------------------------------------------------

def conv1d_reference(x, w, b, stride, pad):
    """Cross-correlation, x: [b, L, cin], w: [k, cin, cout], PyTorch padding/stride semantics."""
    x = np.pad(x, ((0, 0), (pad, pad), (0, 0)))
    k = w.shape[0]
    out_len = (x.shape[1] - k) // stride + 1
    out = np.zeros((x.shape[0], out_len, w.shape[2]))
    for n in range(x.shape[0]):
        for i in range(out_len):
            for o in range(w.shape[2]):
                out[n, i, o] = np.sum(x[n, i * stride:i * stride + k, :] * w[:, :, o]) + b[o]
    return out


def conv2d_reference(x, w, b, stride, pad):
    """Cross-correlation, x: [b, H, W, cin], w: [kh, kw, cin, cout]."""
    x = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    kh, kw = w.shape[:2]
    oh, ow = (x.shape[1] - kh) // stride + 1, (x.shape[2] - kw) // stride + 1
    out = np.zeros((x.shape[0], oh, ow, w.shape[3]))
    for i in range(oh):
        for j in range(ow):
            patch = x[:, i * stride:i * stride + kh, j * stride:j * stride + kw, :]
            out[:, i, j, :] = np.einsum("nhwc,hwco->no", patch, w) + b
    return out


@pytest.mark.parametrize("dims, shape, kernel, stride, pad", [
    (1, (2, 11, 3), 4, 3, 2),  # padding wider than half the kernel, stride 3
    (2, (2, 7, 6, 2), 3, 2, 1),
    (2, (1, 5, 4, 3), 2, 1, 2),
])
def test_integer_padding_and_stride_match_reference(dims, shape, kernel, stride, pad):
    model = CNN(num_outputs=2, dims=dims, channels=(3,), kernel_sizes=(kernel,),
                strides=(stride,), padding=pad, activation="identity", initializer="torch")
    x = np.asarray(jax.random.normal(jax.random.key(3), shape), np.float64)
    out, v, inter = run(model, jnp.asarray(x, jnp.float32))
    w, b = (np.asarray(v["params"]["conv_0"][n], np.float64) for n in ("kernel", "bias"))
    expected = (conv1d_reference if dims == 1 else conv2d_reference)(x, w, b, stride, pad)
    np.testing.assert_allclose(inter["stage_0"], expected, rtol=1e-5, atol=1e-5)
    head = v["params"]["head"]
    np.testing.assert_allclose(out, expected.reshape(shape[0], -1) @ head["kernel"] + head["bias"],
                               rtol=1e-5, atol=1e-5)


# --- initializers and residual shortcuts --------------------------------------------------------

def test_torch_init_bounds_kernel_and_bias():
    model = CNN(num_outputs=2, dims=2, channels=(64, 32), kernel_sizes=(3, 1), strides=(1, 1),
                head="avg", initializer="torch")
    params = model.init(KEY, jnp.ones((1, 4, 4, 4)))["params"]
    for name, fan_in in (("conv_0", 4 * 3 * 3), ("conv_1", 64 * 1 * 1)):
        bound = 1 / np.sqrt(fan_in)
        k, b = np.asarray(params[name]["kernel"]), np.asarray(params[name]["bias"])
        assert np.abs(k).max() <= bound and np.abs(b).max() <= bound
        # Uniform on [-bound, bound]: reaches near both ends, std bound / sqrt(3), mean ~ 0.
        assert k.max() > 0.95 * bound and k.min() < -0.95 * bound
        assert abs(k.std() - bound / np.sqrt(3)) < 0.1 * bound / np.sqrt(3)
        assert abs(k.mean()) < 0.1 * bound and np.abs(b).max() > 0.5 * bound


def test_residual_projection_only_where_shapes_change():
    model = CNN(num_outputs=2, channels=(4, 4, 8), kernel_sizes=(3, 3, 3), strides=(1, 2, 1),
                residual=True, activation="tanh")
    x = jax.random.normal(KEY, (2, 6, 6, 4))
    params = fake_init(model, x)["params"]
    assert "shortcut_0" not in params  # 4 -> 4 channels, stride 1: identity
    assert params["shortcut_1"]["kernel"].shape == (1, 1, 4, 4)  # stride 2
    assert params["shortcut_2"]["kernel"].shape == (1, 1, 4, 8)  # 4 -> 8 channels
    assert not any(k.startswith("bn") or "shortcut_bn" in k for k in params)
    # With the block's second conv zeroed, an identity stage is act(shortcut) = tanh(x).
    zeroed = jax.tree.map(jnp.zeros_like, params["conv_0_2"])
    _, _, inter = run(model, x, {"params": {**params, "conv_0_2": zeroed}})
    np.testing.assert_allclose(inter["stage_0"], jnp.tanh(x), rtol=1e-6, atol=1e-6)


# --- errors -------------------------------------------------------------------------------------

def trace(model, x):
    """Shapes only: the checks run while tracing, before anything is computed."""
    return jax.eval_shape(model.init, KEY, x)


def test_wrong_rank_is_a_clear_error():
    model = CNN(num_outputs=2, dims=2)
    with pytest.raises(ValueError, match=r"CNN with dims=2 expects inputs \[batch, height, width, "
                       r"channels\] \(or \[batch, height, width\]\); got shape \(5, 40\)"):
        trace(model, jnp.ones((5, 40)))
    with pytest.raises(ValueError, match=r"dims=1 expects inputs \[batch, length, channels\]"):
        trace(CNN(num_outputs=2, dims=1), jnp.ones((5, 4, 4, 1)))


def test_mismatched_lengths_and_bad_values():
    with pytest.raises(ValueError, match="channels.*2.*kernel_sizes.*1.*strides.*2"):
        trace(CNN(num_outputs=2, channels=(4, 4), kernel_sizes=(3,)), jnp.ones((1, 8, 8)))
    for kw, key in ((dict(head="mean"), "model.head"), (dict(pool="min"), "model.pool"),
                    (dict(padding="same"), "model.padding"), (dict(padding=-1), "model.padding"),
                    (dict(initializer="orthogonal"), "model.init")):
        with pytest.raises(ConfigError, match=key):
            trace(CNN(num_outputs=2, **kw), jnp.ones((1, 8, 8)))


def test_collapsing_spatial_size_names_the_stage():
    model = CNN(num_outputs=2, dims=1, channels=(4, 4, 4), kernel_sizes=(3, 3, 3),
                strides=(2, 2, 2), padding="VALID")
    with pytest.raises(ValueError, match=r"stage 2 .*spatial size \(1,\) into \(-?0,\)"):
        trace(model, jnp.ones((1, 8)))  # 8 -> 3 -> 1 -> nothing
    pooled = CNN(num_outputs=2, dims=2, channels=(4,), kernel_sizes=(3,), strides=(1,),
                 pool="max", pool_size=4)
    with pytest.raises(ValueError, match=r"stage 0 .*\(3, 5\) into \(0, 1\).*pool 4"):
        trace(pooled, jnp.ones((1, 3, 5)))
    residual = CNN(num_outputs=2, dims=1, channels=(4,), kernel_sizes=(3,), strides=(1,),
                   padding="VALID", residual=True)
    with pytest.raises(ValueError, match=r"stage 0 .*residual branch gives spatial size \(6,\)"):
        trace(residual, jnp.ones((1, 10)))


# --- transformations ----------------------------------------------------------------------------

def test_jit_and_vmap_over_init_keys():
    model = CNN(num_outputs=3, dims=1, channels=(4,), kernel_sizes=(3,), strides=(2,), padding=1)
    x = jnp.ones((2, 10))
    stacked = jax.jit(jax.vmap(model.init, in_axes=(0, None)))(jax.random.split(KEY, 5), x)
    assert stacked["params"]["conv_0"]["kernel"].shape == (5, 3, 1, 4)
    assert stacked["params"]["head"]["kernel"].shape == (5, 20, 3)
    kernels = stacked["params"]["conv_0"]["kernel"]
    assert not np.allclose(kernels[0], kernels[1])  # independent draws per key
    out = jax.jit(jax.vmap(model.apply, in_axes=(0, None)))(stacked, x)
    assert out.shape == (5, 2, 3)


def test_gradients_reach_every_parameter():
    model = CNN(num_outputs=3, dims=2, channels=(4, 6), kernel_sizes=(3, 3), strides=(1, 2),
                residual=True, batch_norm=True, activation="gelu", dense=(5,), dropout=0.1,
                pool="avg", head="flatten")
    x = jax.random.normal(KEY, (4, 8, 8, 1))
    variables = fake_init(model, x)

    def loss(params):
        out, _ = model.apply({**variables, "params": params}, x, train=True,
                             mutable=["batch_stats"], rngs={"dropout": jax.random.key(1)})
        return jnp.mean((out - 1.0) ** 2)

    grads = jax.jit(jax.grad(loss))(variables["params"])
    for path, g in jax.tree_util.tree_leaves_with_path(grads):
        assert np.all(np.isfinite(g)), path
        assert np.any(g != 0), path


# --- the `cnn` family: a config section becomes the module ----------------------------------------

def test_family_build_from_a_config_section():
    from dlcore import models
    from dlcore.models import cnn
    cfg = {**models.defaults("cnn"), "dims": 1, "channels": [25, 25], "kernel_sizes": [5, 3],
           "strides": [2, 2], "padding": "1", "init": "torch", "dense": [16], "dropout": 0.2}
    assert set(cfg) == {"name", "input_shape", *cnn.defaults()}
    m = models.build(cfg, (40,), 10)
    assert m.family is cnn and isinstance(m.module, CNN)
    mod = m.module
    assert (mod.num_outputs, mod.dims, mod.channels, mod.kernel_sizes, mod.strides, mod.padding,
            mod.initializer, mod.dense, mod.dropout) == (10, 1, (25, 25), (5, 3), (2, 2), 1, "torch",
                                                         (16,), 0.2)
    for change, key in ((dict(dims=3), "model.dims"), (dict(pool="min"), "model.pool"),
                        (dict(head="mean"), "model.head"), (dict(channels=[4, 0]), "model.channels"),
                        (dict(kernel_sizes=[3]), "model.channels"), (dict(padding="same"),
                                                                      "model.padding"),
                        (dict(dropout=1.0), "model.dropout"), (dict(init="nope"), "model.init")):
        with pytest.raises(ConfigError, match=f"'{key}'"):
            models.build({**cfg, **change}, (40,), 10)
    # a model that cannot take the data: one ConfigError naming the shape, before any compile
    with pytest.raises(ConfigError, match=r"model 'cnn' cannot take inputs of shape \(40,\)"):
        models.build({**cfg, "dims": 2}, (40,), 10)
