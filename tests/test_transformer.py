"""dlcore.models.transformer and .gpt: attention against softmax(QK^T/sqrt(d))V written out (masks
included), a block against PyTorch with copied weights, rotary positions, the KV cache against the
full forward pass, the encoder's permutation invariance and padding, bfloat16, logical axis
names, and the errors for impossible shapes.

Models are tiny and most comparisons run eagerly or through one jitted function per shape."""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dlcore import models
from dlcore.config import ConfigError
from dlcore.models import gpt, transformer
from dlcore.models.transformer import Block, SelfAttention, attention_mask, reference_attention

B, T, H, D = 2, 7, 3, 4
W = H * D


def qkv(seed=0, t=T, s=T):
    ks = jax.random.split(jax.random.key(seed), 3)
    return (jax.random.normal(ks[0], (B, t, H, D)), jax.random.normal(ks[1], (B, s, H, D)),
            jax.random.normal(ks[2], (B, s, H, D)))


def dense_attention(q, k, v, allowed):
    """float64 numpy, one query row at a time: softmax over the allowed keys only."""
    q, k, v = (np.asarray(a, np.float64) for a in (q, k, v))
    out = np.zeros_like(q)
    for b in range(q.shape[0]):
        for h in range(q.shape[2]):
            for t in range(q.shape[1]):
                keys = np.nonzero(allowed[b, t])[0]
                s = k[b, keys, h] @ q[b, t, h] / math.sqrt(q.shape[-1])
                p = np.exp(s - s.max())
                out[b, t, h] = (p / p.sum()) @ v[b, keys, h]
    return out


# --- attention --------------------------------------------------------------------------------------

@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("padded", [False, True])
def test_attention_matches_written_out_softmax(causal, padded):
    q, k, v = qkv()
    valid = np.ones((B, T), bool)
    if padded:
        valid[0, 5:] = False
        valid[1, 3:] = False
    pos = jnp.arange(T)
    mask = attention_mask(pos, pos, causal, jnp.asarray(valid) if padded else None)
    allowed = np.broadcast_to(np.asarray(mask)[:, 0], (B, T, T))
    want = dense_attention(q, k, v, allowed)
    np.testing.assert_allclose(reference_attention(q, k, v, mask), want, atol=1e-5)
    fused = jax.nn.dot_product_attention(q, k, v, mask=mask)
    np.testing.assert_allclose(fused, want, atol=1e-5)
    if causal and not padded:
        np.testing.assert_allclose(jax.nn.dot_product_attention(q, k, v, is_causal=True), want,
                                   atol=1e-5)


def test_attention_weights_are_a_distribution_over_allowed_keys():
    q, k, v = qkv(1)
    pos = jnp.arange(T)
    _, w = reference_attention(q, k, v, attention_mask(pos, pos, True), return_weights=True)
    np.testing.assert_allclose(w.sum(-1), 1.0, atol=1e-6)
    assert float(jnp.abs(jnp.triu(w, 1)).max()) == 0.0  # nothing from the future


def test_self_attention_module_is_the_written_out_computation():
    x = jax.random.normal(jax.random.key(2), (B, T, W))
    mod = SelfAttention(heads=H, causal=True)
    variables = mod.init(jax.random.key(0), x, jnp.arange(T))
    import flax.linen as nn
    p = jax.tree.map(np.asarray, nn.meta.unbox(variables)["params"])
    qkv_ = np.einsum("bte,ekhd->kbthd", np.asarray(x), p["qkv_kernel"]) + p["qkv_bias"][:, None, None]
    allowed = np.broadcast_to(np.tril(np.ones((T, T), bool)), (B, T, T))
    y = dense_attention(qkv_[0], qkv_[1], qkv_[2], allowed)
    want = np.einsum("bthd,hde->bte", y, p["proj_kernel"]) + p["proj_bias"]
    got = mod.apply(nn.meta.unbox(variables), x, jnp.arange(T))
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_rotary_scores_depend_only_on_relative_position():
    q, k, _ = qkv(3, 1, 1)

    def score(pq, pk):
        return float(jnp.sum(transformer.rotary(q, jnp.array([pq]))
                             * transformer.rotary(k, jnp.array([pk]))))
    assert score(5, 2) == pytest.approx(score(13, 10), rel=1e-4)
    assert score(5, 2) != pytest.approx(score(5, 4), rel=1e-3)
    np.testing.assert_allclose(transformer.rotary(q, jnp.array([0])), q, atol=1e-6)  # angle 0


# --- against PyTorch -----------------------------------------------------------------------------------

