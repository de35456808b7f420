"""Optimizers and their regularization, built with optax from the `optim` config section.

    optim = dict(name="adam", learning_rate=1e-3, schedule="constant", warmup_steps=0,
                 end_learning_rate=0.0, momentum=0.9, nesterov=False, b1=0.9, b2=0.999,
                 eps=1e-8, weight_decay=0.0, l2=0.0, clip_norm=0.0, rms_decay=0.9,
                 log_details=False)

The chain, in order: the L2 penalty's gradient -> global-norm clipping -> the optimizer's
preconditioning -> decoupled weight decay -> -learning_rate x schedule(step).

* `l2` is the classic penalty 0.5 * l2 * ||w||^2 (losses.l2_penalty): its gradient l2 * w is added
  to the loss's gradient before anything else, which is exactly what adding the penalty to the loss
  does; with Adam it is then rescaled by the preconditioner, which is why it differs from
  `weight_decay`.
* `weight_decay` is decoupled (Loshchilov & Hutter): w <- w - lr * wd * w, applied after the
  preconditioning, so 'adam' with weight_decay > 0 is AdamW ('adamw' is its alias with a default
  of 1e-4 when unset). Neither touches biases or normalisation scales (`decay_mask`).
* `clip_norm` > 0 clips the global gradient norm.
* `schedule` shapes the rate over the run: the rate at step t is learning_rate x shape(t), with
  shape(0) = 1 after the warm-up ('linear' and 'cosine' end at end_learning_rate).
* `log_details` adds the gradient norm and the learning rate to the per-step metrics.

Every number above is an optax hyperparameter injected into the optimizer state
(`optax.inject_hyperparams`): states that differ only in them run in one program, `jax.vmap`-ped
(dlcore.sweep). A swept learning rate scales the whole schedule. Which transforms exist is fixed
when the program is built (l2, weight decay and clipping are present when their value is > 0 in the
config it is built from); a member whose value is 0 adds 0 * w or does not clip, exactly as a run
without the transform would.
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import optax

from dlcore.config import check, one_of

OPTIMIZERS = ("sgd", "momentum", "adam", "adamw", "rmsprop")
SCHEDULES = ("constant", "cosine", "linear", "warmup_cosine", "step")
NO_DECAY = ("bias", "scale")
# the config keys that are injected hyperparameters (sweepable in one program)
HYPERPARAMETERS = ("learning_rate", "l2", "clip_norm", "b1", "b2", "eps", "momentum", "rms_decay",
                   "weight_decay")


def defaults(**overrides) -> dict:
    """The `optim` section with every key present (overrides must name existing keys)."""
    cfg = dict(name="adam", learning_rate=1e-3, schedule="constant", warmup_steps=0,
               end_learning_rate=0.0, momentum=0.9, nesterov=False, b1=0.9, b2=0.999, eps=1e-8,
               weight_decay=0.0, l2=0.0, clip_norm=0.0, rms_decay=0.9, log_details=False)
    unknown = set(overrides) - set(cfg)
    assert not unknown, f"unknown optim keys {unknown}"
    cfg.update(overrides)
    return cfg


def decay_mask(params):
    """Pytree of bools, False for leaves named 'bias' or 'scale' (biases, norm scales)."""
    def keep(path, _):
        last = path[-1]
        name = getattr(last, "key", getattr(last, "name", str(last)))
        return name not in NO_DECAY
    return jax.tree_util.tree_map_with_path(keep, params)


def schedule_shape(cfg: dict, total_steps: int) -> optax.Schedule:
    """shape(step): the learning rate at `step` divided by `optim.learning_rate`."""
    kind = one_of(cfg["schedule"], "optim.schedule", SCHEDULES)
    warmup, end = cfg["warmup_steps"], cfg["end_learning_rate"] / cfg["learning_rate"]
    check(0 <= warmup < max(total_steps, 1), "optim.warmup_steps",
          f"must be in [0, total steps {total_steps}); got {warmup}")
    if kind == "constant":
        main = optax.constant_schedule(1.0)
    elif kind in ("cosine", "warmup_cosine"):
        main = optax.cosine_decay_schedule(1.0, max(total_steps - warmup, 1), alpha=end)
    elif kind == "linear":
        main = optax.linear_schedule(1.0, end, max(total_steps - warmup, 1))
    else:  # 'step': divide by 10 at 50 % and 75 % of training
        rest = total_steps - warmup
        main = optax.piecewise_constant_schedule(1.0, {rest // 2: 0.1, (3 * rest) // 4: 0.1})
    if warmup == 0:
        return main
    return optax.join_schedules([optax.linear_schedule(0.0, 1.0, warmup), main], [warmup])


def validate(cfg: dict, total_steps: int) -> None:
    """Raise ConfigError for any impossible optimizer setting; nothing is compiled."""
    one_of(cfg["name"], "optim.name", OPTIMIZERS)
    for key in HYPERPARAMETERS + ("end_learning_rate",):
        check(isinstance(cfg[key], (int, float)) and not isinstance(cfg[key], bool),
              f"optim.{key}", f"must be a number; got {cfg[key]!r}")
    check(cfg["learning_rate"] > 0, "optim.learning_rate", f"must be > 0; got {cfg['learning_rate']}")
    for key in ("weight_decay", "l2", "clip_norm", "end_learning_rate", "eps"):
        check(cfg[key] >= 0, f"optim.{key}", f"must be >= 0; got {cfg[key]}")
    for key in ("momentum", "b1", "b2", "rms_decay"):
        check(0 <= cfg[key] < 1, f"optim.{key}", f"must be in [0, 1); got {cfg[key]}")
    schedule_shape(cfg, total_steps)


def build(cfg: dict, total_steps: int) -> optax.GradientTransformation:
    """The optax chain of an `optim` section for a run of `total_steps` updates, its numbers
    injected into the state (`hyperparameters(opt_state)`)."""
    validate(cfg, total_steps)
    name = cfg["name"]
    wd = injected(cfg)["weight_decay"]
    shape = schedule_shape(cfg, total_steps)

    def chain(learning_rate, l2, clip_norm, b1, b2, eps, momentum, rms_decay, weight_decay):
        parts = []
        if cfg["l2"] > 0:  # the gradient of 0.5 * l2 * ||w||^2
            parts.append(optax.add_decayed_weights(l2, mask=decay_mask))
        if cfg["clip_norm"] > 0:
            parts.append(clip_by_global_norm(clip_norm))
        if name in ("adam", "adamw"):
            parts.append(optax.scale_by_adam(b1=b1, b2=b2, eps=eps))
        elif name == "rmsprop":
            parts.append(optax.scale_by_rms(decay=rms_decay, eps=eps))
        elif name == "momentum":
            parts.append(optax.trace(decay=momentum, nesterov=cfg["nesterov"]))
        if wd > 0:
            parts.append(optax.add_decayed_weights(weight_decay, mask=decay_mask))
        parts.append(optax.scale_by_schedule(lambda t: -learning_rate * shape(t)))
        return optax.chain(*parts)

    return optax.inject_hyperparams(chain, hyperparam_dtype=jnp.float32)(**injected(cfg))


def injected(cfg: dict) -> dict:
    """The hyperparameter values `build` injects for an `optim` section ({name: float})."""
    values = {k: float(cfg[k]) for k in HYPERPARAMETERS}
    if cfg["name"] == "adamw" and cfg["weight_decay"] == 0:
        values["weight_decay"] = 1e-4
    return values


def clip_by_global_norm(max_norm) -> optax.GradientTransformation:
    """optax.clip_by_global_norm, computed as it computes it, except that a max_norm of 0 does not
    clip (a sweep member without clipping in a program built with it)."""
    def update(updates, state, params=None):
        norm = optax.tree.norm(updates)
        keep = (norm < max_norm) | (max_norm <= 0)
        return jax.tree.map(lambda t: jax.lax.select(keep, t, (t / norm.astype(t.dtype)) * max_norm),
                            updates), state
    return optax.GradientTransformation(optax.init_empty_state, update)


def hyperparameters(opt_state) -> dict:
    """The injected hyperparameters of an optimizer state built by `build` ({name: f32[]})."""
    return opt_state.hyperparams


def learning_rate_at(cfg: dict, total_steps: int) -> Callable:
    """lr(opt_state, step) -> the learning rate applied at `step` (for `log_details`)."""
    shape = schedule_shape(cfg, total_steps)
    return lambda opt_state, step: (opt_state.hyperparams["learning_rate"]
                                    * shape(step)).astype(jnp.float32)
