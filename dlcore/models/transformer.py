"""Transformers (Flax Linen): multi-head self-attention, pre-LayerNorm blocks and an encoder
classifier (`model.name: transformer`; the decoder-only GPT is dlcore.models.gpt, built of the same
blocks).

Attention is `jax.nn.dot_product_attention` (cuDNN's fused kernel on a GPU, XLA's elsewhere) with
[batch, length, heads, head_dim] operands; `reference_attention` is the same function written out
as softmax(Q K^T / sqrt(d)) V, which the tests compare against and which gives the attention
weights for pictures. Every parameter carries logical axis names (`nn.with_logical_partitioning`):
'embed' (the residual width), 'heads', 'kv' (head_dim), 'mlp', 'vocab', 'positions';
dlcore.parallel maps them onto a mesh (data parallel, FSDP, tensor parallel) and `models.build`
unboxes them, so the parameters an algorithm sees are plain arrays.

A block (pre-LayerNorm, GPT-2 / nanoGPT):  x + Drop(Proj(Attn(LN(x))));  x + Drop(MLP(LN(x))).
"""
from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from dlcore.config import check, one_of

POSITIONS = ("learned", "rotary", "none")
READOUTS = ("cls", "mean")
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


# --- attention as functions ---------------------------------------------------------------------------

def reference_attention(q, k, v, mask=None, return_weights: bool = False):
    """softmax(q k^T / sqrt(d) + log mask) v, written out. q: [b, T, h, d]; k, v: [b, S, h, d];
    mask: bool, broadcastable to [b, h, T, S] (True: may attend). -> [b, T, h, d] (and the weights
    [b, h, T, S] in float32 when asked)."""
    scores = jnp.einsum("bthd,bshd->bhts", q, k).astype(jnp.float32) / math.sqrt(q.shape[-1])
    if mask is not None:
        scores = jnp.where(mask, scores, jnp.finfo(jnp.float32).min)
    weights = jax.nn.softmax(scores, axis=-1)
    out = jnp.einsum("bhts,bshd->bthd", weights.astype(v.dtype), v)
    return (out, weights) if return_weights else out


def attention_mask(query_positions, key_positions, causal: bool, key_valid=None):
    """The bool mask [b or 1, 1, T, S] of which keys each query may see: every key (not causal) or
    keys at or before the query's position (causal), and only valid keys (key_valid [b, S])."""
    mask = jnp.ones((1, 1, query_positions.shape[-1], key_positions.shape[-1]), bool)
    if causal:
        mask = mask & (key_positions[None, :] <= query_positions[:, None])[None, None]
    if key_valid is not None:
        mask = mask & key_valid[:, None, None, :].astype(bool)
    return mask


