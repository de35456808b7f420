"""Flax modules, one file per family. `build(cfg, num_outputs)` turns a config section into a module.

`defaults(name)` is the complete `model` section of a family; configs start from it, so every key
a family reads is present and `--set model.<key>=...` is type-checked against it.
"""
from __future__ import annotations

import flax.linen as nn

from dlcore.config import check, one_of
from dlcore.models.mlp import ACTIVATIONS, KERNEL_INITS, MLP, logistic_regression

__all__ = ["build", "defaults", "MLP", "logistic_regression", "ACTIVATIONS"]

# `input_shape`: the per-example shape the model was designed for (None accepts any); the data's
# shape is checked against it before anything compiles, naming both.
_DEFAULTS = {
    "mlp": {"hidden": (100, 100), "activation": "relu", "residual": False, "dropout": 0.0,
            "batch_norm": False, "init": "lecun_normal"},
    "logreg": {"init": "lecun_normal"},
    "cnn": {"dims": 2, "channels": (32, 64), "kernel_sizes": (3, 3), "strides": (1, 1),
            "padding": "SAME", "pool": "none", "pool_size": 2, "residual": False,
            "batch_norm": False, "activation": "relu", "head": "flatten", "dense": (),
            "dropout": 0.0, "init": "lecun_normal"},
    "rnn": {"cell": "gru", "hidden_size": 64, "layers": 1, "bidirectional": False,
            "head": "last", "dropout": 0.0, "init": "torch", "forget_bias": 0.0, "unroll": 1},
}


def defaults(name: str) -> dict:
    """The full `model` section for family `name` (mlp | logreg | cnn | rnn)."""
    one_of(name, "model.name", _DEFAULTS)
    return {"name": name, **_DEFAULTS[name], "input_shape": None}


def _positive_ints(cfg: dict, key: str, allow_empty: bool = False) -> tuple:
    values = tuple(cfg[key])
    check((allow_empty or values) and all(isinstance(v, int) and v > 0 for v in values),
          f"model.{key}", f"must be a list of positive integers; got {list(values)}")
    return values


def build(cfg: dict, num_outputs: int) -> nn.Module:
    """Model from the `model` config section; every value is checked before anything compiles."""
    name = one_of(cfg.get("name"), "model.name", _DEFAULTS)
    # `--set model.name=...` on a config of another family: the new family's defaults fill in
    cfg = {**defaults(name), **cfg}
    init = one_of(cfg.get("init", "lecun_normal"), "model.init", KERNEL_INITS)
    if name == "logreg":
        return logistic_regression(num_outputs, init)
    check(0.0 <= cfg["dropout"] < 1.0, "model.dropout", f"must be in [0, 1); got {cfg['dropout']}")
    if name == "rnn":
        from dlcore.models.rnn import RNN
        one_of(cfg["cell"], "model.cell", ("rnn", "lstm", "gru"))
        one_of(cfg["head"], "model.head", ("last", "mean", "flatten", "sequence"))
        for key in ("hidden_size", "layers", "unroll"):
            check(isinstance(cfg[key], int) and cfg[key] > 0, f"model.{key}",
                  f"must be a positive integer; got {cfg[key]}")
        return RNN(num_outputs=num_outputs, cell=cfg["cell"], hidden_size=cfg["hidden_size"],
                   layers=cfg["layers"], bidirectional=cfg["bidirectional"], head=cfg["head"],
                   dropout=cfg["dropout"], initializer=init, forget_bias=cfg["forget_bias"],
                   unroll=cfg["unroll"])
    one_of(cfg["activation"], "model.activation", ACTIVATIONS)
    if name == "cnn":
        from dlcore.models.cnn import CNN
        one_of(cfg["dims"], "model.dims", (1, 2))
        one_of(cfg["pool"], "model.pool", ("none", "max", "avg"))
        one_of(cfg["head"], "model.head", ("flatten", "avg", "max"))
        lists = [_positive_ints(cfg, k) for k in ("channels", "kernel_sizes", "strides")]
        check(len({len(v) for v in lists}) == 1, "model.channels",
              f"channels, kernel_sizes and strides need one entry per conv stage; got lengths "
              f"{[len(v) for v in lists]}")
        pad = cfg["padding"]
        pad = int(pad) if isinstance(pad, str) and pad.isdigit() else pad  # from --set
        check(pad in ("SAME", "VALID") or (isinstance(pad, int) and pad >= 0), "model.padding",
              f"must be SAME, VALID or an integer >= 0; got {pad!r}")
        return CNN(num_outputs=num_outputs, dims=cfg["dims"], channels=lists[0],
                   kernel_sizes=lists[1], strides=lists[2], padding=pad, pool=cfg["pool"],
                   pool_size=cfg["pool_size"], residual=cfg["residual"],
                   batch_norm=cfg["batch_norm"], activation=cfg["activation"], head=cfg["head"],
                   dense=_positive_ints(cfg, "dense", allow_empty=True), dropout=cfg["dropout"],
                   initializer=init)
    hidden = tuple(cfg["hidden"])
    check(all(isinstance(w, int) and w > 0 for w in hidden), "model.hidden",
          f"widths must be positive integers; got {list(hidden)}")
    return MLP(hidden=hidden, num_outputs=num_outputs, activation=cfg["activation"],
               residual=cfg["residual"], dropout=cfg["dropout"], batch_norm=cfg["batch_norm"],
               initializer=init)
