"""Graph data as a `Data` value: what every graph source shares (karate, csl, sbm, triangles,
and a source of yours).

    data = node_task(graph, y, masks={'train': [N] bool, 'test': [N] bool}, name='karate')
    data = graph_task(graphs, y, split={'train': idx, 'test': idx}, batch_size=32, shuffle=True)

Node tasks (one graph, a label per node): every split is the whole graph with the mask of the
nodes it scores, {'graph': Graph, 'y': [N] or [N, d], 'mask': [N] bool}; the training batch is
that split itself (full-batch training, as GCN and GAT are trained on citation graphs).

Graph tasks (many graphs, a label per graph): every split holds its graphs as slots
(dlcore.graphs.stack: [G, max_nodes, ...], the data set's largest graph deciding the size) and
'y' [G]; the batch at a step is `batch_size` graphs cut like any array batch
(dlcore.data.batching) and joined into one Graph inside the jitted step: one shape, one
compilation, and a batch split over devices graph by graph.

The batch the algorithm sees is the same for both: {'graph': Graph, 'y', 'mask'}, 'mask' naming
the nodes (node tasks) or graphs (graph tasks) whose targets count. The spec adds 'level' ('node'
or 'graph'), 'example' (a batch's Graph, to build the model with) and, optionally, 'baselines':
{split: {metric: value}} scores of a method computed when the data was made (spectral clustering
on a block model); each split carries its own as scalars ('baselines'), which the algorithm's
evaluation reports beside its own metrics.
"""
from __future__ import annotations

from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from dlcore import graphs as G
from dlcore.config import ConfigError, check
from dlcore.core import Data
from dlcore.data import arrays
from dlcore.data.batching import batch_at


def settings(cfg: dict, defaults: dict, source: str) -> dict:
    """A source's section completed from its defaults; ConfigError naming an unknown key (a
    source loaded from Python, not through a config the experiment layer checked)."""
    given = {k: v for k, v in cfg.items() if k != "name"}
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise ConfigError(f"config key 'data.{unknown[0]}' is not a {source} setting (known: "
                          f"{', '.join(sorted(defaults))})")
    return {**defaults, **given}


def targets(y, count: int, what: str, name: str) -> tuple[np.ndarray, dict]:
    """Checked targets [count] int (classes) or [count, d] float, and the spec they make."""
    y = np.asarray(y)
    if len(y) != count:
        raise ConfigError(f"data '{name}': {len(y)} targets for {count} {what}")
    if y.dtype == bool or not (np.issubdtype(y.dtype, np.integer)
                               or np.issubdtype(y.dtype, np.floating)):
        raise ConfigError(f"data '{name}': targets of dtype {y.dtype}; class labels must be "
                          "integers 0..C-1, regression targets floats")
    if np.issubdtype(y.dtype, np.integer):
        if y.ndim != 1:
            raise ConfigError(f"data '{name}': class labels must be [{what}]; got {y.shape}")
        if y.min() < 0:
            raise ConfigError(f"data '{name}': negative class label {y.min()}; labels are "
                              "class indices 0..C-1")
        return y.astype(np.int32), {"task": "classification",
                                    "num_outputs": arrays.class_count(y, f"data '{name}'")}
    y = arrays._float32(y.reshape(len(y), -1), f"data '{name}': targets", "y")
    return y, {"task": "regression", "num_outputs": y.shape[1]}


def node_task(graph: G.Graph, y, masks: dict, name: str = "graph",
              baselines: dict | None = None) -> Data:
    """A node task on one graph. masks: {split: [N] bool} (at least 'train' and 'test'),
    the nodes each split scores; y: [N] class labels or [N, d] targets (unscored nodes'
    values are never read, but must be valid)."""
    graph = G.check(graph, f"data '{name}'")
    n = graph.num_nodes
    y, spec = targets(y, n, "nodes", name)
    for split in ("train", "test"):
        if split not in masks:
            raise ConfigError(f"data '{name}': no '{split}' mask (found {sorted(masks)})")
    splits = {}
    for split, m in masks.items():
        m = np.asarray(m)
        if m.shape != (n,) or m.dtype != bool:
            raise ConfigError(f"data '{name}': the '{split}' mask must be [{n}] bool; got "
                              f"{m.dtype} {m.shape}")
        if not m.any():
            raise ConfigError(f"data '{name}': the '{split}' mask selects no nodes")
        splits[split] = {"graph": graph, "y": y, "mask": m & graph.node_mask}
    _add_baselines(splits, baselines, name)
    spec.update(level="node", input_shape=(graph.nodes.shape[1],), example=graph,
                num_examples=int(splits["train"]["mask"].sum()), baselines=baselines or {})
    return Data(splits, spec, lambda split, step, key: split, evaluate_train=True)