def rotary(x, positions, base: float = 10000.0):
    """Rotary position embedding (Su et al. 2021) in the half-split form of GPT-NeoX / LLaMA:
    x [b, T, h, d] (d even), positions [T] -> x rotated by angle position * base^(-2i/d) in the
    planes (x_i, x_{i+d/2})."""
    d = x.shape[-1]
    freqs = base ** (-jnp.arange(0, d // 2, dtype=jnp.float32) * 2 / d)
    angles = positions.astype(jnp.float32)[:, None] * freqs[None, :]      # [T, d/2]
    cos, sin = (jnp.concatenate([f, f], -1)[None, :, None, :] for f in (jnp.cos(angles),
                                                                         jnp.sin(angles)))
    x1, x2 = jnp.split(x.astype(jnp.float32), 2, axis=-1)
    rotated = jnp.concatenate([-x2, x1], axis=-1)
    return (x.astype(jnp.float32) * cos + rotated * sin).astype(x.dtype)


@jax.custom_vjp
def matmul(x, w):
    """x [..., i] @ w [i, o] -> [..., o], differentiated by hand: the forward pass keeps x
    transposed ([i, n]) for the weight gradient dW = x^T g. Measured on a 2-core CPU
    (benchmarks/gpt_speed.py --variants): XLA's own gradient transposed each output gradient in a
    fusion that recomputed the residual stream's gradient sums; this made the GPT step 1.4x
    faster."""
    return x @ w


def _matmul_fwd(x, w):
    return x @ w, (jnp.swapaxes(x.reshape(-1, x.shape[-1]), 0, 1), w)


def _matmul_bwd(saved, g):
    xt, w = saved
    return g @ w.T, (xt @ g.reshape(-1, g.shape[-1])).astype(w.dtype)


matmul.defvjp(_matmul_fwd, _matmul_bwd)


@jax.custom_vjp
def layer_norm(x, scale, bias):
    """(x - mean) / sqrt(var + 1e-5) * scale + bias over the last axis, statistics in float32,
    with the textbook backward written out (XLA's was as slow as the matmuls' above)."""
    return _layer_norm_fwd(x, scale, bias)[0]


def _layer_norm_fwd(x, scale, bias):
    x32 = x.astype(jnp.float32)
    mean = x32.mean(-1, keepdims=True)
    rstd = jax.lax.rsqrt(jnp.square(x32 - mean).mean(-1, keepdims=True) + 1e-5)
    xhat = (x32 - mean) * rstd
    return (xhat * scale + bias).astype(x.dtype), (xhat, rstd, scale, jnp.zeros((), x.dtype))


def _layer_norm_bwd(saved, g):
    xhat, rstd, scale, like = saved  # like: a scalar of x's dtype
    g = g.astype(jnp.float32)
    lead = tuple(range(g.ndim - 1))
    dxhat = g * scale
    dx = rstd * (dxhat - dxhat.mean(-1, keepdims=True)
                 - xhat * (dxhat * xhat).mean(-1, keepdims=True))
    return dx.astype(like.dtype), jnp.sum(g * xhat, lead), jnp.sum(g, lead)


layer_norm.defvjp(lambda x, s, b: _layer_norm_fwd(x, s, b), _layer_norm_bwd)


# --- modules -------------------------------------------------------------------------------------------

def _init(std: float, axes: tuple):
    return nn.with_logical_partitioning(nn.initializers.normal(std), axes)


def _zeros(axes: tuple):
    return nn.with_logical_partitioning(nn.initializers.zeros, axes)


class LayerNorm(nn.Module):
    """LayerNorm over the last axis, optionally without a bias (nanoGPT's bias=False); statistics
    in float32 whatever the compute dtype."""
    bias: bool = True

    @nn.compact
    def __call__(self, x):
        w = x.shape[-1]
        scale = self.param("scale", nn.with_logical_partitioning(nn.initializers.ones, ("embed",)),
                           (w,))
        bias = self.param("bias", _zeros(("embed",)), (w,)) if self.bias else jnp.zeros((w,))
        return layer_norm(x, scale, bias)


class SelfAttention(nn.Module):
    """Multi-head self-attention: x [b, T, width] -> [b, T, width].

    positions: [T] absolute positions of x's tokens (rotary uses them; with a cache they start at
    the cache's index). key_valid: [b, T] bool, False at padding. cache: (k, v) [b, S, h, d] with
    the keys and values of the positions before `positions[0]`; the new ones are written at
    positions and (out, new cache) is returned. With the 'intermediates' collection mutable the
    weights are computed as written out and recorded ('attention': [b, h, T, S])."""
    heads: int
    causal: bool
    bias: bool = True
    dropout: float = 0.0
    rotary: bool = False
    out_std: float = 0.02
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x, positions, train: bool = False, key_valid=None, cache=None):
        b, t, width = x.shape
        h, d = self.heads, width // self.heads
        qkv_kernel = self.param("qkv_kernel", _init(0.02, ("embed", None, "heads", "kv")),
                                (width, 3, h, d))
        qkv = matmul(x, qkv_kernel.astype(self.dtype).reshape(width, 3 * h * d))
        qkv = jnp.moveaxis(qkv.reshape(b, t, 3, h, d), 2, 0)            # [3, b, T, h, d]
        if self.bias:
            qkv = qkv + self.param("qkv_bias", _zeros((None, "heads", "kv")),
                                   (3, h, d)).astype(self.dtype)[:, None, None]
        q, k, v = qkv[0], qkv[1], qkv[2]
        if self.rotary:
            q, k = rotary(q, positions), rotary(k, positions)
        key_positions = positions
        if cache is not None:  # write this call's keys and values at their positions
            k_all, v_all = (jax.lax.dynamic_update_slice_in_dim(c, new.astype(c.dtype),
                                                                positions[0], axis=1)
                            for c, new in ((cache[0], k), (cache[1], v)))
            cache, k, v = (k_all, v_all), k_all.astype(self.dtype), v_all.astype(self.dtype)
            key_positions = jnp.arange(k.shape[1])
            # keys past this call's last position are not written yet: the causal mask hides them
        mask = attention_mask(positions, key_positions, self.causal, key_valid)
        drop = train and self.dropout > 0
        if self.is_mutable_collection("intermediates") or drop:
            y, weights = reference_attention(q, k, v, mask, return_weights=True)
            self.sow("intermediates", "attention", weights)
            if drop:  # attention dropout needs the weights, which the fused kernel never forms
                weights = nn.Dropout(self.dropout)(weights, deterministic=False)
                y = jnp.einsum("bhts,bshd->bthd", weights.astype(v.dtype), v)
        elif cache is None and self.causal and key_valid is None:
            y = jax.nn.dot_product_attention(q, k, v, is_causal=True)
        else:
            y = jax.nn.dot_product_attention(q, k, v, mask=mask)
        proj = self.param("proj_kernel", _init(self.out_std, ("heads", "kv", "embed")), (h, d, width))
        y = matmul(y.reshape(b, t, h * d), proj.astype(self.dtype).reshape(h * d, width))
        if self.bias:
            y = y + self.param("proj_bias", _zeros(("embed",)), (width,)).astype(self.dtype)
        return (y, cache) if cache is not None else y


class MLP(nn.Module):
    """x [b, T, width] -> Dense(mlp_ratio * width), GELU, Dense(width)."""
    ratio: int = 4
    bias: bool = True
    out_std: float = 0.02
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        width = x.shape[-1]
        hidden = self.ratio * width
        w1 = self.param("fc_kernel", _init(0.02, ("embed", "mlp")), (width, hidden))
        y = matmul(x, w1.astype(self.dtype))
        if self.bias:
            y = y + self.param("fc_bias", _zeros(("mlp",)), (hidden,)).astype(self.dtype)
        y = nn.gelu(y, approximate=False)  # exact, as torch.nn.GELU() in nanoGPT
        w2 = self.param("proj_kernel", _init(self.out_std, ("mlp", "embed")), (hidden, width))
        y = matmul(y, w2.astype(self.dtype))
        if self.bias:
            y = y + self.param("proj_bias", _zeros(("embed",)), (width,)).astype(self.dtype)
        return y


class Block(nn.Module):
    """Pre-LayerNorm block: x [b, T, width] -> [b, T, width] (and the new cache when given one).
    Residual projections are initialised with std 0.02 / sqrt(2 * layers) (GPT-2)."""
    heads: int
    causal: bool
    layers: int
    mlp_ratio: int = 4
    bias: bool = True
    dropout: float = 0.0
    rotary: bool = False
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x, positions, train: bool = False, key_valid=None, cache=None):
        out_std = 0.02 / math.sqrt(2 * self.layers)
        drop = nn.Dropout(self.dropout, deterministic=not train)
        attn = SelfAttention(self.heads, self.causal, self.bias, self.dropout, self.rotary,
                             out_std, self.dtype, name="attn")(
            LayerNorm(self.bias, name="ln_1")(x), positions, train, key_valid, cache)
        if cache is not None:
            attn, cache = attn
        x = x + drop(attn)
        x = x + drop(MLP(self.mlp_ratio, self.bias, out_std, self.dtype, name="mlp")(
            LayerNorm(self.bias, name="ln_2")(x)))
        return (x, cache) if cache is not None else x


