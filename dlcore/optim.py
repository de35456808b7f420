"""Optimizers and their regularization, built with optax from the `optim` config section.

    optim = dict(name="adam", learning_rate=1e-3, schedule="constant", warmup_steps=0,
                 end_learning_rate=0.0, momentum=0.9, nesterov=False, b1=0.9, b2=0.999,
                 eps=1e-8, weight_decay=0.0, l2=0.0, clip_norm=0.0, rms_decay=0.9,
                 freeze=None)

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
* `schedule` shapes the rate over the run: the rate at step t is
  learning_rate x a(t) + end_learning_rate x b(t) (`schedule_shape`): 'constant' a = 1;
  'linear' and 'cosine' go from learning_rate to end_learning_rate after an optional linear
  warm-up from 0 ('warmup_cosine' is 'cosine' with `warmup_steps`); 'step' divides by 10 at 50 %
  and 75 % of the steps after the warm-up.
* `freeze` (None, a pattern or a list of patterns): the parameters it names get an update of
  exactly zero (optax.multi_transform with optax.set_to_zero): no step, no L2 gradient, no weight
  decay, no optimizer moments kept, and their gradients leave the clipping norm. A pattern is a
  shell glob (fnmatch, case-sensitive; `*` also crosses '/') over a parameter's path, its keys
  joined by '/' ('conv_0/kernel'); it names a parameter when it matches the whole path or a
  module above it: 'conv_*' freezes every leaf of every conv layer, 'head/bias' one leaf. A
  pattern that matches nothing is a ConfigError listing the paths there are (`select`).
  Batch-norm statistics are no parameters: the model updates them in training steps, frozen or
  not.

Every number above is an optax hyperparameter injected into the optimizer state
(`optax.inject_hyperparams`): states that differ only in them run in one program, `jax.vmap`-ped
(dlcore.sweep), the schedule's end rate among them. Which transforms exist is fixed
when the program is built (l2, weight decay and clipping are present when their value is > 0 in the
config it is built from); a member whose value is 0 adds 0 * w or does not clip, exactly as a run
without the transform would.
"""
from __future__ import annotations

import fnmatch
from typing import Callable

import jax
import jax.numpy as jnp
import optax

from dlcore.config import ConfigError, check, one_of

OPTIMIZERS = ("sgd", "momentum", "adam", "adamw", "rmsprop")
SCHEDULES = ("constant", "cosine", "linear", "warmup_cosine", "step")
NO_DECAY = ("bias", "scale")
# the config keys that are injected hyperparameters (sweepable in one program)
HYPERPARAMETERS = ("learning_rate", "end_learning_rate", "l2", "clip_norm", "b1", "b2", "eps",
                   "momentum", "rms_decay", "weight_decay")


def defaults(**overrides) -> dict:
    """The `optim` section with every key present (overrides must name existing keys)."""
    cfg = dict(name="adam", learning_rate=1e-3, schedule="constant", warmup_steps=0,
               end_learning_rate=0.0, momentum=0.9, nesterov=False, b1=0.9, b2=0.999, eps=1e-8,
               weight_decay=0.0, l2=0.0, clip_norm=0.0, rms_decay=0.9, freeze=None)
    unknown = set(overrides) - set(cfg)
    assert not unknown, f"unknown optim keys {unknown}"
    cfg.update(overrides)
    return cfg


def decay_mask(params):
    """Pytree of bools, False for leaves whose name ends in 'bias' or 'scale' (biases such as
    'qkv_bias', norm scales)."""
    def keep(path, _):
        last = path[-1]
        name = getattr(last, "key", getattr(last, "name", str(last)))
        return not str(name).endswith(NO_DECAY)
    return jax.tree_util.tree_map_with_path(keep, params)


