"""Zachary's karate club (`networkx.karate_club_graph`): which of two clubs each member joined.

One graph of 34 members (nodes, in networkx's order 0..33) and 78 friendships (156 directed
edges, each friendship in both directions). y: [34] int32, the 'club' attribute: 'Mr. Hi' = 0
(the instructor, node 0, and 16 others), 'Officer' = 1 (the administrator, node 33, and 16
others); the same labels as jraph's karate example.

The protocol of jraph's example (after Kipf & Welling's semi-supervised GCN demonstration): only
two members are labelled, node 0 (Mr. Hi) and node 33 (the administrator); the 'train' mask holds
those two. `data.test_nodes` decides what the 'test' mask scores:
    "others"  the 32 unlabelled members (default): a test score that never counts the two nodes
              the model was fitted to;
    "all"     all 34 members, as jraph's example reports its accuracy: that figure counts the
              two training nodes too, which a fitted model nearly always gets right.

`data.features` (node features, [34, F] float32):
    "identity"  one-hot node identity, [34, 34] (jraph's example, Kipf & Welling): the model must
                learn an embedding per node, and only the graph tells it anything;
    "constant"  a single feature 1, [34, 1]: every node looks alike until message passing;
    "degree"    the number of friends, [34, 1] (1..17).

The batch (full graph, every step): {'graph': Graph, 'y': [34], 'mask': [34] bool}; spec:
'level' 'node', 'task' 'classification', 'num_outputs' 2, 'input_shape' (F,), 'example'.
"""
from __future__ import annotations

import numpy as np

from dlcore import graphs as G
from dlcore.config import one_of
from dlcore.data.graph_data import node_task, settings

FEATURES = ("identity", "constant", "degree")
TEST_NODES = ("others", "all")
CLUBS = {"Mr. Hi": 0, "Officer": 1}
LABELLED = (0, 33)  # Mr. Hi, the instructor; John A., the administrator


def defaults() -> dict:
    return {"features": "identity", "test_nodes": "others"}


def _settings(cfg: dict) -> dict:
    cfg = settings(cfg, defaults(), "karate")
    one_of(cfg["features"], "data.features", FEATURES)
    one_of(cfg["test_nodes"], "data.test_nodes", TEST_NODES)
    return cfg


def arrays(cfg: dict | None = None) -> dict:
    """{'nodes': [34, F] float32, 'senders', 'receivers': [156] int32, 'y': [34] int32,
    'train': [34] bool, 'test': [34] bool} for the section's keys."""
    import networkx as nx
    cfg = _settings(cfg or {})
    g = nx.karate_club_graph()
    n = g.number_of_nodes()
    y = np.array([CLUBS[g.nodes[v]["club"]] for v in g.nodes], np.int32)
    pairs = np.array(list(g.edges), np.int32)
    senders = np.concatenate([pairs[:, 0], pairs[:, 1]])
    receivers = np.concatenate([pairs[:, 1], pairs[:, 0]])
    degree = np.bincount(senders, minlength=n).astype(np.float32)
    nodes = {"identity": np.eye(n, dtype=np.float32),
             "constant": np.ones((n, 1), np.float32),
             "degree": degree[:, None]}[cfg["features"]]
    train = np.zeros(n, bool)
    train[list(LABELLED)] = True
    test = ~train if cfg["test_nodes"] == "others" else np.ones(n, bool)
    return {"nodes": nodes, "senders": senders, "receivers": receivers, "y": y, "train": train,
            "test": test}


def load(cfg: dict):
    """The `Data` of a node task on the club's one graph (module docstring)."""
    a = arrays(cfg)
    graph = G.graph(a["nodes"], a["senders"], a["receivers"], name="data 'karate'")
    return node_task(graph, a["y"], {"train": a["train"], "test": a["test"]}, name="karate")
