"""Multilayer perceptrons and logistic regression (Flax Linen).

Models know nothing of training: `__call__(x, train)` maps a batch to outputs. Dropout draws from
the 'dropout' rng stream, batch norm keeps its statistics in the 'batch_stats' collection; both are
explicit at `apply` time (`rngs=`, `mutable=`).
"""
from __future__ import annotations

from typing import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from dlcore.config import check, one_of

ACTIVATIONS: dict[str, Callable] = {
    "sigmoid": nn.sigmoid,
    "tanh": jnp.tanh,
    "relu": nn.relu,
    "leaky_relu": nn.leaky_relu,
    "elu": nn.elu,
    "gelu": nn.gelu,
    "silu": nn.silu,
    "softplus": nn.softplus,
    "identity": lambda x: x,
}


def _torch_uniform(fan_in: int):
    """U(-1/sqrt(fan_in), 1/sqrt(fan_in)): PyTorch's nn.Linear default, for kernels and biases.

    Reproductions of PyTorch papers (MNIST-1D among them) use it to match the reference runs.
    """
    bound = 1.0 / jnp.sqrt(fan_in)

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)
    return init


KERNEL_INITS = {
    "lecun_normal": lambda fan_in: nn.initializers.lecun_normal(),
    "he_normal": lambda fan_in: nn.initializers.he_normal(),
    "he_uniform": lambda fan_in: nn.initializers.he_uniform(),
    "xavier_uniform": lambda fan_in: nn.initializers.xavier_uniform(),
    "xavier_normal": lambda fan_in: nn.initializers.xavier_normal(),
    "torch": _torch_uniform,
    # N(0, 0.02^2) kernels, zero biases: DCGAN's (Radford et al. 2016), which PacGAN's networks use
    "normal_002": lambda fan_in: nn.initializers.normal(0.02),
}


def dense(features: int, fan_in: int, init: str, name: str | None = None) -> nn.Dense:
    """A Dense layer with the named initializer ('torch' also draws biases uniformly)."""
    one_of(init, "model.init", KERNEL_INITS)
    bias_init = _torch_uniform(fan_in) if init == "torch" else nn.initializers.zeros
    return nn.Dense(features, kernel_init=KERNEL_INITS[init](fan_in), bias_init=bias_init,
                    name=name)


class MLP(nn.Module):
    """x: [batch, ...] (flattened) -> outputs [batch, num_outputs].

    hidden: widths of the hidden layers; () gives logistic/linear regression.
    residual: add the layer's input to its output wherever the widths agree (h + act(W h)).
    batch_norm: normalise each hidden pre-activation, keeping running statistics for evaluation
    (running = momentum * running + (1 - momentum) * batch); dropout: rate after each activation.
    """
    hidden: Sequence[int]
    num_outputs: int
    activation: str = "relu"
    residual: bool = False
    dropout: float = 0.0
    batch_norm: bool = False
    initializer: str = "lecun_normal"
    momentum: float = 0.9

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        act = ACTIVATIONS[one_of(self.activation, "model.activation", ACTIVATIONS)]
        h = x.reshape(x.shape[0], -1)
        for i, width in enumerate(self.hidden):
            z = dense(width, h.shape[-1], self.initializer, name=f"dense_{i}")(h)
            if self.batch_norm:
                z = nn.BatchNorm(use_running_average=not train, momentum=self.momentum,
                                 name=f"bn_{i}")(z)
            z = act(z)
            if self.dropout > 0:
                z = nn.Dropout(self.dropout, deterministic=not train)(z)
            h = h + z if self.residual and z.shape[-1] == h.shape[-1] else z
            self.sow("intermediates", f"layer_{i}", h)  # free unless apply(mutable=...) asks
        return dense(self.num_outputs, h.shape[-1], self.initializer, name="head")(h)


def logistic_regression(num_outputs: int, init: str = "lecun_normal") -> MLP:
    """Logistic (softmax) regression: one linear layer, [batch, ...] -> [batch, num_outputs]."""
    return MLP(hidden=(), num_outputs=num_outputs, initializer=init)


# --- the `mlp` family: its config section ------------------------------------------------------------

def defaults() -> dict:
    """The `model` section's keys (besides name and input_shape)."""
    return {"hidden": (100, 100), "activation": "relu", "residual": False, "dropout": 0.0,
            "batch_norm": False, "batch_norm_momentum": 0.9, "init": "lecun_normal"}


def build(cfg: dict, input_shape: tuple, num_outputs: int) -> MLP:
    """The MLP of a `model` section; ConfigError for any impossible value."""
    hidden = positive_ints(cfg, "hidden", allow_empty=True)
    check_dropout(cfg["dropout"])
    momentum = cfg["batch_norm_momentum"]
    check(type(momentum) in (int, float) and 0.0 <= momentum < 1.0, "model.batch_norm_momentum",
          f"must be a number in [0, 1); got {momentum!r}")
    return MLP(hidden=hidden, num_outputs=num_outputs,
               activation=one_of(cfg["activation"], "model.activation", ACTIVATIONS),
               residual=cfg["residual"], dropout=cfg["dropout"], batch_norm=cfg["batch_norm"],
               momentum=float(momentum), initializer=one_of(cfg["init"], "model.init", KERNEL_INITS))


def check_dropout(rate) -> None:
    check(isinstance(rate, (int, float)) and 0.0 <= rate < 1.0, "model.dropout",
          f"must be in [0, 1); got {rate}")


def positive_ints(cfg: dict, key: str, allow_empty: bool = False) -> tuple:
    """cfg[key] as a tuple of positive integers; ConfigError naming model.<key> otherwise."""
    value = cfg[key]
    ok = isinstance(value, (list, tuple)) and (allow_empty or len(value) > 0) and all(
        type(v) is int and 0 < v < 2**31 for v in value)  # XLA's shapes are int32 here
    check(ok, f"model.{key}", f"must be a list of positive integers (below 2^31); got {value!r}")
    return tuple(value)
