"""Prototypical Networks (Snell, Swersky & Zemel 2017): classify a query by its distance to the
mean embedding (prototype) of each class's support examples.

    state = State(step, params, opt_state)          # params: the embedding network's
    batch = N-way episodes {'support': {'x': [B, N*K, ...], 'y': [B, N*K]}, 'query': {...}}

The embedding is the model's output (`model.*`, num_outputs = `meta.embedding_dim`); logits are
minus squared Euclidean distances to the N prototypes. Training minimises the query cross-entropy
of each episode, B episodes per step (one `vmap`). `adapt(params, support, key)` returns the
prototypes [N, D]: ProtoNets adapt to a task by averaging, not by gradient steps.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from dlcore import meta, models, optim
from dlcore.config import check
from dlcore.core import Algorithm, Data
from dlcore.meta import State


def defaults() -> dict:
    """The sections ProtoNets read: the embedding network (`model`, num_outputs =
    meta.embedding_dim) and its optimizer."""
    return {"model": {"name": "cnn"}, "optim": optim.defaults(),
            "meta": meta.defaults("embedding_dim")}


def make(config: dict, data: Data, steps: int) -> Algorithm:
    spec = data.spec
    check(spec["task"] == "classification" and "eval_tasks" in spec, "data.name",
          "prototypical networks classify episodes; choose a few-shot data set (glyphs, "
          "digits_classes)")
    dim = meta.validate(config["meta"])["embedding_dim"]
    model = models.build(config["model"], spec["input_shape"], dim)
    embed = meta.model_apply(model, spec["input_shape"])
    tx = optim.build(config["optim"], steps)
    eval_tasks = spec["eval_tasks"]

    def init(key: jax.Array) -> State:
        params = meta.init_params(model, spec["input_shape"], key)
        return State(jnp.zeros((), jnp.int32), params, tx.init(params))

    def prototypes(params, support: dict, n_way: int) -> jax.Array:
        """[N, D]: the mean embedding of each class's support examples."""
        z = embed(params, support["x"])
        onehot = jax.nn.one_hot(support["y"], n_way, dtype=z.dtype)  # [N*K, N]
        return (onehot.T @ z) / jnp.maximum(onehot.sum(0), 1.0)[:, None]

    def task_scores(params, task: dict, n_way: int):
        protos = prototypes(params, task["support"], n_way)
        z = embed(params, task["query"]["x"])
        logits = -jnp.sum((z[:, None, :] - protos[None]) ** 2, -1)  # [N*Q, N]
        y = task["query"]["y"]
        return (optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(),
                (jnp.argmax(logits, -1) == y).mean())

    def adapt(params, support: dict, key: jax.Array, n_way: int | None = None) -> jax.Array:
        """The prototypes [N, D] of one task's support set ({'x': [N*K, ...], 'y': [N*K]})."""
        n_way = n_way or spec["num_outputs"]
        meta.check_support(support, spec["input_shape"], "classification", n_way)
        return prototypes(params, support, n_way)

    def step(state: State, batch: dict, key: jax.Array) -> tuple[State, dict]:
        def loss(params):
            l, acc = jax.vmap(lambda t: task_scores(params, t, spec["num_outputs"]))(batch)
            return l.mean(), acc.mean()
        (l, acc), grads = jax.value_and_grad(loss, has_aux=True)(state.params)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        return State(state.step + 1, params, opt_state), {"loss": l, "accuracy": acc}

    def evaluate(state: State, split: dict, key: jax.Array) -> dict:
        def per_task(task):
            l, acc = task_scores(state.params, task, spec["test_n_way"])
            return {"loss": l[None], "score": acc[None], "clipped": jnp.zeros((), bool)}
        return meta.evaluate_tasks(per_task, split, eval_tasks, "classification")

    return Algorithm(init, step, evaluate, headline=("test_accuracy",),
                     pictures=meta.pictures("classification"), extras={"adapt": adapt})
