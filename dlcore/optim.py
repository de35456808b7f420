"""Optimizers and their regularization, built with optax from the `optim` config section.

    optim = dict(name="adam", learning_rate=1e-3, schedule="constant", warmup_steps=0,
                 end_learning_rate=0.0, momentum=0.9, nesterov=False, b1=0.9, b2=0.999,
                 eps=1e-8, weight_decay=0.0, l2=0.0, clip_norm=0.0, rms_decay=0.9,
                 log_details=False)

* `weight_decay` is decoupled (Loshchilov & Hutter): w <- w - lr * wd * w, applied after the
  optimizer's preconditioning, so 'adam' with weight_decay > 0 is AdamW ('adamw' is its alias with a
  default of 1e-4 when unset).
* `l2` is the classic penalty 0.5 * l2 * ||w||^2 added to the loss (see `losses.l2_penalty`); with
  Adam it is rescaled by the preconditioner, which is exactly why it differs from weight decay.
* Neither touches biases or normalisation scales (`decay_mask`).
* `clip_norm` > 0 clips the global gradient norm first.
* `log_details` adds the gradient norm and the learning rate to the per-step metrics.
"""
from __future__ import annotations

import jax
import optax

from dlcore.config import check, one_of

OPTIMIZERS = ("sgd", "momentum", "adam", "adamw", "rmsprop")
SCHEDULES = ("constant", "cosine", "linear", "warmup_cosine", "step")
NO_DECAY = ("bias", "scale")


def decay_mask(params):
    """Pytree of bools, False for leaves named 'bias' or 'scale' (biases, norm scales)."""
    def keep(path, _):
        last = path[-1]
        name = getattr(last, "key", getattr(last, "name", str(last)))
        return name not in NO_DECAY
    return jax.tree_util.tree_map_with_path(keep, params)


def schedule(cfg: dict, total_steps: int) -> optax.Schedule:
    """Learning rate as a function of the step, from `optim.schedule`."""
    lr, kind = cfg["learning_rate"], one_of(cfg["schedule"], "optim.schedule", SCHEDULES)
    warmup, end = cfg["warmup_steps"], cfg["end_learning_rate"]
    check(0 <= warmup < max(total_steps, 1), "optim.warmup_steps",
          f"must be in [0, total steps {total_steps}); got {warmup}")
    if kind == "constant":
        main = optax.constant_schedule(lr)
    elif kind in ("cosine", "warmup_cosine"):
        main = optax.cosine_decay_schedule(lr, max(total_steps - warmup, 1), alpha=end / lr)
    elif kind == "linear":
        main = optax.linear_schedule(lr, end, max(total_steps - warmup, 1))
    else:  # 'step': divide by 10 at 50 % and 75 % of training
        rest = total_steps - warmup
        main = optax.piecewise_constant_schedule(lr, {rest // 2: 0.1, (3 * rest) // 4: 0.1})
    if warmup == 0:
        return main
    return optax.join_schedules([optax.linear_schedule(0.0, lr, warmup), main], [warmup])


def validate(cfg: dict, total_steps: int) -> None:
    """Raise ConfigError for any impossible optimizer setting; nothing is compiled."""
    one_of(cfg["name"], "optim.name", OPTIMIZERS)
    for key in ("learning_rate",):
        check(cfg[key] > 0, f"optim.{key}", f"must be > 0; got {cfg[key]}")
    for key in ("weight_decay", "l2", "clip_norm", "end_learning_rate", "eps"):
        check(cfg[key] >= 0, f"optim.{key}", f"must be >= 0; got {cfg[key]}")
    for key in ("momentum", "b1", "b2", "rms_decay"):
        check(0 <= cfg[key] < 1, f"optim.{key}", f"must be in [0, 1); got {cfg[key]}")
    schedule(cfg, total_steps)


def build(cfg: dict, total_steps: int) -> optax.GradientTransformation:
    """The optax chain: clip -> precondition -> decoupled decay -> -lr(step)."""
    validate(cfg, total_steps)
    name, wd = cfg["name"], cfg["weight_decay"]
    if name == "adamw" and wd == 0:
        wd = 1e-4
    parts = []
    if cfg["clip_norm"] > 0:
        parts.append(optax.clip_by_global_norm(cfg["clip_norm"]))
    if name in ("adam", "adamw"):
        parts.append(optax.scale_by_adam(b1=cfg["b1"], b2=cfg["b2"], eps=cfg["eps"]))
    elif name == "rmsprop":
        parts.append(optax.scale_by_rms(decay=cfg["rms_decay"], eps=cfg["eps"]))
    elif name == "momentum":
        parts.append(optax.trace(decay=cfg["momentum"], nesterov=cfg["nesterov"]))
    if wd > 0:
        parts.append(optax.add_decayed_weights(wd, mask=decay_mask))
    parts.append(optax.scale_by_learning_rate(schedule(cfg, total_steps)))
    return optax.chain(*parts)


def defaults(**overrides) -> dict:
    """The `optim` section with every key present (overrides must name existing keys)."""
    cfg = dict(name="adam", learning_rate=1e-3, schedule="constant", warmup_steps=0,
               end_learning_rate=0.0, momentum=0.9, nesterov=False, b1=0.9, b2=0.999, eps=1e-8,
               weight_decay=0.0, l2=0.0, clip_norm=0.0, rms_decay=0.9, log_details=False)
    unknown = set(overrides) - set(cfg)
    assert not unknown, f"unknown optim keys {unknown}"
    cfg.update(overrides)
    return cfg
