"""Flax modules, one file per family. `build(cfg, num_outputs)` turns a config section into a module."""
from __future__ import annotations

import flax.linen as nn

from dlcore.config import check, one_of
from dlcore.models.mlp import ACTIVATIONS, KERNEL_INITS, MLP, logistic_regression

__all__ = ["build", "MLP", "logistic_regression", "ACTIVATIONS"]


def build(cfg: dict, num_outputs: int) -> nn.Module:
    """Model from the `model` config section; every value is checked before anything compiles."""
    name = one_of(cfg.get("name"), "model.name", ("mlp", "logreg"))
    init = one_of(cfg.get("init", "lecun_normal"), "model.init", KERNEL_INITS)
    if name == "logreg":
        return logistic_regression(num_outputs, init)
    one_of(cfg["activation"], "model.activation", ACTIVATIONS)
    hidden = tuple(cfg["hidden"])
    check(all(isinstance(w, int) and w > 0 for w in hidden), "model.hidden",
          f"widths must be positive integers; got {list(hidden)}")
    check(0.0 <= cfg["dropout"] < 1.0, "model.dropout", f"must be in [0, 1); got {cfg['dropout']}")
    return MLP(hidden=hidden, num_outputs=num_outputs, activation=cfg["activation"],
               residual=cfg["residual"], dropout=cfg["dropout"], batch_norm=cfg["batch_norm"],
               initializer=init)
