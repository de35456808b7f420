"""Supervised learning: classification (softmax cross-entropy) and regression (squared error).

    state = State(step, params, model_state, opt_state)
    batch = {'x': [b, *input_shape], 'y': [b] int (classification) or [b, d] float (regression)}

Any model `model.name` resolves to (dlcore.models: dlcore's families, a Flax Linen or NNX module of
your own). Regularization is the optimizer's (dlcore.optim: the L2 penalty, decoupled weight
decay, clipping) and the model's (dropout, batch norm); dropout draws from the step's key, and
batch-norm statistics are the `model_state`, updated only in training steps.
"""
from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from dlcore import losses, models, optim
from dlcore.config import check
from dlcore.core import Algorithm, Data, Snapshot


class State(NamedTuple):
    step: jax.Array      # int32 scalar: updates applied so far
    params: Any          # the model's 'params' collection
    model_state: Any     # other collections, e.g. {'batch_stats': ...}; {} when none
    opt_state: Any


def defaults() -> dict:
    """The sections supervised learning reads (the model's keys come from its family)."""
    return {"model": {"name": "mlp"}, "optim": optim.defaults(),
            # log_details: the gradient norm and the learning rate as step metrics too (off by
            # default: on a CPU each extra metric costs ~5 % of a small step)
            "supervised": {"eval_batch_size": 4096, "log_details": False}}


def make(config: dict, data: Data, steps: int) -> Algorithm:
    """From config['model'], config['optim'] and config['supervised'], for `steps` steps of `data`."""
    spec = data.spec
    check(spec.get("task") in ("classification", "regression") and "eval_tasks" not in spec,
          "data.name", "supervised learning takes batches of examples {'x', 'y'}; choose a "
          "source of examples (mnist1d, digits, diabetes, adding, npz, ...)")
    if spec["task"] == "classification":
        losses.check_labels(data)
    model = models.build(config["model"], spec["input_shape"], spec["num_outputs"])
    tx = optim.build(config["optim"], steps)
    own = config["supervised"]
    log_details, eval_chunk = own["log_details"], own["eval_batch_size"]
    lr_at = optim.learning_rate_at(config["optim"], steps)
    classify = spec["task"] == "classification"
    check(type(eval_chunk) is int and eval_chunk > 0, "supervised.eval_batch_size",
          f"must be a positive integer; got {eval_chunk!r}")
    check(isinstance(log_details, bool), "supervised.log_details",
          f"must be true or false; got {log_details!r}")

    def init(key: jax.Array) -> State:
        variables = model.init(key, jnp.zeros((1, *spec["input_shape"]), jnp.float32))
        params = variables["params"]
        model_state = {k: v for k, v in variables.items() if k != "params"}
        return State(jnp.zeros((), jnp.int32), params, model_state, tx.init(params))

    def loss_fn(params, model_state, batch, key):
        out, new_model_state = model.apply({"params": params, **model_state}, batch["x"],
                                           True, key)
        y = batch["y"]
        loss = losses.cross_entropy(out, y) if classify else losses.mse(out, y)
        return loss, (loss, out, new_model_state)

    def step(state: State, batch: dict, key: jax.Array) -> tuple[State, dict]:
        grads, (loss, out, model_state) = jax.grad(loss_fn, has_aux=True)(
            state.params, state.model_state, batch, key)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        metrics = {"loss": loss}
        if classify:
            metrics["accuracy"] = losses.accuracy(out, batch["y"])
        if log_details:
            metrics["grad_norm"] = optax.tree.norm(grads)
            metrics["learning_rate"] = lr_at(state.opt_state, state.step)
        return State(state.step + 1, params, model_state, opt_state), metrics

    def evaluate(state: State, split: dict, key: jax.Array) -> dict:
        """Mean loss and accuracy (or mse) over the whole split, in chunks of eval_batch_size."""
        def per_example(x, y):
            out, _ = model.apply(models.variables_of(state), x, False, None)
            if classify:
                return (optax.softmax_cross_entropy_with_integer_labels(out, y),
                        (jnp.argmax(out, -1) == y).astype(jnp.float32))
            err = jnp.mean(((out - y.reshape(out.shape)) ** 2).reshape(len(x), -1), -1)
            return err, err

        n = split["x"].shape[0]
        chunk = min(n, eval_chunk)
        pad = (-n) % chunk
        xs, ys = (jnp.concatenate([a, jnp.zeros((pad, *a.shape[1:]), a.dtype)]) for a in
                  (split["x"], split["y"]))
        resh = lambda a: a.reshape(-1, chunk, *a.shape[1:])
        loss, score = jax.lax.map(lambda xy: per_example(*xy), (resh(xs), resh(ys)))
        mask = jnp.arange(n + pad) < n
        mean = lambda v: jnp.sum(jnp.where(mask, v.reshape(-1), 0.0)) / n
        return {"loss": mean(loss), "accuracy" if classify else "mse": mean(score)}

    def pictures(s: Snapshot) -> list:
        """activations.png (what each recorded layer computes for a few test inputs) and the
        model family's own pictures (a CNN's filters, a recurrent net's gradient through time)."""
        from dlcore import analysis, plots
        test = s.data.splits["test"]
        paths = []
        acts = analysis.intermediates(model, models.variables_of(s.state), test["x"][:4])
        if acts:
            paths.append(plots.activations(test["x"][:4], test["y"][:4], acts,
                                           s.out_dir / "activations.png",
                                           f"{s.title}: activations for 4 test inputs"))
        if hasattr(model.family, "pictures"):
            paths += model.family.pictures(model, models.variables_of(s.state),
                                           models.variables_of(s.initial), s.data, s.out_dir,
                                           s.title)
        return paths

    return Algorithm(init, step, evaluate, headline=("test_accuracy",) if classify else ("test_mse",),
                     pictures=pictures, extras={"model": model})