def graph_task(graphs: Sequence[G.Graph], y, split: dict, batch_size: int = 32,
               shuffle: bool = True, name: str = "graphs",
               transform: Callable | None = None, baselines: dict | None = None) -> Data:
    """A graph task. graphs: single graphs (dlcore.graphs.graph / from_networkx); y: [G] class
    labels or [G, d] targets; split: {split: indices into graphs} ('train' and 'test' at least);
    transform(batch, key) -> batch: randomness applied to training batches only (sign flips of
    positional encodings, say), from the data key and the step."""
    if not graphs:
        raise ConfigError(f"data '{name}': no graphs")
    graphs = [G.check(g, f"data '{name}' graph {i}") for i, g in enumerate(graphs)]
    y, spec = targets(y, len(graphs), "graphs", name)
    slots = G.stack(graphs)
    check(type(batch_size) is int and batch_size > 0, "data.batch_size",
          f"must be a positive integer; got {batch_size!r}")
    check(isinstance(shuffle, bool), "data.shuffle", f"must be true or false; got {shuffle!r}")
    splits = {}
    for s, idx in split.items():
        idx = np.asarray(idx)
        if idx.ndim != 1 or not (np.issubdtype(idx.dtype, np.integer) or idx.size == 0):
            raise ConfigError(f"data '{name}': the '{s}' split must be a vector of integer "
                              f"graph indices; got {idx.dtype} {idx.shape}")
        idx = idx.astype(np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= len(graphs)):
            bad = int(idx.min()) if idx.min() < 0 else int(idx.max())
            raise ConfigError(f"data '{name}': the '{s}' split holds graph index {bad}, outside "
                              f"the {len(graphs)} graphs 0..{len(graphs) - 1}")
        if idx.size == 0:
            raise ConfigError(f"data '{name}': the '{s}' split has no graphs")
        splits[s] = {**{k: v[idx] for k, v in slots.items()}, "y": y[idx]}
    for s in ("train", "test"):
        if s not in splits:
            raise ConfigError(f"data '{name}': no '{s}' split (found {sorted(splits)})")
    n = len(splits["train"]["y"])
    check(batch_size <= n, "data.batch_size", f"{batch_size} is larger than the {n} training "
          "graphs")

    _add_baselines(splits, baselines, name)

    def sample(train, step, key):
        b = batch_at({k: train[k] for k in (*G.SLOT_KEYS, "y")}, step, batch_size, shuffle, key)
        out = as_batch(b)
        if transform is not None:
            out = transform(out, jax.random.fold_in(jax.random.fold_in(key, 0x6AF), step))
        return out

    example = as_batch({k: splits["train"][k][:1] for k in (*G.SLOT_KEYS, "y")})["graph"]
    spec.update(level="graph", input_shape=(slots["nodes"].shape[-1],), example=example,
                num_examples=n, baselines=baselines or {}, max_nodes=slots["nodes"].shape[1],
                max_edges=slots["senders"].shape[1])
    return Data(splits, spec, sample)


def _add_baselines(splits: dict, baselines: dict | None, name: str) -> None:
    """Each split's baseline scores as scalars inside the split ('baselines'), which the
    algorithm's evaluation reports beside its own metrics."""
    for split, scores in (baselines or {}).items():
        if split not in splits:
            raise ConfigError(f"data '{name}': baselines for a split '{split}' it does not have")
        splits[split]["baselines"] = {k: np.float32(v) for k, v in scores.items()}


def as_batch(slots: dict) -> dict:
    """A graph split's rows (slots and 'y') as the batch every graph algorithm takes:
    {'graph': Graph of the rows' graphs, 'y', 'mask': [rows] True}."""
    graph = G.from_slots({k: slots[k] for k in G.SLOT_KEYS})
    return {"graph": graph, "y": slots["y"], "mask": jnp.ones(len(slots["y"]), bool)}


def stratified(y: np.ndarray, test_fraction: float, seed: int, validation_fraction: float = 0.0
               ) -> dict:
    """{'train', 'test'[, 'validation']}: indices of a split stratified by class (sklearn)."""
    from sklearn.model_selection import train_test_split
    idx = np.arange(len(y))
    strat = y if np.issubdtype(np.asarray(y).dtype, np.integer) else None
    train, test = train_test_split(idx, test_size=test_fraction, random_state=seed,
                                   stratify=strat)
    out = {"train": np.sort(train), "test": np.sort(test)}
    if validation_fraction:
        train, val = train_test_split(out["train"], test_size=validation_fraction,
                                      random_state=seed,
                                      stratify=None if strat is None else y[out["train"]])
        out.update(train=np.sort(train), validation=np.sort(val))
    return out
