"""Supervised learning on graphs: node classification or regression on one graph, and graph
classification or regression on many (dlcore.data.graph_data).

    state = State(step, params, model_state, opt_state)
    batch = {'graph': dlcore.graphs.Graph, 'y': [rows] or [rows, d], 'mask': [rows] bool}

Rows are the graph's nodes for a node task and its graphs for a graph task; the model maps a
Graph to one output row per node or per graph (the `gnn` family: `readout: none` for nodes, a
readout for graphs; or a Flax module of yours taking a Graph), and only the rows of 'mask' count
(the labelled nodes of a split; the real graphs of a batch). A node task trains full-batch: the
step sees the whole graph. A graph task's batch is `batch_size` graphs joined into one Graph.

Evaluation scores a split's masked rows (a node task: its nodes; a graph task: its graphs, in
chunks of `graph.eval_batch_size` graphs) and reports the data's own baselines beside them
(spectral clustering on a block model: 'spectral_accuracy').
"""
from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from dlcore import models, optim
from dlcore.config import ConfigError, check
from dlcore.core import Algorithm, Data, Snapshot
from dlcore.data import graph_data

MODELS = ("model",)


class State(NamedTuple):
    step: jax.Array      # int32 scalar: updates applied so far
    params: Any          # the model's 'params' collection
    model_state: Any     # other collections (batch statistics); {} when none
    opt_state: Any


def defaults() -> dict:
    """The sections graph learning reads (the model's keys come from its family)."""
    return {"model": {"name": "gnn"}, "optim": optim.defaults(),
            "graph": {"eval_batch_size": 256}}


def masked_metrics(out: jax.Array, y: jax.Array, mask: jax.Array, classify: bool) -> dict:
    """{'loss', 'accuracy' | 'mse'}: means over the rows where mask [rows] is True.
    out: [rows, C] logits or [rows, d] predictions; y: [rows] classes or [rows, d] targets."""
    w = mask.astype(jnp.float32)
    count = jnp.maximum(w.sum(), 1.0)
    mean = lambda v: jnp.sum(jnp.where(mask, v, 0.0)) / count
    if classify:
        # a padding row's label may be anything: clip so the gather stays in range
        ce = optax.softmax_cross_entropy_with_integer_labels(out, jnp.clip(y, 0, out.shape[-1] - 1))
        return {"loss": mean(ce), "accuracy": mean((jnp.argmax(out, -1) == y).astype(jnp.float32))}
    err = jnp.mean((out - y.reshape(out.shape)) ** 2, -1)
    return {"loss": mean(err), "mse": mean(err)}


def require_graphs(spec: dict) -> str:
    check(spec.get("level") in ("node", "graph") and "example" in spec, "data.name",
          "graph learning takes graph data (karate, csl, sbm, triangles, or your own through "
          "dlcore.data.graph_data.node_task / graph_task)")
    return spec["level"]


def check_rows(model: models.Model, spec: dict) -> None:
    """ConfigError unless the model gives one output row per node (node task) or per graph
    (graph task) of the example batch: a node task needs `readout: none`, a graph task a readout."""
    g = spec["example"]
    out = jax.eval_shape(lambda: model.apply(model.init(jax.random.key(0), g), g)[0])
    want, what = ((g.num_nodes, "node") if spec["level"] == "node" else (g.num_graphs, "graph"))
    if out.shape[:1] != (want,):
        hint = ("set model.readout=none" if what == "node"
                else "set model.readout (sum, mean, max or attention)")
        raise ConfigError(f"config key 'model.readout': a {what} task needs one output row per "
                          f"{what} ({want}); the model gives {out.shape}: {hint}")


def make(config: dict, data: Data, steps: int) -> Algorithm:
    """From config['model'], config['optim'] and config['graph'], for `steps` steps of `data`."""
    spec = data.spec
    level = require_graphs(spec)
    model = models.build(config["model"], spec["input_shape"], spec["num_outputs"],
                         example=spec["example"])
    check_rows(model, spec)
    tx = optim.build(config["optim"], steps)
    classify = spec["task"] == "classification"
    chunk = config["graph"]["eval_batch_size"]
    check(type(chunk) is int and chunk > 0, "graph.eval_batch_size",
          f"must be a positive integer; got {chunk!r}")

    def init(key: jax.Array) -> State:
        variables = model.init(key, spec["example"])
        params = variables["params"]
        rest = {k: v for k, v in variables.items() if k != "params"}
        return State(jnp.zeros((), jnp.int32), params, rest, tx.init(params))

    def loss_fn(params, model_state, batch, key):
        out, new_state = model.apply({"params": params, **model_state}, batch["graph"], True, key)
        m = masked_metrics(out, batch["y"], batch["mask"], classify)
        return m["loss"], (m, new_state)

    def step(state: State, batch: dict, key: jax.Array) -> tuple[State, dict]:
        grads, (metrics, model_state) = jax.grad(loss_fn, has_aux=True)(
            state.params, state.model_state, batch, key)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        return State(state.step + 1, params, model_state, opt_state), metrics

    def scores(state: State, batch: dict) -> dict:
        out, _ = model.apply(models.variables_of(state), batch["graph"], False, None)
        return masked_metrics(out, batch["y"], batch["mask"], classify)

    def evaluate(state: State, split: dict, key: jax.Array) -> dict:
        baselines = split.get("baselines", {})
        if level == "node":
            return {**scores(state, split), **baselines}
        rows = {k: v for k, v in split.items() if k != "baselines"}
        n = len(rows["y"])
        c = min(n, chunk)
        pad = (-n) % c
        # the last chunk is padded with empty graphs (n_node 0), which the mask leaves out
        padded = {k: jnp.concatenate([v, jnp.zeros((pad, *v.shape[1:]), v.dtype)])
                  .reshape((n + pad) // c, c, *v.shape[1:]) for k, v in rows.items()}
        real = (jnp.arange(n + pad) < n).reshape(-1, c)

        def one(args):
            part, mask = args
            b = graph_data.as_batch(part)
            m = scores(state, {**b, "mask": mask})
            return {k: v * mask.sum() for k, v in m.items()}  # sums, so chunks add up
        sums = jax.lax.map(one, (padded, real))
        return {**{k: v.sum() / n for k, v in sums.items()}, **baselines}

    def pictures(s: Snapshot) -> list:
        from dlcore import graph_plots
        return graph_plots.pictures(model, models.variables_of(s.state), s.data, s.out_dir,
                                    s.title)

    headline = ("test_accuracy",) if classify else ("test_mse",)
    headline += tuple(f"test_{k}" for k in spec.get("baselines", {}).get("test", {}))
    return Algorithm(init, step, evaluate, headline=headline, pictures=pictures,
                     extras={"model": model})


def predict(model: models.Model, variables: dict, graph) -> np.ndarray:
    """The model's outputs for a Graph (evaluation mode): [N, C] or [G, C]."""
    return np.asarray(jax.jit(lambda v, g: model.apply(v, g, False, None)[0])(variables, graph))
