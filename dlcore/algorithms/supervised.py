"""Supervised learning: classification (softmax cross-entropy) and regression (squared error).

    state = State(step, params, model_state, opt_state)
    batch = {'x': [b, *input_shape], 'y': [b] int (classification) or [b, d] float (regression)}

The loss is the data term plus `optim.l2` * 0.5 ||w||^2 (biases and norm scales excluded); decoupled
weight decay lives in the optimizer (dlcore.optim). Dropout and augmentation (`data.augment_*`,
dlcore.data.augment) draw from the step's key; batch-norm statistics are the `model_state` and are
updated only in training steps.
"""
from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from dlcore import losses, models, optim
from dlcore.config import ConfigError
from dlcore.data import augment
from dlcore.algorithms import Algorithm
from dlcore.loop import defaults as loop_defaults


class State(NamedTuple):
    step: jax.Array      # int32 scalar: updates applied so far
    params: Any          # the model's 'params' collection
    model_state: Any     # other collections, e.g. {'batch_stats': ...}; {} when none
    opt_state: Any


def make(config: dict, spec: dict) -> Algorithm:
    """Build from config['model'], config['optim'] and config['loop']['steps']; spec from dlcore.data."""
    model = models.build(config["model"], spec["num_outputs"])
    check_input_shape(config["model"], spec["input_shape"])
    augment.validate(config["data"])
    shift, noise = config["data"].get("augment_shift", 0), config["data"].get("augment_noise", 0.0)
    tx = optim.build(config["optim"], config["loop"]["steps"])
    lr_at = optim.schedule(config["optim"], config["loop"]["steps"])
    l2 = config["optim"]["l2"]
    log_details = config["optim"]["log_details"]
    classify = spec["task"] == "classification"
    eval_chunk = config["loop"].get("eval_batch_size", 4096)

    def init(key: jax.Array) -> State:
        x = jnp.zeros((1, *spec["input_shape"]), jnp.float32)
        variables = model.init({"params": key, "dropout": key}, x, train=False)
        params = variables["params"]
        model_state = {k: v for k, v in variables.items() if k != "params"}
        return State(jnp.zeros((), jnp.int32), params, model_state, tx.init(params))

    def forward(params, model_state, x, train, key):
        out = model.apply({"params": params, **model_state}, x, train=train,
                          rngs={"dropout": key} if train else None,
                          mutable=list(model_state) if train else False)
        return out if train else (out, model_state)

    def data_loss(out, y):
        return losses.cross_entropy(out, y) if classify else losses.mse(out, y)

    def loss_fn(params, model_state, batch, key):
        x = batch["x"]
        if shift or noise:
            key, k_aug = jax.random.split(key)
            x = augment.shift_and_noise(x, k_aug, shift, noise)
        out, new_model_state = forward(params, model_state, x, True, key)
        loss = data_loss(out, batch["y"])
        total = loss + l2 * losses.l2_penalty(params) if l2 > 0 else loss
        return total, (loss, out, new_model_state)

    def step(state: State, batch: dict, key: jax.Array) -> tuple[State, dict]:
        grads, (loss, out, model_state) = jax.grad(loss_fn, has_aux=True)(
            state.params, state.model_state, batch, key)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        metrics = {"loss": loss}
        if classify:
            metrics["accuracy"] = losses.accuracy(out, batch["y"])
        if log_details:  # off by default: on a CPU each extra metric costs ~5 % of a small step
            metrics["grad_norm"] = optax.tree.norm(grads)
            metrics["learning_rate"] = jnp.asarray(lr_at(state.step), jnp.float32)
        return State(state.step + 1, params, model_state, opt_state), metrics

    def evaluate(state: State, data: dict, key: jax.Array) -> dict:
        """Mean loss and accuracy (or mse) over the whole split, in chunks of eval_batch_size."""
        def per_example(x, y):
            out, _ = forward(state.params, state.model_state, x, False, key)
            if classify:
                return (optax.softmax_cross_entropy_with_integer_labels(out, y),
                        (jnp.argmax(out, -1) == y).astype(jnp.float32))
            err = jnp.mean(((out - y.reshape(out.shape)) ** 2).reshape(len(x), -1), -1)
            return err, err

        n = data["x"].shape[0]
        chunk = min(n, eval_chunk)
        pad = (-n) % chunk
        xs, ys = (jnp.concatenate([a, jnp.zeros((pad, *a.shape[1:]), a.dtype)]) for a in
                  (data["x"], data["y"]))
        resh = lambda a: a.reshape(-1, chunk, *a.shape[1:])
        loss, score = jax.lax.map(lambda xy: per_example(*xy), (resh(xs), resh(ys)))
        mask = jnp.arange(n + pad) < n
        mean = lambda v: jnp.sum(jnp.where(mask, v.reshape(-1), 0.0)) / n
        return {"loss": mean(loss), "accuracy" if classify else "mse": mean(score)}

    # Trace init abstractly now (no compile): a model that cannot take this data raises its
    # ValueError here, which becomes one clear config error before any work is done.
    try:
        jax.eval_shape(init, jax.random.key(0))
    except ValueError as e:
        raise ConfigError(f"model '{config['model']['name']}' cannot take inputs of shape "
                          f"{tuple(spec['input_shape'])}: {e}") from None
    return Algorithm(init, step, evaluate)


def check_input_shape(model_cfg: dict, input_shape: tuple) -> None:
    """ConfigError naming both shapes when the data does not match `model.input_shape`."""
    expected = model_cfg.get("input_shape")
    if expected is None:
        return
    expected = (expected,) if isinstance(expected, int) else expected
    if not (isinstance(expected, (list, tuple)) and all(type(d) is int and d > 0 for d in expected)):
        raise ConfigError(f"config key 'model.input_shape': must be a list of positive integers "
                          f"(the shape of one example) or None; got {model_cfg['input_shape']!r}")
    if tuple(expected) != tuple(input_shape):
        raise ConfigError(
            f"the data gives examples of shape {tuple(input_shape)}, but model.input_shape expects "
            f"{tuple(expected)}; if the model should take this data, set "
            f"model.input_shape={list(input_shape)}")


def default_config(**sections) -> dict:
    """A complete supervised config; keyword arguments update its sections (dicts) or set keys."""
    config = {
        "algorithm": "supervised",
        "seed": 0,
        "data": {"name": "mnist1d", "batch_size": 100, "shuffle": False,
                 "validation_fraction": 0.0, "augment_shift": 0, "augment_noise": 0.0},
        "model": models.defaults("mlp"),
        "optim": optim.defaults(),
        "loop": loop_defaults(),
        "published": {},
    }
    if "name" in sections.get("model", {}):  # another family: start from its own full section
        config["model"] = models.defaults(sections["model"]["name"])
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(config.get(key), dict):
            config[key] = {**config[key], **value}
        else:
            config[key] = value
    return config