def schedule_shape(cfg: dict, total_steps: int):
    """shape(step) -> (a, b): the learning rate at `step` is learning_rate * a + end_learning_rate
    * b, so both stay numbers in the state (a sweep changes either without changing the program)."""
    kind = one_of(cfg["schedule"], "optim.schedule", SCHEDULES)
    warmup = cfg["warmup_steps"]
    check(type(warmup) is int and 0 <= warmup < max(total_steps, 1), "optim.warmup_steps",
          f"must be an integer in [0, total steps {total_steps}); got {warmup!r}")
    n = max(total_steps - warmup, 1)
    if kind == "constant":
        main = lambda t: (jnp.ones_like(t, jnp.float32), jnp.zeros_like(t, jnp.float32))
    elif kind in ("cosine", "warmup_cosine"):
        def main(t):
            a = optax.cosine_decay_schedule(1.0, n)(t)
            return a, 1.0 - a
    elif kind == "linear":
        def main(t):
            a = optax.linear_schedule(1.0, 0.0, n)(t)
            return a, 1.0 - a
    else:  # 'step': divide by 10 at 50 % and 75 % of training
        def main(t):
            a = optax.piecewise_constant_schedule(1.0, {n // 2: 0.1, (3 * n) // 4: 0.1})(t)
            return a, jnp.zeros_like(a)
    if warmup == 0:
        return main

    def shape(t):
        a, b = main(jnp.maximum(t - warmup, 0))
        ramp = jnp.asarray(t, jnp.float32) / warmup
        return jnp.where(t < warmup, ramp, a), jnp.where(t < warmup, 0.0, b)
    return shape


def validate(cfg: dict, total_steps: int) -> None:
    """Raise ConfigError for any impossible optimizer setting; nothing is compiled."""
    one_of(cfg["name"], "optim.name", OPTIMIZERS)
    check(isinstance(cfg["nesterov"], bool), "optim.nesterov", f"must be true or false; got {cfg['nesterov']!r}")
    for key in HYPERPARAMETERS:
        check(isinstance(cfg[key], (int, float)) and not isinstance(cfg[key], bool),
              f"optim.{key}", f"must be a number; got {cfg[key]!r}")
    check(cfg["learning_rate"] > 0, "optim.learning_rate", f"must be > 0; got {cfg['learning_rate']}")
    for key in ("weight_decay", "l2", "clip_norm", "end_learning_rate", "eps"):
        check(cfg[key] >= 0, f"optim.{key}", f"must be >= 0; got {cfg[key]}")
    for key in ("momentum", "b1", "b2", "rms_decay"):
        check(0 <= cfg[key] < 1, f"optim.{key}", f"must be in [0, 1); got {cfg[key]}")
    schedule_shape(cfg, total_steps)
    patterns(cfg.get("freeze"), "optim.freeze")


def patterns(value, key: str) -> tuple[str, ...]:
    """A config key's parameter patterns as a tuple of strings (None: none); ConfigError for
    anything else."""
    if value is None:
        return ()
    items = [value] if isinstance(value, str) else value
    ok = isinstance(items, (list, tuple)) and all(isinstance(p, str) and p for p in items)
    check(ok, key, f"must be None, a pattern such as 'conv_*' or a list of them; got {value!r}")
    return tuple(items)


def path_name(path) -> str:
    """'conv_0/kernel' for the key path of a leaf (dict keys, attribute names, indices)."""
    return "/".join(str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))) for k in path)


def matches(pattern: str, path: str) -> bool:
    """Whether `pattern` names the leaf at `path` ('conv_0/kernel'): it matches the whole path or
    a module above it ('conv_0', 'conv_*')."""
    parts = path.split("/")
    return any(fnmatch.fnmatchcase("/".join(parts[:i]), pattern) for i in range(1, len(parts) + 1))


def select(pats: tuple[str, ...], params, key: str, strict: bool = True):
    """Pytree of bools like `params`: True where a pattern names the leaf (`matches`). strict:
    ConfigError naming a pattern that matches no leaf, with the paths there are, since a typo
    would otherwise freeze (or keep) nothing, silently."""
    paths = [path_name(p) for p, _ in jax.tree_util.tree_flatten_with_path(params)[0]]
    for pattern in pats if strict else ():
        if not any(matches(pattern, p) for p in paths):
            shown = ", ".join(paths[:40]) + (f" and {len(paths) - 40} more" if len(paths) > 40 else "")
            raise ConfigError(f"config key '{key}': pattern '{pattern}' matches no parameter; "
                              f"the parameter paths are: {shown or 'none'}")
    return jax.tree_util.tree_map_with_path(
        lambda p, _: any(matches(pattern, path_name(p)) for pattern in pats), params)


def build(cfg: dict, total_steps: int) -> optax.GradientTransformation:
    """The optax chain of an `optim` section for a run of `total_steps` updates, its numbers
    injected into the state (`hyperparameters(opt_state)`)."""
    validate(cfg, total_steps)
    name = cfg["name"]
    wd = injected(cfg)["weight_decay"]
    shape = schedule_shape(cfg, total_steps)
    frozen = patterns(cfg.get("freeze"), "optim.freeze")

    def chain(learning_rate, end_learning_rate, l2, clip_norm, b1, b2, eps, momentum, rms_decay,
              weight_decay):
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
        parts.append(optax.scale_by_schedule(lambda t: -_rate(learning_rate, end_learning_rate,
                                                              shape(t))))
        if not frozen:
            return optax.chain(*parts)
        # inside inject_hyperparams, so the state's top stays the injected one (dlcore.sweep,
        # learning_rate_at); set_to_zero ignores the gradient, so XLA drops its computation
        return optax.multi_transform({"train": optax.chain(*parts), "frozen": optax.set_to_zero()},
                                     lambda tree: jax.tree.map(
                                         lambda f: "frozen" if f else "train",
                                         select(frozen, tree, "optim.freeze")))

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
    """lr(opt_state, step) -> the learning rate applied at `step` (for logging it)."""
    shape = schedule_shape(cfg, total_steps)

    def lr(opt_state, step):
        h = opt_state.hyperparams
        return _rate(h["learning_rate"], h["end_learning_rate"], shape(step)).astype(jnp.float32)
    return lr


def _rate(peak, end, ab):
    a, b = ab
    return peak * a + end * b