# --- the encoder classifier -------------------------------------------------------------------------

class Encoder(nn.Module):
    """A bidirectional Transformer encoder with a classification head.

    x: [b, T] scalars (each a token of one feature, as MNIST-1D's 40 samples), [b, T, F] feature
    vectors, or [b, T] integer tokens when vocab_size is set; key_valid: optional [b, T] bool
    (False at padding: never attended to, left out of the mean). -> logits [b, num_outputs].

    positions: learned (an embedding per position up to max_len), rotary (in every attention) or
    none: without positions and with the mean readout the encoder is permutation invariant.
    readout: cls (a learned token prepended; its final state is read) or mean (over valid tokens).
    """
    num_outputs: int
    max_len: int
    layers: int = 2
    heads: int = 4
    width: int = 64
    mlp_ratio: int = 4
    dropout: float = 0.0
    bias: bool = True
    positions: str = "learned"
    readout: str = "mean"
    vocab_size: int | None = None
    dtype: str = "float32"

    @nn.compact
    def __call__(self, x, train: bool = False, key_valid=None):
        dtype = DTYPES[self.dtype]
        if self.vocab_size is not None:
            h = nn.Embed(self.vocab_size, self.width, embedding_init=_init(0.02, ("vocab", "embed")),
                         name="embed")(x.astype(jnp.int32))
        else:
            feats = x[..., None] if x.ndim == 2 else x
            w = self.param("embed_kernel", _init(0.02, (None, "embed")), (feats.shape[-1], self.width))
            h = feats.astype(jnp.float32) @ w + self.param("embed_bias", _zeros(("embed",)),
                                                           (self.width,))
        b, t = h.shape[:2]
        if self.positions == "learned":
            h = h + self.param("pos_embedding", _init(0.02, ("positions", "embed")),
                               (self.max_len, self.width))[:t]
        if self.readout == "cls":
            cls = self.param("cls", _init(0.02, (None, "embed")), (1, self.width))
            h = jnp.concatenate([jnp.broadcast_to(cls, (b, 1, self.width)), h], axis=1)
            if key_valid is not None:
                key_valid = jnp.concatenate([jnp.ones((b, 1), bool), key_valid.astype(bool)], 1)
        h = nn.Dropout(self.dropout, deterministic=not train)(h).astype(dtype)
        positions = jnp.arange(h.shape[1])
        for i in range(self.layers):
            h = Block(self.heads, False, self.layers, self.mlp_ratio, self.bias, self.dropout,
                      self.positions == "rotary", dtype, name=f"block_{i}")(
                h, positions, train, key_valid)
        h = LayerNorm(self.bias, name="ln_f")(h).astype(jnp.float32)
        if self.readout == "cls":
            pooled = h[:, 0]
        elif key_valid is None:
            pooled = h.mean(axis=1)
        else:
            valid = key_valid.astype(jnp.float32)[..., None]
            pooled = (h * valid).sum(1) / jnp.maximum(valid.sum(1), 1.0)
        w = self.param("head_kernel", _init(0.02, ("embed", "vocab")), (self.width, self.num_outputs))
        return pooled @ w + self.param("head_bias", _zeros(("vocab",)), (self.num_outputs,))


