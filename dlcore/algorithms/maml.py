"""MAML (Finn, Abbeel & Levine 2017) and first-order MAML (`meta.first_order`).

    state = State(step, params, opt_state, hyper={'inner_lr': f32[], 'inner_steps': i32[]})
    batch = a batch of tasks {'support': {'x': [B, K, ...], 'y'}, 'query': {'x': [B, Q, ...], 'y'}}

The inner loop `adapt(params, support, key) -> params` takes `meta.inner_steps` gradient steps of
size `meta.inner_lr` on one task's support set; the meta-loss is the query loss of the adapted
parameters, averaged over the batch of tasks by one `vmap`, and its gradient flows back through
every inner step (second order) unless `meta.first_order`. At evaluation each test task is adapted
for `meta.test_steps` steps of `meta.test_inner_lr`, scored after every step (dlcore.meta).

The inner learning rate and step count live in the state (`hyper`, set from `meta.inner_lr` and
`meta.inner_steps` by `init`) and the step and evaluation read them there, so states that differ
only in them run in one program, `jax.vmap`-ped (dlcore.sweep). The step count is a traced
number: the inner loop is `meta.inner_steps` long and masks the steps past the state's own count
(dlcore.meta.adapt), so `meta.inner_steps` is the most a state may ask for. With
`meta.test_inner_lr` 0, evaluation adapts with the state's inner learning rate. `Algorithm.adapt`
takes parameters, not a state, and uses the config's values.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from dlcore import meta, optim
from dlcore.core import Algorithm, Data
from dlcore.meta import State

# the config keys a MAML state carries as traced hyperparameters, and their names in `state.hyper`
# (dlcore.sweep sets them per member)
HYPER = {"meta.inner_lr": "inner_lr", "meta.inner_steps": "inner_steps"}


def defaults() -> dict:
    """The sections MAML reads: Finn et al.'s sinusoid settings."""
    return {"model": {"name": "mlp"}, "optim": optim.defaults(),
            "meta": meta.defaults("inner_lr", "inner_steps", "test_inner_lr", "test_steps",
                                  "inner_grad_clip", "first_order", "task_batching")}


def make(config: dict, data: Data, steps: int) -> Algorithm:
    spec = data.spec
    m, model, apply, loss, tx = meta.parts(config, data, steps, "MAML")
    eval_tasks = spec["eval_tasks"]

    def init(key: jax.Array) -> State:
        params = meta.init_params(model, spec["input_shape"], key)
        hyper = {"inner_lr": jnp.asarray(m["inner_lr"], jnp.float32),
                 "inner_steps": jnp.asarray(m["inner_steps"], jnp.int32)}
        return State(jnp.zeros((), jnp.int32), params, tx.init(params), hyper)

    def adapt(params, support: dict, key: jax.Array, steps: int = m["inner_steps"],
              lr: float = m["inner_lr"]):
        """params adapted to one task's support set ({'x': [K, ...], 'y'}); key unused (the inner
        loop is deterministic), kept for the common signature."""
        meta.check_support(support, spec["input_shape"], spec["task"], spec["num_outputs"])
        return meta.adapt(loss, params, support, lr, steps, m["inner_grad_clip"], m["first_order"])

    def meta_loss(params, batch, key, hyper):
        def one(task, k):  # adapt(params, support, k) with the state's rate and step count
            meta.check_support(task["support"], spec["input_shape"], spec["task"], spec["num_outputs"])
            adapted = meta.adapt(loss, params, task["support"], hyper["inner_lr"],
                                 hyper["inner_steps"], m["inner_grad_clip"], m["first_order"],
                                 max_steps=m["inner_steps"])
            return loss(adapted, task["query"])
        keys = jax.random.split(key, len(batch["query"]["x"]))
        if m.get("task_batching", "vmap") == "vmap":
            l, score = jax.vmap(one)(batch, keys)
        else:  # one program, tasks in turn: see meta.defaults for when this is faster
            outs = [one(jax.tree.map(lambda a: a[i], batch), keys[i]) for i in range(len(keys))]
            l, score = (jnp.stack(v) for v in zip(*outs))
        return l.mean(), score.mean()

    def step(state: State, batch: dict, key: jax.Array) -> tuple[State, dict]:
        (l, score), grads = jax.value_and_grad(meta_loss, has_aux=True)(state.params, batch, key,
                                                                         state.hyper)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        metrics = {"loss": l} if spec["task"] == "regression" else {"loss": l, "accuracy": score}
        return State(state.step + 1, params, opt_state, state.hyper), metrics

    def evaluate(state: State, split: dict, key: jax.Array) -> dict:
        test_lr = config["meta"]["test_inner_lr"] or state.hyper["inner_lr"]

        def per_task(task):
            return meta.adaptation_curve(loss, state.params, task, test_lr,
                                         m["test_steps"], m["inner_grad_clip"])
        return meta.evaluate_tasks(per_task, split, eval_tasks, spec["task"],
                                   unroll=m["task_batching"] == "unroll")

    return Algorithm(init, step, evaluate, headline=meta.HEADLINE[spec["task"]],
                     pictures=meta.pictures(spec["task"], adapt, apply), extras={"adapt": adapt})
