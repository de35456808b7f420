"""Meta-SGD (Li, Zhou, Chen & Li 2017): MAML whose inner learning rate is learned, one rate per
parameter, meta-trained with the initialisation.

    state = State(step, params={'net': model parameters, 'lr': the same tree of rates}, opt_state)
    batch = a batch of tasks, as for dlcore.algorithms.maml

The rates start at `meta.inner_lr` everywhere (Li et al. draw them at random; a constant start
makes Meta-SGD begin exactly where MAML begins). Test-time adaptation takes `meta.test_steps` steps
with the learned rates (`meta.test_inner_lr` is not used).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from dlcore import meta, optim
from dlcore.core import Algorithm, Data
from dlcore.meta import State


def defaults() -> dict:
    """The sections Meta-SGD reads (the rates start at meta.inner_lr)."""
    return {"model": {"name": "mlp"}, "optim": optim.defaults(),
            "meta": meta.defaults("inner_lr", "inner_steps", "test_steps", "inner_grad_clip",
                                  "task_batching")}


def make(config: dict, data: Data, steps: int) -> Algorithm:
    spec = data.spec
    m, model, apply, loss, tx = meta.parts(config, data, steps, "Meta-SGD")
    eval_tasks = spec["eval_tasks"]

    def init(key: jax.Array) -> State:
        net = meta.init_params(model, spec["input_shape"], key)
        params = {"net": net, "lr": jax.tree.map(lambda p: jnp.full_like(p, m["inner_lr"]), net)}
        return State(jnp.zeros((), jnp.int32), params, tx.init(params))

    def adapt(params, support: dict, key: jax.Array, steps: int = m["inner_steps"]):
        """params['net'] adapted to one task's support set with the learned rates params['lr']."""
        meta.check_support(support, spec["input_shape"], spec["task"], spec["num_outputs"])
        return meta.adapt(loss, params["net"], support, params["lr"], steps, m["inner_grad_clip"])

    def meta_loss(params, batch, key):
        def one(task, k):
            return loss(adapt(params, task["support"], k), task["query"])
        l, score = jax.vmap(one)(batch, jax.random.split(key, len(batch["query"]["x"])))
        return l.mean(), score.mean()

    def step(state: State, batch: dict, key: jax.Array) -> tuple[State, dict]:
        (l, score), grads = jax.value_and_grad(meta_loss, has_aux=True)(state.params, batch, key)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        metrics = {"loss": l, "mean_inner_lr": _mean_leaf(params["lr"])}
        if spec["task"] == "classification":
            metrics["accuracy"] = score
        return State(state.step + 1, params, opt_state), metrics

    def evaluate(state: State, split: dict, key: jax.Array) -> dict:
        def per_task(task):
            return meta.adaptation_curve(loss, state.params["net"], task, state.params["lr"],
                                         m["test_steps"], m["inner_grad_clip"])
        return meta.evaluate_tasks(per_task, split, eval_tasks, spec["task"],
                                   unroll=m["task_batching"] == "unroll")

    return Algorithm(init, step, evaluate, headline=meta.HEADLINE[spec["task"]],
                     pictures=meta.pictures(spec["task"], adapt, apply), extras={"adapt": adapt})


def _mean_leaf(tree) -> jax.Array:
    leaves = jax.tree.leaves(tree)
    return sum(jnp.sum(a) for a in leaves) / sum(a.size for a in leaves)
