"""data.name=graph_npz: your own graphs in a .npz file, on small files the tests write."""
from __future__ import annotations

import networkx as nx
import numpy as np
import pytest

from dlcore import data as data_lib, experiment
from dlcore.config import ConfigError


def concatenated(graphs: list, features=None) -> dict:
    """networkx graphs as the file's concatenated arrays (indices over all nodes)."""
    nodes, senders, receivers, n_node, n_edge, start = [], [], [], [], [], 0
    for g in graphs:
        n = g.number_of_nodes()
        pairs = np.array(list(g.edges), np.int64).reshape(-1, 2)
        pairs = np.concatenate([pairs, pairs[:, ::-1]])
        nodes.append(np.full((n, 1), float(n)) if features is None else features(g))
        senders.append(pairs[:, 0] + start)
        receivers.append(pairs[:, 1] + start)
        n_node.append(n)
        n_edge.append(len(pairs))
        start += n
    return {"nodes": np.concatenate(nodes), "senders": np.concatenate(senders),
            "receivers": np.concatenate(receivers), "n_node": np.array(n_node),
            "n_edge": np.array(n_edge)}


def cycles_file(tmp_path, **extra) -> str:
    gs = [nx.cycle_graph(n) for n in (4, 5, 8, 9) * 5]
    arrays = {**concatenated(gs), "y": np.array([0, 0, 1, 1] * 5), **extra}
    path = tmp_path / "cycles.npz"
    np.savez(path, **arrays)
    return str(path)


def load(path, **cfg):
    return data_lib.load({**data_lib.defaults("graph_npz"), "path": path, **cfg})


def test_a_graph_task_from_a_file_trains(tmp_path):
    data = load(cycles_file(tmp_path), batch_size=4)
    assert data.spec["level"] == "graph" and data.spec["num_outputs"] == 2
    assert len(data.splits["train"]["y"]) == 16 and len(data.splits["test"]["y"]) == 4
    assert data.spec["max_nodes"] == 9 and data.spec["max_edges"] == 18
    summary = experiment.run({"algorithm": "graph",
                              "data": {"name": "graph_npz", "path": cycles_file(tmp_path),
                                       "batch_size": 4},
                              "model": {"name": "gnn", "conv": "gin", "hidden": [16],
                                        "readout": "sum"},
                              "optim": {"learning_rate": 0.01},
                              "loop": {"steps": 200, "eval_every": 100, "plots": False}},
                             tmp_path / "run", progress=False)
    assert summary["metrics"]["test_accuracy"] >= 0.75  # chance: 0.5


def test_the_files_own_split_and_a_node_task(tmp_path):
    data = load(cycles_file(tmp_path, train_index=np.arange(12), test_index=np.arange(12, 20)),
                batch_size=4)
    assert len(data.splits["train"]["y"]) == 12 and len(data.splits["test"]["y"]) == 8
    k = nx.karate_club_graph()
    y = np.array([k.nodes[v]["club"] != "Mr. Hi" for v in k.nodes], np.int64)
    train = np.zeros(34, bool)
    train[[0, 33]] = True
    path = tmp_path / "karate.npz"
    np.savez(path, **concatenated([k], lambda g: np.eye(34)), y=y, train_mask=train,
             test_mask=~train)
    nodes = load(str(path))
    assert nodes.spec["level"] == "node" and int(nodes.splits["train"]["mask"].sum()) == 2


def at(a: np.ndarray, i: int, value) -> np.ndarray:
    a = a.copy()
    a[i] = value
    return a


@pytest.mark.parametrize("change, message", [
    (lambda a: {**a, "senders": a["senders"][:-1]}, "'senders' has 259 rows, the counts"),
    (lambda a: {**a, "receivers": at(a["receivers"], 0, 5)},
     "graph 0: receivers hold node index 5, outside the 4 nodes"),
    (lambda a: {**a, "senders": at(a["senders"], 8, 3)},  # graph 1's first edge, to graph 0
     "graph 1 \\(its edge indices count from its first node, 4, in the file\\): senders hold "
     "node index -1"),
    (lambda a: {**a, "nodes": np.where(np.arange(len(a["nodes"]))[:, None] == 3, np.nan,
                                       a["nodes"])}, "node features hold NaN or Inf"),
    (lambda a: {**a, "n_node": np.r_[0, a["n_node"][1:]], "nodes": a["nodes"][4:]},
     "graph 0: the graph has no nodes"),
    (lambda a: {**a, "y": a["y"][:-1]}, "19 targets for 20 graphs"),
    (lambda a: {k: v for k, v in a.items() if k != "n_edge"}, "lacks the arrays \\['n_edge'\\]"),
    (lambda a: {**a, "train_index": np.arange(10), "test_index": np.array([3, 25])},
     "holds graph index 25, outside the 20"),
])
def test_bad_files_are_one_clear_error(tmp_path, change, message):
    with np.load(cycles_file(tmp_path)) as f:
        arrays = {k: f[k] for k in f.files}
    bad = tmp_path / "bad.npz"
    np.savez(bad, **change(arrays))
    with pytest.raises(ConfigError, match=message):
        load(str(bad))


def test_a_damaged_file_is_one_clear_error(tmp_path):
    path = tmp_path / "cycles.npz"
    raw = open(cycles_file(tmp_path), "rb").read()
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ConfigError, match="is not a readable .npz file"):
        load(str(path))
