"""Looking inside a trained supervised model: what `dlcore report` and the studies draw.

    run = load_run(workdir)                       # config, data, model, state at init and at the end
    intermediates(run.model, run.final, x)        # {layer name: [b, ...]} activations
    layer_grad_norms(run.model, state, batch, task) # {layer: ||dL/dW||}, input side first
    grad_through_time(run.model, state, batch, task) # [T] mean ||dL/dh_t|| of a recurrent model

All pure functions of (model, state, data); only `load_run` reads files (read-only).
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from dlcore import algorithms, checkpoint, losses, models
from dlcore import data as data_lib
from dlcore.config import ConfigError


class Run(NamedTuple):
    config: dict
    spec: dict
    splits: dict     # {'train': {'x', 'y'}, 'test': ..., ...} numpy arrays
    model: nn.Module
    init: Any        # the state `init` gave this seed (params, model_state, ...)
    final: Any       # the newest checkpoint's state (the best one when early stopping)
    step: int
    algorithm: Any = None  # the rebuilt Algorithm (meta-learning: its `adapt`)


def load_run(workdir: str | Path, seed_index: int = 0) -> Run:
    """Rebuild a finished (or interrupted) run from its directory, without changing anything there.

    Seeds trained in one program are stored stacked; `seed_index` picks one. Seeds trained one
    after another live in workdir/seed_<s>: pass that directory.
    """
    from dlcore.loop import checkpoint_target, split_keys
    workdir = Path(workdir)
    if not (workdir / "config.json").exists():
        raise ConfigError(f"{workdir} is not a run directory (no config.json)")
    config = json.loads((workdir / "config.json").read_text())
    summary_path = workdir / "summary.json"
    seeds = json.loads(summary_path.read_text())["seeds"] if summary_path.exists() else 1
    splits, spec = data_lib.load(config["data"])
    algorithm = algorithms.get(config["algorithm"]).make(config, spec)
    model = models.build(config["model"], spec["num_outputs"])
    seed_keys = [split_keys(jax.random.key(config["seed"] + i))["init"] for i in range(seeds)]
    inits = jax.jit(jax.vmap(algorithm.init))(jnp.stack(seed_keys))
    target = checkpoint_target(inits if seeds > 1 else _seed(inits, 0), config["loop"],
                               seeds if seeds > 1 else None)
    restored = checkpoint.restore_latest(workdir / "checkpoints", target)
    if restored is None:
        raise ConfigError(f"{workdir} has no checkpoint to report on")
    tree, step = restored
    final = tree["early_stopping"]["state"] if "early_stopping" in tree else tree["state"]
    pick = (lambda s: _seed(s, seed_index)) if seeds > 1 else (lambda s: s)
    return Run(config, spec, splits, model, _seed(inits, seed_index), pick(final), step, algorithm)


def _seed(tree, i: int):
    return jax.tree.map(lambda a: a[i], tree)


def _variables(state) -> dict:
    return {"params": state.params, **state.model_state}


def intermediates(model: nn.Module, state, x: jax.Array) -> dict[str, np.ndarray]:
    """{name: activations [b, ...]} that the model records with `sow` (evaluation mode)."""
    _, found = model.apply(_variables(state), x, train=False, mutable=["intermediates"])
    flat = jax.tree_util.tree_flatten_with_path(found.get("intermediates", {}))[0]
    # sow keeps a tuple per name; a layer called once is named without the tuple index
    return {"/".join(str(k.key) for k in path if hasattr(k, "key")): np.asarray(v)
            for path, v in flat}


def _loss(out, y, task):
    return losses.cross_entropy(out, y) if task == "classification" else losses.mse(out, y)


def layer_grad_norms(model: nn.Module, state, batch: dict, task: str) -> dict[str, float]:
    """{layer: ||dL/d kernel||} for every kernel, in the order the layers were created."""
    def loss(params):
        out = model.apply({**_variables(state), "params": params}, batch["x"], train=False)
        return _loss(out, batch["y"], task)
    grads = jax.jit(jax.grad(loss))(state.params)
    flat = jax.tree_util.tree_flatten_with_path(grads)[0]
    norms = {"/".join(str(k.key) for k in path[:-1]): float(jnp.linalg.norm(g))
             for path, g in flat if path[-1].key == "kernel"}
    return dict(sorted(norms.items(), key=lambda kv: _depth_order(kv[0])))


def _depth_order(name: str) -> list:
    """Pytrees sort keys as strings (dense_10 before dense_2); layer names sort by their numbers,
    and the output layer ('head') after the numbered ones."""
    parts = [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name)]
    return [name.startswith("head"), *[(isinstance(p, int), p) for p in parts]]


def grad_through_time(model: nn.Module, state, batch: dict, task: str) -> np.ndarray:
    """[T]: mean over the batch of ||dL/dh_t||, the total derivative of the loss with respect to
    the first layer's hidden state at step t (through every later step). Vanishing gradients show
    as this norm falling by orders of magnitude from the last step back to the first."""
    x = batch["x"] if batch["x"].ndim == 3 else batch["x"][..., None]
    hidden = model.hidden_size

    def loss(perturbation):
        out = model.apply(_variables(state), x, train=False, perturbation=perturbation)
        # the per-example sum makes dL/dh_t of each example independent of the batch size
        return _loss(out, batch["y"], task) * x.shape[0]
    g = jax.jit(jax.grad(loss))(jnp.zeros((x.shape[0], x.shape[1], hidden), jnp.float32))
    return np.asarray(jnp.mean(jnp.linalg.norm(g, axis=-1), axis=0))