def test_block_matches_pytorch_multihead_attention_with_copied_weights():
    torch = pytest.importorskip("torch")
    import flax.linen as nn
    x = jax.random.normal(jax.random.key(4), (B, T, W))
    block = Block(heads=H, causal=True, layers=2)
    p = jax.tree.map(np.asarray, nn.meta.unbox(block.init(jax.random.key(0), x, jnp.arange(T))))
    p = jax.tree.map(lambda a: a + 0.1 * np.random.default_rng(0).normal(size=a.shape), p)
    pp = p["params"]
    t = lambda a: torch.tensor(np.asarray(a, np.float32))
    ln1, ln2 = torch.nn.LayerNorm(W), torch.nn.LayerNorm(W)
    mha = torch.nn.MultiheadAttention(W, H, bias=True, batch_first=True)
    fc, proj = torch.nn.Linear(W, 4 * W), torch.nn.Linear(4 * W, W)
    a = pp["attn"]
    with torch.no_grad():
        for ln, name in ((ln1, "ln_1"), (ln2, "ln_2")):
            ln.weight.copy_(t(pp[name]["scale"]))
            ln.bias.copy_(t(pp[name]["bias"]))
        # ours: qkv_kernel [W, 3, H, D] (column h*D + d of each of q, k, v); torch: rows of W^T
        mha.in_proj_weight.copy_(t(a["qkv_kernel"].reshape(W, 3 * W).T))
        mha.in_proj_bias.copy_(t(a["qkv_bias"].reshape(3 * W)))
        mha.out_proj.weight.copy_(t(a["proj_kernel"].reshape(W, W).T))
        mha.out_proj.bias.copy_(t(a["proj_bias"]))
        fc.weight.copy_(t(pp["mlp"]["fc_kernel"].T))
        fc.bias.copy_(t(pp["mlp"]["fc_bias"]))
        proj.weight.copy_(t(pp["mlp"]["proj_kernel"].T))
        proj.bias.copy_(t(pp["mlp"]["proj_bias"]))
        xt = t(x)
        causal = torch.triu(torch.ones(T, T, dtype=torch.bool), 1)  # True: may NOT attend
        h = ln1(xt)
        y = xt + mha(h, h, h, attn_mask=causal, need_weights=False)[0]
        want = (y + proj(torch.nn.functional.gelu(fc(ln2(y))))).numpy()
    got = block.apply(p, x, jnp.arange(T))
    np.testing.assert_allclose(got, want, atol=2e-5)


# --- GPT ---------------------------------------------------------------------------------------------------

def tiny_gpt(**kw):
    cfg = {"name": "gpt", **gpt.defaults(), "layers": 2, "heads": 2, "width": 16, **kw}
    model = models.build(cfg, (12,), 11, jnp.int32)
    variables = model.init(jax.random.key(0), jnp.zeros((1, 12), jnp.int32))
    return model, variables


@pytest.mark.parametrize("positions", ["learned", "rotary"])
def test_kv_cache_gives_the_full_forward_logits(positions):
    model, variables = tiny_gpt(positions=positions, bias=False)
    tokens = jax.random.randint(jax.random.key(1), (3, 12), 0, 11)
    full, _ = model.apply(variables, tokens)
    cache = gpt.init_cache(model.module, 3)
    parts = []
    for lo, hi in ((0, 5), (5, 6), (6, 7), (7, 12)):  # a prefill, single tokens, a chunk
        logits, cache = model.module.apply(variables, tokens[:, lo:hi], cache=cache)
        parts.append(logits)
    np.testing.assert_allclose(jnp.concatenate(parts, 1), full, atol=1e-5)
    assert int(cache["index"]) == 12


def test_gpt_is_causal_and_ties_its_embedding():
    model, variables = tiny_gpt()
    a = jnp.array([[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 0, 1]])
    b = a.at[0, 8:].set(3)
    la, lb = model.apply(variables, a)[0], model.apply(variables, b)[0]
    np.testing.assert_allclose(la[0, :8], lb[0, :8], atol=1e-6)  # the future changes nothing
    assert "head" not in variables["params"]
    untied = tiny_gpt(tie_embeddings=False)[1]["params"]
    assert untied["head"].shape == (11, 16)
    n = gpt.parameter_count(variables["params"])
    block = 2 * 32 + 16 * 48 + 48 + 16 * 16 + 16 + 16 * 64 + 64 + 64 * 16 + 16  # LNs, attn, MLP
    assert n == 11 * 16 + 12 * 16 + 2 * block + 32


def test_gpt_initialisation_follows_gpt2():
    _, variables = tiny_gpt(layers=4, width=64, heads=4)
    p = variables["params"]
    assert float(jnp.std(p["token_embedding"])) == pytest.approx(0.02, rel=0.15)
    assert float(jnp.std(p["block_0"]["mlp"]["proj_kernel"])) == pytest.approx(
        0.02 / math.sqrt(8), rel=0.15)
    assert float(jnp.abs(p["block_0"]["attn"]["qkv_bias"]).max()) == 0.0


def test_bfloat16_computes_in_bfloat16_and_keeps_float32_parameters():
    model32, variables = tiny_gpt()
    model16, variables16 = tiny_gpt(dtype="bfloat16")
    assert all(a.dtype == jnp.float32 for a in jax.tree.leaves(variables16))
    tokens = jax.random.randint(jax.random.key(1), (2, 12), 0, 11)
    l32, l16 = model32.apply(variables, tokens)[0], model16.apply(variables, tokens)[0]
    assert l16.dtype == jnp.float32
    assert float(jnp.abs(l16 - l32).max()) < 0.05
    assert float(jnp.abs(l16 - l32).max()) > 0  # it did compute in lower precision