# --- the family ------------------------------------------------------------------------------------------

def check_shape(cfg: dict) -> None:
    """ConfigError for sizes no Transformer can have (before anything is traced)."""
    for key in ("layers", "heads", "width", "mlp_ratio"):
        v = cfg[key]
        check(type(v) is int and 0 < v < 2**20, f"model.{key}", f"must be a positive integer; got {v!r}")
    check(cfg["width"] % cfg["heads"] == 0, "model.heads",
          f"{cfg['heads']} heads do not divide the width {cfg['width']} (model.width); each head "
          "gets width / heads dimensions")
    d = cfg["width"] // cfg["heads"]
    if cfg["positions"] == "rotary":
        check(d % 2 == 0, "model.positions", f"rotary positions rotate pairs of dimensions: the "
              f"head dimension width / heads = {d} must be even")
    one_of(cfg["positions"], "model.positions", POSITIONS)
    one_of(cfg["dtype"], "model.dtype", DTYPES)
    p = cfg["dropout"]
    check(isinstance(p, (int, float)) and not isinstance(p, bool) and 0 <= p < 1, "model.dropout",
          f"must be a probability in [0, 1); got {p!r}")
    check(isinstance(cfg["bias"], bool), "model.bias", f"must be true or false; got {cfg['bias']!r}")


def defaults() -> dict:
    """The `model` section of the encoder (`model.name: transformer`)."""
    return {"layers": 2, "heads": 4, "width": 64, "mlp_ratio": 4, "dropout": 0.0, "bias": True,
            "positions": "learned", "readout": "mean", "vocab_size": None, "dtype": "float32"}


def build(cfg: dict, input_shape: tuple, num_outputs: int) -> Encoder:
    """The encoder for examples of `input_shape` ([T], or [T, F]) and `num_outputs` classes."""
    cfg = {**defaults(), **cfg}
    check_shape(cfg)
    one_of(cfg["readout"], "model.readout", READOUTS)
    check(len(input_shape) in (1, 2), "model.name", f"a Transformer encoder takes sequences [T] or "
          f"[T, features]; the data gives examples of shape {tuple(input_shape)}")
    vocab = cfg["vocab_size"]
    check(vocab is None or (type(vocab) is int and vocab > 0), "model.vocab_size",
          f"must be a positive integer (inputs are token ids) or None (inputs are numbers); got {vocab!r}")
    return Encoder(num_outputs=num_outputs, max_len=int(input_shape[0]),
                   **{k: cfg[k] for k in defaults()})
