"""The `maxout` family: Goodfellow et al.'s maxout network (2013), a multilayer perceptron whose
units are each the maximum of `pieces` affine functions of their input. GAN discriminators use it
(Goodfellow et al. 2014; PacGAN, Lin et al. 2018, whose MNIST discriminator is a maxout MLP).

x [batch, ...] (flattened) -> for each width in `hidden`: Dense(width * pieces), reshaped
[batch, width, pieces] (unit u's pieces are the Dense outputs u * pieces ... u * pieces +
pieces - 1) and maxed over the pieces, then dropout -> a linear head [batch, num_outputs].
"""
from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax

from dlcore.config import check, one_of
from dlcore.models.mlp import KERNEL_INITS, check_dropout, dense, positive_ints


class Maxout(nn.Module):
    """x: [batch, ...] (flattened) -> outputs [batch, num_outputs].

    hidden: widths (units) of the maxout layers, () gives a linear model; pieces: affine pieces
    per unit (1 makes each layer linear); dropout: rate after each maxout layer (training only).
    Layers dense_i (kernel [in, width * pieces]) and head; each hidden layer's output is sown
    into 'intermediates' as layer_i.
    """
    hidden: Sequence[int]
    num_outputs: int
    pieces: int = 5
    dropout: float = 0.0
    initializer: str = "lecun_normal"

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        one_of(self.initializer, "model.init", KERNEL_INITS)
        check(type(self.pieces) is int and self.pieces >= 1, "model.pieces",
              f"must be a positive integer; got {self.pieces!r}")
        h = x.reshape(x.shape[0], -1)
        for i, width in enumerate(self.hidden):
            z = dense(width * self.pieces, h.shape[-1], self.initializer, name=f"dense_{i}")(h)
            h = z.reshape(z.shape[0], width, self.pieces).max(axis=-1)
            if self.dropout > 0:
                h = nn.Dropout(self.dropout, deterministic=not train)(h)
            self.sow("intermediates", f"layer_{i}", h)  # free unless apply(mutable=...) asks
        return dense(self.num_outputs, h.shape[-1], self.initializer, name="head")(h)


# --- the `maxout` family: its config section ---------------------------------------------------------

def defaults() -> dict:
    """The `model` section's keys (besides name and input_shape)."""
    return {"hidden": (200, 200, 200), "pieces": 5, "dropout": 0.0, "init": "lecun_normal"}


def build(cfg: dict, input_shape: tuple, num_outputs: int) -> Maxout:
    """The maxout network of a `model` section; ConfigError for any impossible value."""
    hidden = positive_ints(cfg, "hidden", allow_empty=True)
    pieces = cfg["pieces"]
    check(type(pieces) is int and 0 < pieces < 2**31, "model.pieces",
          f"must be a positive integer (the affine pieces each unit maxes over); got {pieces!r}")
    check(all(w * pieces < 2**31 for w in hidden), "model.pieces",
          f"hidden widths times pieces must stay below 2^31; got {hidden} x {pieces}")
    check_dropout(cfg["dropout"])
    return Maxout(hidden=hidden, num_outputs=num_outputs, pieces=pieces, dropout=cfg["dropout"],
                  initializer=one_of(cfg["init"], "model.init", KERNEL_INITS))
