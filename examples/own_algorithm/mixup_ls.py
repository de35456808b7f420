"""An algorithm of your own: mixup (Zhang et al. 2018) with label smoothing, written outside dlcore.

It is the contract of dlcore.core: `defaults()` names the sections it reads, `make(config, data,
steps)` returns init/step/evaluate. It uses dlcore's model and optimizer builders, and no other
algorithm. `algorithm = "mixup_ls"` reaches it from a config next to this file.
"""
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from dlcore import models, optim
from dlcore.core import Algorithm


class State(NamedTuple):
    step: jax.Array
    params: Any
    model_state: Any
    opt_state: Any


def defaults() -> dict:
    return {"model": {"name": "mlp"}, "optim": optim.defaults(),
            "mixup": {"alpha": 0.2, "smoothing": 0.1}}


def make(config: dict, data, steps: int) -> Algorithm:
    spec = data.spec
    model = models.build(config["model"], spec["input_shape"], spec["num_outputs"])
    tx = optim.build(config["optim"], steps)
    alpha, smoothing, n = config["mixup"]["alpha"], config["mixup"]["smoothing"], spec["num_outputs"]

    def init(key):
        variables = model.init(key, jnp.zeros((1, *spec["input_shape"])))
        rest = {k: v for k, v in variables.items() if k != "params"}
        return State(jnp.zeros((), jnp.int32), variables["params"], rest, tx.init(variables["params"]))

    def step(state, batch, key):
        k_mix, k_perm, k_drop = jax.random.split(key, 3)
        lam = jax.random.beta(k_mix, alpha, alpha)
        perm = jax.random.permutation(k_perm, batch["x"].shape[0])
        targets = optax.smooth_labels(jax.nn.one_hot(batch["y"], n), smoothing)
        x = lam * batch["x"] + (1 - lam) * batch["x"][perm]
        t = lam * targets + (1 - lam) * targets[perm]

        def loss_fn(params):
            out, model_state = model.apply({"params": params, **state.model_state}, x, True, k_drop)
            return optax.softmax_cross_entropy(out, t).mean(), model_state
        (loss, model_state), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        return State(state.step + 1, params, model_state, opt_state), {"loss": loss}

    def evaluate(state, split, key):
        out, _ = model.apply({"params": state.params, **state.model_state}, split["x"], False)
        return {"accuracy": jnp.mean(jnp.argmax(out, -1) == split["y"]),
                "loss": optax.softmax_cross_entropy_with_integer_labels(out, split["y"]).mean()}

    return Algorithm(init, step, evaluate, headline=("test_accuracy",))
