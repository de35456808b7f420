"""A decoder-only Transformer language model, GPT-2 / nanoGPT style (`model.name: gpt`).

    logits = GPT(...).apply(variables, tokens)                   # [b, T] int -> [b, T, vocab]
    logits, cache = GPT(...).apply(variables, tokens, cache=c)   # decoding with a KV cache

Token embedding (+ learned positions, or rotary ones in every attention), `layers` pre-LayerNorm
causal blocks (dlcore.models.transformer), a final LayerNorm, and the output head: the token
embedding itself (tied, as GPT-2) or its own matrix. Initialisation is GPT-2's: normal(0, 0.02),
residual projections 0.02 / sqrt(2 * layers). `dtype: bfloat16` computes in bfloat16 while the
parameters (and so the optimizer state) stay float32; the logits come back in float32.

A KV cache (`init_cache`) holds every layer's keys and values for up to block_size positions and
the index of the next one; a call with a cache writes the keys and values of its tokens there and
attends to everything before, so prefilling a prompt and then decoding one token at a time gives
the logits of a full forward pass.
"""
from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from dlcore.config import ConfigError, check
from dlcore.models.transformer import DTYPES, Block, LayerNorm, _init, check_shape, matmul


class GPT(nn.Module):
    """tokens [b, T] int32 (T <= block_size) -> logits [b, T, vocab_size] float32."""
    vocab_size: int
    block_size: int
    layers: int = 4
    heads: int = 4
    width: int = 128
    mlp_ratio: int = 4
    dropout: float = 0.0
    bias: bool = True
    positions: str = "learned"
    tie_embeddings: bool = True
    dtype: str = "float32"

    @nn.compact
    def __call__(self, tokens, train: bool = False, cache: dict | None = None):
        dtype = DTYPES[self.dtype]
        tokens = tokens.astype(jnp.int32)
        t = tokens.shape[1]
        start = cache["index"] if cache is not None else 0
        positions = start + jnp.arange(t)
        wte = self.param("token_embedding", _init(0.02, ("vocab", "embed")),
                         (self.vocab_size, self.width))
        x = jnp.take(wte, tokens, axis=0)
        if self.positions == "learned":
            wpe = self.param("pos_embedding", _init(0.02, ("positions", "embed")),
                             (self.block_size, self.width))
            x = x + jax.lax.dynamic_slice_in_dim(wpe, start, t, axis=0)
        x = nn.Dropout(self.dropout, deterministic=not train)(x).astype(dtype)
        new_layers = []
        for i in range(self.layers):
            block = Block(self.heads, True, self.layers, self.mlp_ratio, self.bias, self.dropout,
                          self.positions == "rotary", dtype, name=f"block_{i}")
            if cache is None:
                x = block(x, positions, train)
            else:
                x, layer_cache = block(x, positions, train, None, cache["layers"][i])
                new_layers.append(layer_cache)
        x = LayerNorm(self.bias, name="ln_f")(x)
        head = wte if self.tie_embeddings else self.param(
            "head", _init(0.02, ("vocab", "embed")), (self.vocab_size, self.width))
        logits = matmul(x, head.astype(dtype).T).astype(jnp.float32)
        if cache is None:
            return logits
        return logits, {"index": start + t, "layers": tuple(new_layers)}


def init_cache(model: GPT, batch: int, dtype=jnp.float32) -> dict:
    """An empty KV cache: {'index': 0, 'layers': ((k, v) [batch, block_size, heads, head_dim]
    per layer)}."""
    shape = (batch, model.block_size, model.heads, model.width // model.heads)
    zeros = lambda: jnp.zeros(shape, dtype)
    return {"index": jnp.zeros((), jnp.int32),
            "layers": tuple((zeros(), zeros()) for _ in range(model.layers))}


def defaults() -> dict:
    """The `model` section (nanoGPT's CPU 'baby' model; vocab_size and block_size come from the
    data unless set, and must then agree with it)."""
    return {"layers": 4, "heads": 4, "width": 128, "mlp_ratio": 4, "dropout": 0.0, "bias": True,
            "positions": "learned", "tie_embeddings": True, "dtype": "float32",
            "vocab_size": None, "block_size": None}


def build(cfg: dict, input_shape: tuple, num_outputs: int) -> GPT:
    """The GPT for windows of input_shape [T] over a vocabulary of num_outputs tokens."""
    cfg = {**defaults(), **cfg}
    check_shape(cfg)
    check(len(input_shape) == 1, "model.name", "a GPT takes windows of tokens [T]; the data gives "
          f"examples of shape {tuple(input_shape)}")
    check(isinstance(cfg["tie_embeddings"], bool), "model.tie_embeddings",
          f"must be true or false; got {cfg['tie_embeddings']!r}")
    vocab, block = cfg["vocab_size"], cfg["block_size"]
    if vocab is not None and vocab != num_outputs:
        raise ConfigError(f"config key 'model.vocab_size': {vocab!r} does not match the data's "
                          f"vocabulary of {num_outputs} tokens; leave it unset (None) to take the "
                          "data's")
    if block is not None:
        check(type(block) is int and block >= input_shape[0], "model.block_size",
              f"the data gives windows of {input_shape[0]} tokens, longer than the model's "
              f"block_size {block!r}; leave it unset (None) to take the data's")
    return GPT(vocab_size=int(num_outputs), block_size=int(block or input_shape[0]),
               **{k: cfg[k] for k in defaults() if k not in ("vocab_size", "block_size")})


def parameter_count(params: Any) -> int:
    """The number of parameters (nanoGPT counts the tied embedding once, as here)."""
    return sum(int(x.size) for x in jax.tree.leaves(params))
