"""Counting triangles: a graph-level regression task on random graphs.

`data.graphs` (1000) Erdos-Renyi graphs G(n, p), each with n drawn uniformly from
[`data.min_nodes`, `data.max_nodes`] (10..30) and p uniformly from [`data.p_min`, `data.p_max`]
(0.1..0.5), all from `data.seed` with NumPy. The target is the graph's number of triangles,
T = trace(A^3) / 6 (networkx.triangles summed over the nodes, / 3), reported as `data.target`:
    "log1p"         log(1 + T) (default): T spans 0 to several hundred and grows like n^3 p^3, so
                    the squared error of raw counts would be the error on the few largest, densest
                    graphs; on the log scale every graph weighs alike (a relative error);
    "count"         T itself;
    "standardised"  (T - mean) / std, the mean and standard deviation of the training graphs' T.
y: [graphs, 1] float32. Message passing is bounded by 1-WL, which cannot count triangles in
general (two triangles and a hexagon look alike to it); random graphs like these are mostly told
apart by 1-WL, so a network can learn the count here, but only as a function it has to fit.

Node features [n, 1] float32, `data.features`: "constant" (1 for every node) or "degree" (the
node's degree). Split: a random `data.test_fraction` (0.2) of the graphs is 'test', then a random
`data.validation_fraction` (0) of the rest 'validation' (dlcore.data.graph_data.stratified, with
`data.seed`). Batches of `data.batch_size` (32) graphs, shuffled with `data.shuffle` (true).

spec 'baselines', in the units of the target (what a model's MSE is judged against):
    {'test': {'mean_mse':  the test MSE of predicting the training graphs' mean target,
              'edges_mse': the test MSE of predicting, for each graph, the expected T of a
                           uniformly random graph with its node count n and edge count m
                           (G(n, m): C(n,3) m(m-1)(m-2) / (N(N-1)(N-2)), N = C(n,2)), transformed
                           like the target: about the best a model that reads only the node and
                           edge counts does; beating it means it sees where the edges lie}}
(and the same for 'validation' when there is one). The batch: {'graph': Graph of batch_size
graphs, 'y': [batch_size, 1], 'mask'}; spec 'level' 'graph', 'task' 'regression',
'num_outputs' 1, 'input_shape' (1,), 'target'.
"""
from __future__ import annotations

import math

import numpy as np

from dlcore import graphs as G
from dlcore.config import check, one_of
from dlcore.data.graph_data import graph_task, settings, stratified

FEATURES = ("constant", "degree")
TARGETS = ("log1p", "count", "standardised")
MAX_NODES = 1000      # dense adjacency per graph; bigger graphs belong to another source
MAX_GRAPHS = 1_000_000


def defaults() -> dict:
    return {"graphs": 1000, "min_nodes": 10, "max_nodes": 30, "p_min": 0.1, "p_max": 0.5,
            "features": "constant", "target": "log1p", "test_fraction": 0.2,
            "validation_fraction": 0.0, "batch_size": 32, "shuffle": True, "seed": 0}


def _settings(cfg: dict) -> dict:
    cfg = settings(cfg, defaults(), "triangles")
    num = lambda v: type(v) in (int, float) and math.isfinite(v)
    check(type(cfg["graphs"]) is int and 10 <= cfg["graphs"] <= MAX_GRAPHS, "data.graphs",
          f"must be an integer in [10, {MAX_GRAPHS:,}]; got {cfg['graphs']!r}")
    for key in ("min_nodes", "max_nodes"):
        check(type(cfg[key]) is int and 3 <= cfg[key] <= MAX_NODES, f"data.{key}",
              f"must be an integer in [3, {MAX_NODES}] (a triangle needs 3 nodes); got "
              f"{cfg[key]!r}")
    check(cfg["min_nodes"] <= cfg["max_nodes"], "data.max_nodes",
          f"{cfg['max_nodes']} is below data.min_nodes = {cfg['min_nodes']}")
    for key in ("p_min", "p_max"):
        check(num(cfg[key]) and 0 <= cfg[key] <= 1, f"data.{key}",
              f"must be an edge probability in [0, 1]; got {cfg[key]!r}")
    check(cfg["p_min"] <= cfg["p_max"], "data.p_max",
          f"{cfg['p_max']} is below data.p_min = {cfg['p_min']}")
    one_of(cfg["features"], "data.features", FEATURES)
    one_of(cfg["target"], "data.target", TARGETS)
    check(num(cfg["test_fraction"]) and 0 < cfg["test_fraction"] < 1, "data.test_fraction",
          f"must be a number in (0, 1); got {cfg['test_fraction']!r}")
    check(num(cfg["validation_fraction"]) and 0 <= cfg["validation_fraction"] < 1,
          "data.validation_fraction", f"must be a number in [0, 1); got "
          f"{cfg['validation_fraction']!r}")
    check(type(cfg["seed"]) is int and 0 <= cfg["seed"] < 2**32, "data.seed",
          f"must be an integer in [0, 2**32); got {cfg['seed']!r}")
    return cfg


