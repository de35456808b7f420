"""Looking inside a trained model: what `dlcore report` and the studies draw.

    intermediates(model, variables, x)             # {layer name: [b, ...]} activations
    layer_grad_norms(model, variables, batch, task)  # {layer: ||dL/dW||}, input side first
    grad_through_time(model, variables, batch, task) # [T] mean ||dL/dh_t|| of a recurrent model

Pure functions of (model, variables, data). model: a dlcore.models.Model or the Flax Linen module
itself; variables: {'params': ..., other collections} (dlcore.models.variables_of(state)). A run
directory is read back with dlcore.experiment.load_run.
"""
from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np

from dlcore import losses


def _module(model):
    """The Flax Linen module behind a dlcore Model (or the module itself); None for NNX."""
    import flax.linen as nn
    module = getattr(model, "module", model)
    return module if isinstance(module, nn.Module) else None


def intermediates(model, variables: dict, x: jax.Array) -> dict[str, np.ndarray]:
    """{name: activations [b, ...]} that a Linen model records with `sow` (evaluation mode);
    {} for a model that records none (or an NNX model)."""
    module = _module(model)
    if module is None:
        return {}
    import inspect
    kwargs = {"train": False} if "train" in inspect.signature(type(module).__call__).parameters else {}
    _, found = module.apply(variables, x, mutable=["intermediates"], **kwargs)
    flat = jax.tree_util.tree_flatten_with_path(found.get("intermediates", {}))[0]
    # sow keeps a tuple per name; a layer called once is named without the tuple index
    return {"/".join(str(k.key) for k in path if hasattr(k, "key")): np.asarray(v)
            for path, v in flat}


def _loss(out, y, task):
    return losses.cross_entropy(out, y) if task == "classification" else losses.mse(out, y)


def layer_grad_norms(model, variables: dict, batch: dict, task: str) -> dict[str, float]:
    """{layer: ||dL/d kernel||} for every kernel, in the order the layers were created."""
    module = _module(model)

    def loss(params):
        out = module.apply({**variables, "params": params}, batch["x"], train=False)
        return _loss(out, batch["y"], task)
    grads = jax.jit(jax.grad(loss))(variables["params"])
    flat = jax.tree_util.tree_flatten_with_path(grads)[0]
    norms = {"/".join(str(k.key) for k in path[:-1]): float(jnp.linalg.norm(g))
             for path, g in flat if path[-1].key == "kernel"}
    return dict(sorted(norms.items(), key=lambda kv: _depth_order(kv[0])))


def _depth_order(name: str) -> list:
    """Pytrees sort keys as strings (dense_10 before dense_2); layer names sort by their numbers,
    and the output layer ('head') after the numbered ones."""
    parts = [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name)]
    return [name.startswith("head"), *[(isinstance(p, int), p) for p in parts]]


def grad_through_time(model, variables: dict, batch: dict, task: str) -> np.ndarray:
    """[T]: mean over the batch of ||dL/dh_t||, the total derivative of the loss with respect to
    the first layer's hidden state at step t (through every later step). Vanishing gradients show
    as this norm falling by orders of magnitude from the last step back to the first."""
    module = _module(model)
    x = batch["x"] if batch["x"].ndim == 3 else batch["x"][..., None]
    hidden = module.hidden_size

    def loss(perturbation):
        out = module.apply(variables, x, train=False, perturbation=perturbation)
        # the per-example sum makes dL/dh_t of each example independent of the batch size
        return _loss(out, batch["y"], task) * x.shape[0]
    g = jax.jit(jax.grad(loss))(jnp.zeros((x.shape[0], x.shape[1], hidden), jnp.float32))
    return np.asarray(jnp.mean(jnp.linalg.norm(g, axis=-1), axis=0))
