"""The transfer baseline of the meta-learning papers: train one model on the pooled data of the
training tasks, then fine-tune it on each test task's support set.

    state = State(step, params, opt_state)
    batch = a batch of tasks, as for dlcore.algorithms.maml

Regression (Finn et al.'s "pretrained" sinusoid baseline): ordinary regression on every point of
every task in the batch. Classification: a classifier over all the training classes (an episode's
labels are mapped back to its classes' global indices); at test its 'head' layer is replaced by a
zero-initialised N-way head and the whole network fine-tuned on the support set. Fine-tuning takes
`meta.test_steps` steps of `meta.test_inner_lr` (Finn et al. fine-tune the sinusoid baseline with
0.02); `meta.inner_*` are unused.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from dlcore import meta, models, optim
from dlcore.core import Algorithm, Data
from dlcore.meta import State


def defaults() -> dict:
    """The sections the pretrained baseline reads (fine-tuning: meta.test_*)."""
    return {"model": {"name": "mlp"}, "optim": optim.defaults(),
            "meta": meta.defaults("test_inner_lr", "test_steps", "inner_grad_clip",
                                  "task_batching", test_inner_lr=0.02)}


def make(config: dict, data: Data, steps: int) -> Algorithm:
    spec = data.spec
    meta.require_tasks(spec, "the pretrained baseline")
    m = meta.validate(config["meta"])
    classify = spec["task"] == "classification"
    # pretraining predicts every training class; fine-tuning an N-way task swaps the head
    model = models.build(config["model"], spec["input_shape"],
                         spec["num_train_classes"] if classify else 1)
    test_model = (models.build(config["model"], spec["input_shape"], spec["test_n_way"])
                  if classify else model)
    pool_loss = meta.task_loss(meta.model_apply(model, spec["input_shape"]), spec["task"])
    test_apply = meta.model_apply(test_model, spec["input_shape"])
    loss = meta.task_loss(test_apply, spec["task"])
    tx = optim.build(config["optim"], steps)
    eval_tasks = spec["eval_tasks"]

    def init(key: jax.Array) -> State:
        params = meta.init_params(model, spec["input_shape"], key)
        return State(jnp.zeros((), jnp.int32), params, tx.init(params))

    def pooled(batch: dict) -> dict:
        """Every example of every task: {'x': [B * (K + Q), ...], 'y'} with global labels."""
        parts = [batch["support"], batch["query"]]
        if classify:  # episode label i is class batch['classes'][:, i]
            parts = [{"x": p["x"], "y": jnp.take_along_axis(batch["classes"], p["y"], 1)}
                     for p in parts]
        return jax.tree.map(lambda a, b: jnp.concatenate([a, b], 1).reshape(-1, *a.shape[2:]),
                            *parts)

    def step(state: State, batch: dict, key: jax.Array) -> tuple[State, dict]:
        (l, score), grads = jax.value_and_grad(pool_loss, has_aux=True)(state.params,
                                                                         pooled(batch))
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        metrics = {"loss": l, "accuracy": score} if classify else {"loss": l}
        return State(state.step + 1, params, opt_state), metrics

    def for_task(params):
        """The pretrained parameters a test task starts from (classification: a zero N-way head)."""
        if not classify:
            return params
        head = params["head"]
        n = spec["test_n_way"]
        return {**params, "head": {"kernel": jnp.zeros((head["kernel"].shape[0], n)),
                                   "bias": jnp.zeros((n,))}}

    def adapt(params, support: dict, key: jax.Array, steps: int = m["test_steps"],
              lr: float = m["test_inner_lr"]):
        """The pretrained params fine-tuned on one task's support set ({'x': [K, ...], 'y'})."""
        meta.check_support(support, spec["input_shape"], spec["task"],
                           spec["test_n_way"] if classify else None)
        return meta.adapt(loss, for_task(params), support, lr, steps, m["inner_grad_clip"])

    def evaluate(state: State, split: dict, key: jax.Array) -> dict:
        def per_task(task):
            return meta.adaptation_curve(loss, for_task(state.params), task, m["test_inner_lr"],
                                         m["test_steps"], m["inner_grad_clip"])
        return meta.evaluate_tasks(per_task, split, eval_tasks, spec["task"],
                                   unroll=m["task_batching"] == "unroll")

    return Algorithm(init, step, evaluate, headline=meta.HEADLINE[spec["task"]],
                     pictures=meta.pictures(spec["task"], adapt, test_apply),
                     extras={"adapt": adapt})