def test_every_parameter_has_logical_axis_names():
    model, _ = tiny_gpt()
    axes = models.logical_axes(model, jnp.zeros((1, 12), jnp.int32))
    named = jax.tree.leaves(axes, is_leaf=lambda x: isinstance(x, jax.sharding.PartitionSpec))
    assert all(len(s) > 0 for s in named)
    assert tuple(axes["block_0"]["attn"]["qkv_kernel"]) == ("embed", None, "heads", "kv")
    assert tuple(axes["block_0"]["mlp"]["fc_kernel"]) == ("embed", "mlp")
    assert tuple(axes["token_embedding"]) == ("vocab", "embed")


@pytest.mark.parametrize("change, words", [
    ({"heads": 5}, "5 heads do not divide the width 16"),
    ({"vocab_size": 12}, "does not match the data's vocabulary of 11"),
    ({"block_size": 8}, "longer than the model's block_size 8"),
    ({"positions": "sinusoidal"}, "model.positions"),
    ({"dropout": 1.0}, "model.dropout"),
    ({"heads": 16, "positions": "rotary"}, "must be even"),
])
def test_impossible_shapes_are_refused_before_anything_compiles(change, words):
    with pytest.raises(ConfigError, match=words):
        tiny_gpt(**change)


# --- the encoder -------------------------------------------------------------------------------------

def encoder(**kw):
    cfg = {"name": "transformer", **transformer.defaults(), "layers": 2, "heads": 2, "width": 16, **kw}
    model = models.build(cfg, (10,), 4)
    return model, model.init(jax.random.key(0), jnp.zeros((1, 10)))


@pytest.mark.parametrize("readout", ["mean", "cls"])
def test_encoder_without_positions_is_permutation_invariant(readout):
    x = jax.random.normal(jax.random.key(5), (3, 10))
    perm = np.random.default_rng(0).permutation(10)
    model, variables = encoder(positions="none", readout=readout)
    np.testing.assert_allclose(model.apply(variables, x)[0], model.apply(variables, x[:, perm])[0],
                               atol=1e-5)
    model, variables = encoder(positions="learned", readout=readout)
    assert float(jnp.abs(model.apply(variables, x)[0]
                         - model.apply(variables, x[:, perm])[0]).max()) > 1e-4


def test_encoder_padding_is_never_seen():
    model, variables = encoder(positions="learned")
    x = jax.random.normal(jax.random.key(6), (1, 10))
    valid = jnp.arange(10)[None] < 6
    garbage = x.at[0, 6:].set(100.0)
    a = model.module.apply(variables, x, key_valid=valid)
    b = model.module.apply(variables, garbage, key_valid=valid)
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_encoder_takes_token_ids_and_feature_vectors():
    model = models.build({"name": "transformer", **transformer.defaults(), "vocab_size": 7, "width": 16, "heads": 2},
                         (5,), 3)
    v = model.init(jax.random.key(0), jnp.zeros((1, 5)))
    assert model.apply(v, jnp.array([[1, 2, 3, 4, 6]]))[0].shape == (1, 3)
    model = models.build({"name": "transformer", **transformer.defaults(), "width": 16, "heads": 2}, (5, 3), 2)
    v = model.init(jax.random.key(0), jnp.zeros((1, 5, 3)))
    assert model.apply(v, jnp.ones((4, 5, 3)))[0].shape == (4, 2)
    with pytest.raises(ConfigError, match="sequences"):
        models.build({"name": "transformer", **transformer.defaults()}, (2, 3, 4), 2)


# --- the hand-differentiated pieces --------------------------------------------------------------

def test_matmul_and_layer_norm_gradients_equal_autodiff_of_the_plain_formulas():
    x = jax.random.normal(jax.random.key(7), (2, 5, 6))
    w = jax.random.normal(jax.random.key(8), (6, 4))
    scale, bias = (jax.random.normal(k, (6,)) for k in jax.random.split(jax.random.key(9)))
    plain_ln = lambda x, s, b: ((x - x.mean(-1, keepdims=True))
                                / jnp.sqrt(x.var(-1, keepdims=True) + 1e-5) * s + b)
    for mine, plain, args in ((transformer.matmul, lambda x, w: x @ w, (x, w)),
                              (transformer.layer_norm, plain_ln, (x, scale, bias))):
        np.testing.assert_allclose(mine(*args), plain(*args), atol=1e-5)
        loss = lambda f: (lambda *a: jnp.sum(jnp.sin(f(*a))))
        argnums = tuple(range(len(args)))
        for got, want in zip(jax.grad(loss(mine), argnums)(*args),
                             jax.grad(loss(plain), argnums)(*args)):
            np.testing.assert_allclose(got, want, atol=1e-5)
    # second order, as MAML differentiates through an inner step
    inner = lambda f: (lambda w: jnp.sum(jax.grad(lambda x: jnp.sum(jnp.sin(f(x, w))))(x) ** 2))
    np.testing.assert_allclose(jax.grad(inner(transformer.matmul))(w),
                               jax.grad(inner(lambda x, w: x @ w))(w), rtol=1e-4, atol=1e-5)
