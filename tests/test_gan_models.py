"""dlcore.models.maxout and dlcore.models.deconv, the GAN/VAE/autoencoder families: maxout against
numpy, the transposed convolutions and the whole generator against PyTorch with copied weights,
shapes, batch statistics, dropout, and their ConfigErrors.

As in test_cnn, tests that are not about initializers fill the shapes `jax.eval_shape(model.init)`
gives with numpy random numbers (compiling a random draw per parameter is slow on a small CPU).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dlcore import models
from dlcore.config import ConfigError
from dlcore.models import deconv, maxout

KEY = jax.random.key(0)


def fake_init(model, x, seed=0):
    """Variables shaped as `model.init` makes them, drawn by numpy (no compiling)."""
    rng = np.random.default_rng(seed)

    def fill(path, leaf):
        if path[-1].key == "var":  # batch-norm running variance
            return (0.5 + rng.random(leaf.shape)).astype(leaf.dtype)
        return (0.5 * rng.standard_normal(leaf.shape)).astype(leaf.dtype)
    return jax.tree_util.tree_map_with_path(fill, jax.eval_shape(model.init, KEY, x))


def build(name, input_shape, num_outputs, **keys):
    return models.build({**models.defaults(name), **keys}, input_shape, num_outputs)


def np_(tree):
    return jax.tree.map(np.asarray, tree)


# --- maxout ------------------------------------------------------------------------------------------

def maxout_numpy(params, x, hidden, pieces):
    h = x.reshape(len(x), -1)
    layers = []
    for i, width in enumerate(hidden):
        p = params[f"dense_{i}"]
        z = h @ p["kernel"] + p["bias"]
        h = z.reshape(len(x), width, pieces).max(-1)  # unit u: outputs u*pieces ... u*pieces+pieces-1
        layers.append(h)
    return h @ params["head"]["kernel"] + params["head"]["bias"], layers


def test_maxout_equals_numpy_dense_then_max_over_pieces():
    x = np.random.default_rng(1).standard_normal((5, 2, 3)).astype(np.float32)
    model = build("maxout", (2, 3), 4, hidden=(6, 3), pieces=3)
    assert model.family is maxout and isinstance(model.module, maxout.Maxout)
    v = fake_init(model, x)
    p = np_(v["params"])
    assert p["dense_0"]["kernel"].shape == (6, 18) and p["dense_1"]["kernel"].shape == (6, 9)
    assert p["head"]["kernel"].shape == (3, 4)
    out, state = model.apply(v, x)
    assert out.shape == (5, 4) and state == {}
    want, layers = maxout_numpy(p, x, (6, 3), 3)
    np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-5)
    # the hidden layers are sown like mlp's
    _, sown = model.module.apply(v, x, mutable=["intermediates"])
    for i, h in enumerate(layers):
        np.testing.assert_allclose(sown["intermediates"][f"layer_{i}"][0], h, rtol=1e-5, atol=1e-5)
    # pieces=1 is a linear network; hidden=() a linear model
    model = build("maxout", (6,), 2, hidden=(), pieces=1)
    v = fake_init(model, x.reshape(5, 6))
    np.testing.assert_allclose(model.apply(v, x.reshape(5, 6))[0],
                               maxout_numpy(np_(v["params"]), x, (), 1)[0], rtol=1e-5, atol=1e-5)


def test_maxout_dropout_only_in_training():
    x = np.random.default_rng(2).standard_normal((4, 10)).astype(np.float32)
    model = build("maxout", (10,), 3, hidden=(40,), pieces=2, dropout=0.5)
    v = fake_init(model, x)
    want, (h,) = maxout_numpy(np_(v["params"]), x, (40,), 2)
    evaluated, _ = model.apply(v, x)
    np.testing.assert_allclose(evaluated, want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(model.apply(v, x, False, jax.random.key(3))[0], want,
                               rtol=1e-5, atol=1e-5)
    a, _ = model.apply(v, x, True, jax.random.key(1))
    b, _ = model.apply(v, x, True, jax.random.key(1))
    c, _ = model.apply(v, x, True, jax.random.key(2))
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, want) and not np.allclose(a, c)
    # inverted dropout: each unit is dropped or scaled by 1 / (1 - rate)
    _, sown = model.module.apply(v, x, train=True, rngs={"dropout": jax.random.key(1)},
                                 mutable=["intermediates"])
    dropped = np.asarray(sown["intermediates"]["layer_0"][0])
    kept = dropped != 0
    assert 0 < kept.mean() < 1
    np.testing.assert_allclose(dropped[kept], 2 * h[kept], rtol=1e-5, atol=1e-5)


def test_maxout_builds_and_initialises_through_models_build():
    cfg = models.defaults("maxout")
    assert cfg == {"name": "maxout", "hidden": (200, 200, 200), "pieces": 5, "dropout": 0.0,
                   "init": "lecun_normal", "input_shape": None}
    shapes = jax.eval_shape(models.build(cfg, (28, 28), 1).init, KEY, jnp.zeros((1, 28, 28)))
    assert shapes["params"]["dense_0"]["kernel"].shape == (784, 1000)
    assert shapes["params"]["dense_2"]["kernel"].shape == (200, 1000)
    assert shapes["params"]["head"]["kernel"].shape == (200, 1)
    model = models.build({**cfg, "hidden": (8,), "pieces": 2, "init": "torch"}, (3, 2), 1)
    x = jnp.ones((2, 3, 2))
    v = model.init(KEY, x)
    kernel, bias = np.asarray(v["params"]["dense_0"]["kernel"]), v["params"]["dense_0"]["bias"]
    assert kernel.shape == (6, 16) and np.abs(kernel).max() <= 1 / np.sqrt(6)
    assert np.abs(bias).max() > 0  # 'torch' draws biases too
    out, state = model.apply(v, x, True, KEY)
    assert out.shape == (2, 1) and np.isfinite(out).all()


@pytest.mark.parametrize("key, value, match", [
    ("pieces", 0, r"'model\.pieces': must be a positive integer"),
    ("pieces", 2.5, r"'model\.pieces'"),
    ("hidden", (10, -1), r"'model\.hidden': must be a list of positive integers"),
    ("dropout", 1.0, r"'model\.dropout': must be in \[0, 1\)"),
    ("init", "zeros", r"'model\.init': must be one of"),
])
def test_maxout_refuses_bad_keys(key, value, match):
    with pytest.raises(ConfigError, match=match) as e:
        build("maxout", (4,), 2, **{key: value})
    assert len(str(e.value).splitlines()) == 1


# --- deconv: the transposed convolution against PyTorch -----------------------------------------------

def torch_weight(kernel):
    """PyTorch's ConvTranspose2d weight [in, out, kh, kw] for Flax's transpose_kernel=True kernel
    [kh, kw, out, in]: a permutation, no flip."""
    import torch
    return torch.tensor(np.asarray(kernel)).permute(3, 2, 0, 1).contiguous()


@pytest.mark.parametrize("kernel", [4, 2, 3, 5])
def test_one_stage_equals_torch_conv_transpose(kernel):
    torch = pytest.importorskip("torch")
    c_in, c_out = 3, 5
    x = np.random.default_rng(0).standard_normal((2, 6, 7, c_in)).astype(np.float32)
    layer = deconv.conv_transpose(c_out, kernel, c_in, "lecun_normal", True, "stage")
    shapes = jax.eval_shape(layer.init, KEY, x)
    rng = np.random.default_rng(1)
    v = jax.tree.map(lambda s: rng.standard_normal(s.shape).astype(np.float32), shapes)
    assert v["params"]["kernel"].shape == (kernel, kernel, c_out, c_in)
    out = np.asarray(layer.apply(v, x))
    assert out.shape == (2, 12, 14, c_out)  # exactly twice the height and width
    # kernel 4: the DCGAN layer ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1)
    ref = torch.nn.ConvTranspose2d(c_in, c_out, kernel, stride=2, padding=(kernel - 1) // 2,
                                   output_padding=kernel % 2)
    with torch.no_grad():
        ref.weight.copy_(torch_weight(v["params"]["kernel"]))
        ref.bias.copy_(torch.tensor(v["params"]["bias"]))
        want = ref(torch.tensor(x).permute(0, 3, 1, 2)).permute(0, 2, 3, 1).numpy()
    np.testing.assert_allclose(out, want, rtol=1e-4, atol=1e-4)


def test_padding_doubles_and_agrees_with_same_for_even_kernels():
    import flax.linen as nn
    x = np.random.default_rng(0).standard_normal((1, 5, 3, 2)).astype(np.float32)
    for k in (2, 3, 4, 5, 6):
        assert sum(deconv.padding(k)) == k
        ours = deconv.conv_transpose(3, k, 2, "lecun_normal", False, "a")
        same = nn.ConvTranspose(3, (k, k), strides=(2, 2), padding="SAME", transpose_kernel=True,
                                use_bias=False)
        v = fake_init(ours, x)
        a, b = np.asarray(ours.apply(v, x)), np.asarray(same.apply(v, x))
        assert a.shape == b.shape == (1, 10, 6, 3)
        if k % 2 == 0:
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


# --- deconv: the whole generator ---------------------------------------------------------------------

@pytest.mark.parametrize("keys, input_shape, num_outputs, image", [
    ({}, (16,), 784, (28, 28, 1)),
    ({}, (4, 4), 1568, (28, 28, 2)),
    ({"start_shape": (4, 4, 16), "channels": (8, 4)}, (10,), 3072, (32, 32, 3)),
    ({"start_shape": (7, 7, 8), "channels": ()}, (5,), 196, (14, 14, 1)),
    ({"start_shape": (2, 3, 4), "channels": (3,), "kernel_size": 3}, (2,), 8 * 12 * 2, (8, 12, 2)),
    ({"start_shape": (1, 1, 6), "channels": (5, 4, 3), "kernel_size": 5, "batch_norm": False},
     (3,), 16 * 16, (16, 16, 1)),
])
def test_deconv_output_shapes(keys, input_shape, num_outputs, image):
    cfg = {**models.defaults("deconv"), **keys}
    assert deconv.output_size(cfg) == image[:2]
    assert deconv.output_shape(cfg, num_outputs) == image
    model = models.build(cfg, input_shape, num_outputs)
    assert model.family is deconv and isinstance(model.module, deconv.Deconv)
    x = jnp.zeros((3, *input_shape))
    v = jax.eval_shape(model.init, KEY, x)
    out = jax.eval_shape(lambda v, x: model.apply(v, x)[0], v, x)
    assert out.shape == (3, num_outputs)
    assert v["params"]["head"]["kernel"].shape[2] == image[2]
    assert ("batch_stats" in v) == cfg["batch_norm"]


def torch_generator(params, stats, start, channels, out_channels, d, batch_norm):
    """The same generator in PyTorch (channels-first) with the weights copied."""
    import torch
    from torch import nn
    h0, w0, c0 = start
    layers = [nn.Linear(d, h0 * w0 * c0, bias=not batch_norm), nn.Unflatten(1, (c0, h0, w0))]
    # Flax's dense outputs are (h, w, c) row-major, PyTorch's unflattened ones (c, h, w)
    kernel = np.asarray(params["dense"]["kernel"]).reshape(d, h0, w0, c0).transpose(3, 1, 2, 0)
    copies = [(layers[0].weight, kernel.reshape(-1, d))]
    if not batch_norm:
        copies.append((layers[0].bias, np.asarray(params["dense"]["bias"]).reshape(h0, w0, c0)
                       .transpose(2, 0, 1).reshape(-1)))

    def norm(c, name):
        if not batch_norm:
            return []
        bn = nn.BatchNorm2d(c, eps=1e-5, momentum=0.1)
        copies.extend([(bn.weight, params[name]["scale"]), (bn.bias, params[name]["bias"]),
                       (bn.running_mean, stats[name]["mean"]), (bn.running_var, stats[name]["var"])])
        return [bn]
    layers += [*norm(c0, "bn_dense"), nn.ReLU()]
    c_in = c0
    for i, c in enumerate(channels):
        conv = nn.ConvTranspose2d(c_in, c, 4, stride=2, padding=1, bias=not batch_norm)
        copies.append((conv.weight, torch_weight(params[f"deconv_{i}"]["kernel"])))
        if not batch_norm:
            copies.append((conv.bias, params[f"deconv_{i}"]["bias"]))
        layers += [conv, *norm(c, f"bn_{i}"), nn.ReLU()]
        c_in = c
    head = nn.ConvTranspose2d(c_in, out_channels, 4, stride=2, padding=1)
    copies += [(head.weight, torch_weight(params["head"]["kernel"])), (head.bias, params["head"]["bias"])]
    net = nn.Sequential(*layers, head)
    with torch.no_grad():
        for target, value in copies:
            target.copy_(torch.as_tensor(np.asarray(value)).reshape(target.shape))
    return net


@pytest.mark.parametrize("batch_norm", [False, True])
def test_deconv_equals_torch_sequential(batch_norm):
    torch = pytest.importorskip("torch")
    start, channels, d, b = (3, 2, 6), (4, 3), 5, 4
    model = build("deconv", (d,), 24 * 16 * 2, start_shape=start, channels=channels,
                  batch_norm=batch_norm)
    x = np.random.default_rng(3).standard_normal((b, d)).astype(np.float32)
    v = fake_init(model, x)
    net = torch_generator(v["params"], v.get("batch_stats"), start, channels, 2, d, batch_norm)

    def torch_out(train):
        net.train(train)
        with torch.no_grad():
            y = net(torch.tensor(x))
        return y.permute(0, 2, 3, 1).reshape(b, -1).numpy()  # [b, H, W, C] flattened
    out, state = model.apply(v, x)
    np.testing.assert_allclose(out, torch_out(False), rtol=1e-4, atol=1e-4)
    if batch_norm:  # training mode: batch statistics, and the running means move as PyTorch's do
        out, state = model.apply(v, x, True, KEY)
        np.testing.assert_allclose(out, torch_out(True), rtol=1e-4, atol=1e-4)
        bns = [m for m in net if isinstance(m, torch.nn.BatchNorm2d)]
        for name, bn in zip(["bn_dense", "bn_0", "bn_1"], bns):
            np.testing.assert_allclose(state["batch_stats"][name]["mean"],
                                       bn.running_mean.numpy(), rtol=1e-4, atol=1e-5)


def test_deconv_batch_statistics_update_in_training_only():
    model = build("deconv", (8,), 2 * 16 * 16, start_shape=(4, 4, 6), channels=(5,))
    x = np.random.default_rng(4).standard_normal((6, 8)).astype(np.float32)
    v = fake_init(model, x)
    before = np_(v["batch_stats"])
    assert set(before) == {"bn_dense", "bn_0"}
    assert before["bn_0"]["mean"].shape == (5,) and before["bn_dense"]["mean"].shape == (6,)
    _, state = model.apply(v, x, False)
    jax.tree.map(np.testing.assert_array_equal, np_(state["batch_stats"]), before)
    _, state = model.apply(v, x, True, KEY)
    after = np_(state["batch_stats"])
    # momentum 0.9 over the dense layer's per-channel batch moments (biased variance)
    z = (x @ np.asarray(v["params"]["dense"]["kernel"])).reshape(6, 4, 4, 6)
    np.testing.assert_allclose(after["bn_dense"]["mean"],
                               0.9 * before["bn_dense"]["mean"] + 0.1 * z.mean((0, 1, 2)),
                               rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(after["bn_dense"]["var"],
                               0.9 * before["bn_dense"]["var"] + 0.1 * z.var((0, 1, 2)),
                               rtol=1e-4, atol=1e-5)
    assert not np.allclose(after["bn_0"]["mean"], before["bn_0"]["mean"])


def test_deconv_builds_and_initialises_through_models_build():
    cfg = models.defaults("deconv")
    assert cfg == {"name": "deconv", "start_shape": (7, 7, 128), "channels": (64,),
                   "kernel_size": 4, "batch_norm": True, "activation": "relu",
                   "init": "lecun_normal", "input_shape": None}
    assert deconv.output_size(cfg) == (28, 28) and deconv.output_size({}) == (28, 28)
    shapes = jax.eval_shape(models.build(cfg, (100,), 784).init, KEY, jnp.zeros((1, 100)))
    p = shapes["params"]
    assert p["dense"]["kernel"].shape == (100, 7 * 7 * 128) and "bias" not in p["dense"]
    assert p["deconv_0"]["kernel"].shape == (4, 4, 64, 128) and "bias" not in p["deconv_0"]
    assert p["head"]["kernel"].shape == (4, 4, 1, 64) and p["head"]["bias"].shape == (1,)
    model = models.build({**cfg, "start_shape": (2, 2, 8), "channels": (4,), "init": "torch",
                          "activation": "leaky_relu"}, (3,), 8 * 8 * 3)
    x = jnp.ones((2, 3))
    v = model.init(KEY, x)
    kernel, bias = np.asarray(v["params"]["head"]["kernel"]), np.asarray(v["params"]["head"]["bias"])
    bound = 1 / np.sqrt(3 * 4 * 4)  # PyTorch's ConvTranspose2d default: fan_in = out * kh * kw
    assert np.abs(kernel).max() <= bound and np.abs(bias).max() <= bound and np.abs(bias).max() > 0
    out, state = model.apply(v, x, True, KEY)
    assert out.shape == (2, 192) and np.isfinite(out).all() and set(state) == {"batch_stats"}


def test_deconv_refuses_outputs_that_are_not_images_of_its_size():
    for n in (64, 0, 784 + 1):
        with pytest.raises(ConfigError) as e:
            build("deconv", (10,), n)
        msg = str(e.value)
        assert len(msg.splitlines()) == 1
        assert "'model.start_shape'" in msg and "28x28" in msg and "784" in msg
        assert f"got {n}" in msg
    with pytest.raises(ConfigError, match=r"makes 16x16 images \(4x4 doubled 2 times\).*got 784"):
        build("deconv", (10,), 784, start_shape=(4, 4, 8))
    with pytest.raises(ConfigError, match=r"makes 56x56 images"):
        deconv.output_shape({"channels": (64, 32)}, 784)


@pytest.mark.parametrize("key, value, match", [
    ("start_shape", (), r"'model\.start_shape': must be \[height, width, channels\]"),
    ("start_shape", (7, -7, 128), r"'model\.start_shape': must be"),
    ("start_shape", (7, 7), r"'model\.start_shape': must be"),
    ("start_shape", "7x7", r"'model\.start_shape': must be"),
    ("channels", (64, 0), r"'model\.channels': must be a list of positive integers"),
    ("channels", 64, r"'model\.channels'"),
    ("kernel_size", 1, r"'model\.kernel_size': must be an integer >= 2"),
    ("kernel_size", "4", r"'model\.kernel_size'"),
    ("batch_norm", "yes", r"'model\.batch_norm'"),
    ("activation", "swish", r"'model\.activation': must be one of"),
    ("init", "zeros", r"'model\.init': must be one of"),
])
def test_deconv_refuses_bad_keys(key, value, match):
    with pytest.raises(ConfigError, match=match) as e:
        build("deconv", (10,), 784, **{key: value})
    assert len(str(e.value).splitlines()) == 1
    if key in ("start_shape", "channels"):
        with pytest.raises(ConfigError, match=match):
            deconv.output_size({key: value})