def random_graphs(cfg: dict | None = None) -> list[dict]:
    """The section's graphs as [{'senders', 'receivers': [2m] int32, 'nodes': n, 'edges': m,
    'triangles': T}], each undirected edge both ways (module docstring)."""
    cfg = _settings(cfg or {})
    rng = np.random.default_rng(cfg["seed"])
    out = []
    for _ in range(cfg["graphs"]):
        n = int(rng.integers(cfg["min_nodes"], cfg["max_nodes"] + 1))
        p = float(rng.uniform(cfg["p_min"], cfg["p_max"]))
        upper = np.triu(rng.random((n, n)) < p, k=1)
        a = (upper | upper.T).astype(np.int64)
        u, v = np.nonzero(upper)
        triangles = int(np.trace(a @ a @ a)) // 6
        out.append({"senders": np.concatenate([u, v]).astype(np.int32),
                    "receivers": np.concatenate([v, u]).astype(np.int32),
                    "nodes": n, "edges": len(u), "triangles": triangles})
    return out


def expected_triangles(n, m) -> np.ndarray:
    """E[T] of a uniformly random graph with n nodes and m edges (G(n, m)), elementwise."""
    n, m = np.asarray(n, np.float64), np.asarray(m, np.float64)
    pairs = n * (n - 1) / 2
    triples = n * (n - 1) * (n - 2) / 6
    with np.errstate(invalid="ignore", divide="ignore"):
        frac = m * (m - 1) * (m - 2) / (pairs * (pairs - 1) * (pairs - 2))
    return triples * np.where(pairs >= 3, frac, 0.0)


def load(cfg: dict):
    """The `Data` of the graph task (module docstring)."""
    cfg = _settings(cfg)
    raw = random_graphs(cfg)
    count = np.array([r["triangles"] for r in raw], np.float64)
    guess = expected_triangles([r["nodes"] for r in raw], [r["edges"] for r in raw])
    split = stratified(count, cfg["test_fraction"], cfg["seed"], cfg["validation_fraction"])
    if cfg["target"] == "log1p":
        transform = np.log1p
    elif cfg["target"] == "count":
        transform = lambda t: t
    else:
        mean, std = count[split["train"]].mean(), count[split["train"]].std()
        std = std if std > 0 else 1.0
        transform = lambda t: (t - mean) / std
    y, guess = transform(count), transform(guess)
    train_mean = y[split["train"]].mean()
    baselines = {s: {"mean_mse": float(np.mean((y[idx] - train_mean) ** 2)),
                     "edges_mse": float(np.mean((y[idx] - guess[idx]) ** 2))}
                 for s, idx in split.items() if s != "train"}
    gs = []
    for r in raw:
        if cfg["features"] == "constant":
            nodes = np.ones((r["nodes"], 1), np.float32)
        else:
            nodes = np.bincount(r["senders"], minlength=r["nodes"]).astype(np.float32)[:, None]
        gs.append(G.graph(nodes, r["senders"], r["receivers"], name="data 'triangles'"))
    data = graph_task(gs, y.astype(np.float32)[:, None], split, batch_size=cfg["batch_size"],
                      shuffle=cfg["shuffle"], name="triangles", baselines=baselines)
    return data._replace(spec={**data.spec, "target": cfg["target"]})
