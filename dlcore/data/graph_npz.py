"""Your own graphs in a .npz file (read with allow_pickle=False: nothing in it is executed).

The file holds its graphs concatenated, as a batched jraph GraphsTuple does:

    nodes      [sum N, F] (or [sum N]: one feature)   node features, graph after graph
    senders    [sum E] int    edge e runs senders[e] -> receivers[e]; indices count over all the
    receivers  [sum E] int    file's nodes (graph g's nodes follow those of graphs 0..g-1), and an
                              edge joins two nodes of its own graph
    n_node     [G] int        nodes of each graph (>= 1)
    n_edge     [G] int        edges of each graph (its edges follow those of graphs 0..g-1)
    edges      [sum E, D]     optional edge features
    y          [G] int class labels / [G, d] float targets: a graph task; or
               [sum N] ...    with 'train_mask' and 'test_mask' ([sum N] bool, optional
                              'validation_mask'): a node task on the file's graphs taken as one

A graph task's split: the file's 'train_index', 'test_index' (and 'validation_index') when it
has them, else `data.test_fraction` (and `validation_fraction`) of the graphs, stratified by class
with `data.split_seed`. `data.batch_size` graphs a batch, shuffled with `data.shuffle`.
`data.path` is resolved against the config file's folder (against the current folder when given
with --set). Every array is checked (dlcore.graphs): an index outside its graph, counts that do
not add up, NaN features, an empty graph, labels of the wrong length are one ConfigError each.
"""
from __future__ import annotations

import numpy as np

from dlcore import graphs as G
from dlcore.config import ConfigError, check
from dlcore.data import graph_data
from dlcore.data.cache import load_npz
from dlcore.data.npz import file_path

REQUIRED = ("nodes", "senders", "receivers", "n_node", "n_edge", "y")


def defaults() -> dict:
    return {"path": "", "batch_size": 32, "shuffle": True, "test_fraction": 0.2,
            "validation_fraction": 0.0, "split_seed": 0}


def load(cfg: dict):
    path = file_path(cfg)
    a = load_npz(path, REQUIRED)
    name = str(path)
    graphs = split_graphs(a, name)
    if "train_mask" in a:
        return node_task(graphs, a, name)
    if len(np.asarray(a["y"])) != len(graphs):
        raise ConfigError(f"data '{name}': {len(a['y'])} targets for {len(graphs)} graphs (a "
                          "node task also needs 'train_mask' and 'test_mask')")
    y = np.asarray(a["y"])
    if "train_index" in a:
        split = {s: a[f"{s}_index"] for s in ("train", "validation", "test") if f"{s}_index" in a}
    else:
        tf, vf, seed = cfg["test_fraction"], cfg["validation_fraction"], cfg["split_seed"]
        check(isinstance(tf, float) and 0 < tf < 1, "data.test_fraction",
              f"must be in (0, 1) when the file has no 'test_index'; got {tf!r}")
        check(isinstance(vf, (int, float)) and 0 <= vf < 1, "data.validation_fraction",
              f"must be in [0, 1); got {vf!r}")
        check(type(seed) is int and 0 <= seed < 2**32, "data.split_seed",
              f"must be an integer in [0, 2**32); got {seed!r}")
        try:
            split = graph_data.stratified(y, tf, seed, vf)
        except ValueError as e:  # too few graphs of a class to stratify
            raise ConfigError(f"config key 'data.test_fraction': cannot split the graphs of "
                              f"'{name}' ({e})") from None
    return graph_data.graph_task(graphs, y, split, cfg["batch_size"], cfg["shuffle"], name)


def split_graphs(a: dict, name: str) -> list[G.Graph]:
    """The file's concatenated arrays as single graphs, each checked."""
    n_node, n_edge = (np.asarray(a[k]) for k in ("n_node", "n_edge"))
    for key, counts in (("n_node", n_node), ("n_edge", n_edge)):
        if counts.ndim != 1 or not np.issubdtype(counts.dtype, np.integer) or (counts < 0).any():
            raise ConfigError(f"data '{name}': '{key}' must be a vector of counts >= 0; got "
                              f"{counts.dtype} {counts.shape}")
    if len(n_node) != len(n_edge):
        raise ConfigError(f"data '{name}': {len(n_node)} node counts but {len(n_edge)} edge counts")
    nodes, senders, receivers = (np.asarray(a[k]) for k in ("nodes", "senders", "receivers"))
    edges = np.asarray(a["edges"]) if "edges" in a else None
    for key, arr, total in (("nodes", nodes, n_node.sum()), ("senders", senders, n_edge.sum()),
                            ("receivers", receivers, n_edge.sum()),
                            *((("edges", edges, n_edge.sum()),) if edges is not None else ())):
        if arr.ndim == 0 or len(arr) != total:
            raise ConfigError(f"data '{name}': '{key}' has {len(arr) if arr.ndim else 'no'} rows, "
                              f"the counts ('n_node'/'n_edge') add up to {total}")
    node_at = np.concatenate([[0], np.cumsum(n_node)])
    edge_at = np.concatenate([[0], np.cumsum(n_edge)])
    out = []
    for g in range(len(n_node)):
        es = slice(edge_at[g], edge_at[g + 1])
        start = node_at[g]
        local = lambda ends: np.asarray(ends[es]).astype(np.int64) - start  # noqa: E731
        out.append(G.graph(nodes[start:node_at[g + 1]], local(senders), local(receivers),
                           None if edges is None else edges[es], name=f"data '{name}' graph {g}"
                           + (" (its edge indices count from its first node, "
                              f"{start}, in the file)" if g else "")))
    return out


def node_task(graphs: list, a: dict, name: str):
    """The file's graphs as one graph with labelled nodes."""
    masks = {s: np.asarray(a[f"{s}_mask"]) for s in ("train", "validation", "test")
             if f"{s}_mask" in a}
    if "test" not in masks:
        raise ConfigError(f"data '{name}': a node task needs 'test_mask' beside 'train_mask'")
    return graph_data.node_task(G.batch(graphs), a["y"], masks, name)
