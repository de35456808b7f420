"""Reptile (Nichol, Achiam & Schulman 2018): move the initialisation toward the parameters that
plain SGD reaches on each task.

    state = State(step, params, opt_state)
    batch = a batch of tasks, as for dlcore.algorithms.maml

Each task's parameters take `meta.inner_steps` gradient steps of `meta.inner_lr` on all of the
task's points (Reptile has no support/query split in training); the meta-gradient is
params - mean over tasks of the adapted params, one `vmap`, and the optimizer (`optim`) applies it.
No second derivatives. Evaluation is MAML's: adapt on the support set, score on the query set.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from dlcore import meta, optim
from dlcore.core import Algorithm, Data
from dlcore.meta import State


def defaults() -> dict:
    """The sections Reptile reads."""
    return {"model": {"name": "mlp"}, "optim": optim.defaults(),
            "meta": meta.defaults("inner_lr", "inner_steps", "test_inner_lr", "test_steps",
                                  "inner_grad_clip", "task_batching")}


def make(config: dict, data: Data, steps: int) -> Algorithm:
    spec = data.spec
    m, model, apply, loss, tx = meta.parts(config, data, steps, "Reptile")
    eval_tasks = spec["eval_tasks"]

    def init(key: jax.Array) -> State:
        params = meta.init_params(model, spec["input_shape"], key)
        return State(jnp.zeros((), jnp.int32), params, tx.init(params))

    def adapt(params, support: dict, key: jax.Array, steps: int = m["inner_steps"],
              lr: float = m["inner_lr"]):
        """params after `steps` SGD steps on one task's data ({'x': [K, ...], 'y'})."""
        meta.check_support(support, spec["input_shape"], spec["task"], spec["num_outputs"])
        return meta.adapt(loss, params, support, lr, steps, m["inner_grad_clip"])

    def step(state: State, batch: dict, key: jax.Array) -> tuple[State, dict]:
        every = jax.tree.map(lambda s, q: jnp.concatenate([s, q], axis=1),
                             batch["support"], batch["query"])  # [B, K + Q, ...]
        keys = jax.random.split(key, len(every["x"]))
        adapted = jax.vmap(adapt, in_axes=(None, 0, 0))(state.params, every, keys)
        grads = jax.tree.map(lambda p, a: p - a.mean(0), state.params, adapted)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        l, score = jax.vmap(loss, in_axes=(0, 0))(adapted, every)  # after adapting, on the task
        metrics = {"loss": l.mean()}
        if spec["task"] == "classification":
            metrics["accuracy"] = score.mean()
        return State(state.step + 1, params, opt_state), metrics

    def evaluate(state: State, split: dict, key: jax.Array) -> dict:
        def per_task(task):
            return meta.adaptation_curve(loss, state.params, task, m["test_inner_lr"],
                                         m["test_steps"], m["inner_grad_clip"])
        return meta.evaluate_tasks(per_task, split, eval_tasks, spec["task"],
                                   unroll=m["task_batching"] == "unroll")

    return Algorithm(init, step, evaluate, headline=meta.HEADLINE[spec["task"]],
                     pictures=meta.pictures(spec["task"], adapt, apply), extras={"adapt": adapt})
