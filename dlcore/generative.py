"""What the algorithms that learn without labels share (autoencoder, vae, gan): networks that map
examples to codes and codes back to examples, pixel likelihoods, and means over a whole split.

Every network is a dlcore model (`dlcore.models`: a family, or a Flax module of yours) mapping a
batch to a flat vector [b, n]; a network that produces examples has n = prod(example shape) and
its output is reshaped here (`as_examples`). So an MLP, a CNN encoder and a transposed-conv decoder
(`deconv`) all fit, and a decoder need not know the data.
"""
from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from dlcore import models
from dlcore.config import ConfigError, check

LOG_2PI = math.log(2 * math.pi)


class State(NamedTuple):
    """The state of an algorithm that trains some networks with one optimizer."""
    step: jax.Array   # int32 scalar: updates applied so far
    params: Any       # {network: params} (and any other trained arrays, e.g. a VAE's variance)
    model_state: Any  # {network: other collections (batch statistics), {} when none}
    opt_state: Any


def gradient_step(loss_fn: Callable, tx: optax.GradientTransformation) -> Callable:
    """step(state, batch, key) -> (state, metrics): one optimizer update on
    loss_fn(params, model_state, batch['x'], key) -> (loss, (metrics, new model_state));
    the metrics are {'loss': loss, **metrics}."""
    def step(state: State, batch: dict, key: jax.Array) -> tuple[State, dict]:
        (loss, (metrics, model_state)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            state.params, state.model_state, batch["x"], key)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        return State(state.step + 1, params, model_state, opt_state), {"loss": loss, **metrics}
    return step


def require_examples(spec: dict, algorithm: str) -> tuple:
    """The example shape of a source of examples {'x', ...}; ConfigError for tasks and episodes."""
    check("input_shape" in spec and "eval_tasks" not in spec and spec.get("task") != "control"
          and spec.get("task") != "language_model", "data.name",
          f"{algorithm} learns from batches of examples {{'x', ...}}; choose a source of "
          "examples (mnist_digits, digits, mnist1d, mixture, moons, npz, ...)")
    return tuple(spec["input_shape"])


def positive_int(value, key: str, what: str) -> int:
    check(type(value) is int and 0 < value < 2**31, key, f"{what} must be a positive integer; "
          f"got {value!r}")
    return value


def network(cfg: dict, section: str, input_shape: tuple, outputs: int) -> models.Model:
    """models.build for the section `section` (its ConfigErrors name the section, not 'model')."""
    try:
        return models.build(cfg, input_shape, outputs)
    except ConfigError as e:
        raise ConfigError(str(e).replace("'model.", f"'{section}.").replace(
            "model.input_shape", f"{section}.input_shape")) from None


def init(model: models.Model, key: jax.Array, input_shape: tuple) -> tuple[dict, dict]:
    """(params, other collections) of a model for examples of `input_shape`."""
    variables = model.init(key, jnp.zeros((1, *input_shape), jnp.float32))
    return variables["params"], {k: v for k, v in variables.items() if k != "params"}


def apply(model: models.Model, params, state: dict, x, train: bool, key=None):
    """(out, new state) of a model given its params and other collections."""
    return model.apply({"params": params, **state}, x, train, key)


def as_examples(out: jax.Array, shape: tuple) -> jax.Array:
    """[b, prod(shape)] network outputs -> [b, *shape]."""
    return out.reshape(out.shape[0], *shape)


def per_example_sum(v: jax.Array) -> jax.Array:
    """[b, ...] -> [b]: the sum over everything but the example axis."""
    return v.reshape(v.shape[0], -1).sum(-1)


def bernoulli_log_prob(logits: jax.Array, x: jax.Array) -> jax.Array:
    """log p(x | logits) of independent Bernoulli pixels, summed per example: [b, ...] -> [b].
    x may be grey levels in [0, 1] (then it is minus the binary cross-entropy)."""
    return per_example_sum(x * logits - jax.nn.softplus(logits))


def gaussian_log_prob(mean: jax.Array, x: jax.Array, log_variance) -> jax.Array:
    """log N(x; mean, exp(log_variance) I), summed per example: [b, ...] -> [b]. log_variance: a
    scalar or an array broadcasting against x."""
    lv = jnp.broadcast_to(log_variance, x.shape)
    return per_example_sum(-0.5 * ((x - mean) ** 2 * jnp.exp(-lv) + lv + LOG_2PI))


def chunked_mean(per_example: Callable, x: jax.Array, chunk: int, key: jax.Array) -> dict:
    """The mean over all n examples of per_example(x_chunk [c, ...], key) -> {name: [c]}, computed
    chunk by chunk (lax.map: one chunk's activations in memory at a time); the last chunk is padded
    and the padding masked out. Chunk i draws from fold_in(key, i)."""
    n = x.shape[0]
    c = min(n, chunk)
    pad = (-n) % c
    xs = jnp.concatenate([x, jnp.zeros((pad, *x.shape[1:]), x.dtype)]).reshape(-1, c, *x.shape[1:])
    keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.arange(xs.shape[0]))
    values = jax.lax.map(lambda a: per_example(a[0], a[1]), (xs, keys))
    mask = jnp.arange(n + pad) < n
    return {k: jnp.sum(jnp.where(mask, v.reshape(-1), 0.0)) / n for k, v in values.items()}


def eval_chunk(value, key: str) -> int:
    return positive_int(value, key, "the number of examples evaluated at once")
