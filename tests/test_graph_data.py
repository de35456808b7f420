"""The graph data sources (karate, csl, sbm, triangles) and the checks of dlcore.graphs and
dlcore.data.graph_data on user input: shapes, specs, the protocols the docstrings promise, and one
clear ConfigError for each bad key or bad input. Small sizes: the file runs in seconds."""

import jax
import networkx as nx
import numpy as np
import pytest

from dlcore import graphs as G
from dlcore.config import ConfigError
from dlcore.data import csl, karate, sbm, triangles
from dlcore.data.graph_data import graph_task, node_task


def nx_graph(senders, receivers, n) -> nx.Graph:
    g = nx.Graph()
    g.add_nodes_from(range(n))
    g.add_edges_from(zip(np.asarray(senders).tolist(), np.asarray(receivers).tolist()))
    return g


def slot_graph(split: dict, i: int) -> nx.Graph:
    """Graph i of a graph task's split, from its slots, as networkx."""
    e = int(split["n_edge"][i])
    return nx_graph(split["senders"][i][:e], split["receivers"][i][:e], int(split["n_node"][i]))


# --- karate ---------------------------------------------------------------------------------------

def test_karate_graph_labels_and_protocol():
    data = karate.load({"name": "karate"})
    g = data.splits["train"]["graph"]
    assert g.num_nodes == 34 and g.num_edges == 156 and g.nodes.shape == (34, 34)
    assert np.array_equal(g.nodes, np.eye(34))
    assert data.spec["level"] == "node" and data.spec["num_outputs"] == 2
    assert data.spec["input_shape"] == (34,)
    train = data.splits["train"]["mask"]
    assert train.sum() == 2 and train[0] and train[33]
    y = data.splits["train"]["y"]
    assert y[0] == 0 and y[33] == 1 and np.bincount(y).tolist() == [17, 17]
    ref = nx.karate_club_graph()
    assert y.tolist() == [0 if ref.nodes[v]["club"] == "Mr. Hi" else 1 for v in ref.nodes]
    assert nx.utils.graphs_equal(nx_graph(g.senders, g.receivers, 34), nx.Graph(ref.edges))
    test = data.splits["test"]["mask"]
    assert test.sum() == 32 and not (test & train).any()
    assert karate.load({"test_nodes": "all"}).splits["test"]["mask"].all()
    degree = karate.load({"features": "degree"}).splits["train"]["graph"].nodes
    assert degree.shape == (34, 1) and degree.sum() == 156 and degree[33, 0] == 17
    assert karate.load({"features": "constant"}).spec["input_shape"] == (1,)


@pytest.mark.parametrize("over, key", [({"features": "onehot"}, "data.features"),
                                       ({"test_nodes": "rest"}, "data.test_nodes"),
                                       ({"feature": "identity"}, "data.feature")])
def test_karate_bad_keys(over, key):
    with pytest.raises(ConfigError, match=key):
        karate.load(over)


# --- CSL ------------------------------------------------------------------------------------------

def test_csl_graphs_regular_balanced_and_isomorphic_within_classes_only():
    gs, y = csl.graphs()
    assert len(gs) == 150 and np.bincount(y).tolist() == [15] * 10
    for g in gs:
        assert g.num_nodes == 41 and g.num_edges == 164
        assert (np.bincount(g.senders, minlength=41) == 4).all()
        assert (np.bincount(g.receivers, minlength=41) == 4).all()
        assert (g.senders != g.receivers).all()
        assert len(set(zip(g.senders.tolist(), g.receivers.tolist()))) == 164
    nxs = [nx_graph(g.senders, g.receivers, 41) for g in gs]
    assert not nx.utils.graphs_equal(nxs[0], nxs[1])  # the nodes really are permuted
    for i, j in ((0, 1), (15, 29), (135, 149)):
        assert nx.is_isomorphic(nxs[i], nxs[j])
    for c in range(1, 10):  # class 0 against each other class, and neighbours among them
        assert not nx.is_isomorphic(nxs[0], nxs[15 * c])
        assert not nx.is_isomorphic(nxs[15 * c - 1], nxs[15 * c])
    again, _ = csl.graphs()
    assert all(np.array_equal(a.senders, b.senders) for a, b in zip(gs, again))


def test_csl_laplacian_encodings_are_eigenvectors():
    k = 6
    gs, _ = csl.graphs({"pe_dim": k})
    for g in (gs[0], gs[77], gs[149]):
        assert g.nodes.shape == (41, 1 + k) and (g.nodes[:, 0] == 1).all()
        a = np.zeros((41, 41))
        a[g.receivers, g.senders] = 1
        lap = np.eye(41) - a / 4  # symmetric normalised Laplacian of a 4-regular graph
        lam, vec = csl.laplacian_pe(g.senders, g.receivers, 41, k)
        assert (np.diff(lam) >= -1e-12).all() and lam[0] > 1e-6  # the smallest nonzero ones
        assert np.allclose(lap @ vec, vec * lam, atol=1e-10)
        pe = g.nodes[:, 1:].astype(np.float64)
        assert np.allclose(lap @ pe, pe * lam, atol=1e-5)
        assert np.allclose(np.linalg.norm(pe, axis=0), 1, atol=1e-5)


def test_csl_folds_splits_and_spec():
    tests = []
    for fold in range(5):
        data = csl.load({"fold": fold})
        s = {k: v["y"] for k, v in data.splits.items()}
        assert {k: len(v) for k, v in s.items()} == {"train": 90, "validation": 30, "test": 30}
        assert np.bincount(s["test"]).tolist() == [3] * 10
        assert np.bincount(s["train"]).tolist() == [9] * 10
        tests.append(csl.split(csl.graphs()[1], {"fold": fold})["test"])
    assert sorted(np.concatenate(tests).tolist()) == list(range(150))  # a partition
    idx = csl.split(np.repeat(np.arange(10), 15), {"validation": False})
    assert len(idx["train"]) == 120 and "validation" not in idx
    assert not set(idx["train"]) & set(idx["test"])
    spec = data.spec
    assert spec["level"] == "graph" and spec["num_outputs"] == 10 and spec["input_shape"] == (1,)
    assert spec["max_nodes"] == 41 and spec["baselines"]["test"]["chance_accuracy"] == 0.1


def test_csl_sign_flips_touch_only_pe_columns_and_change_with_the_step():
    k = 4
    plain = csl.load({"pe_dim": k, "sign_flip": False, "shuffle": False})
    flipped = csl.load({"pe_dim": k, "shuffle": False})
    key = jax.random.key(0)
    sample = jax.jit(flipped.sample)
    ref = plain.sample(plain.splits["train"], 0, key)["graph"]
    assert np.array_equal(plain.sample(plain.splits["train"], 18, key)["graph"].nodes, ref.nodes)
    signs = []
    for step in (0, 18):  # 90 training graphs, 5 a batch, stored order: the same graphs again
        g = sample(flipped.splits["train"], step, key)["graph"]
        nodes, want = np.asarray(g.nodes), np.asarray(ref.nodes)
        assert np.array_equal(nodes[:, 0], want[:, 0])
        assert np.allclose(np.abs(nodes), np.abs(want))
        ratio = np.where(np.abs(want[:, 1:]) > 1e-6, nodes[:, 1:] / np.where(want[:, 1:] == 0, 1,
                                                                             want[:, 1:]), np.nan)
        per_graph = ratio.reshape(5, 41, k)
        s = np.nanmean(per_graph, axis=1)
        assert np.allclose(np.nan_to_num(per_graph - s[:, None, :]), 0)  # one sign a graph+column
        assert set(np.unique(s)) <= {-1.0, 1.0}
        signs.append(s)
    assert not np.array_equal(signs[0], signs[1])
    assert (signs[0] == -1).any() and (signs[0] == 1).any()
    assert np.array_equal(flipped.splits["test"]["nodes"], plain.splits["test"]["nodes"])


@pytest.mark.parametrize("over, key", [({"pe_dim": 41}, "data.pe_dim"), ({"fold": 5}, "data.fold"),
                                       ({"sign_flip": "yes"}, "data.sign_flip"),
                                       ({"batch_size": 0}, "data.batch_size"),
                                       ({"seed": -1}, "data.seed"), ({"folds": 5}, "data.folds")])
def test_csl_bad_keys(over, key):
    with pytest.raises(ConfigError, match=key):
        csl.load(over)


# --- SBM ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("k, snr", [(2, 1.5), (3, 0.8)])
def test_sbm_degree_and_block_fractions(k, snr):
    n, d = 6000, 10.0
    data = sbm.load({"nodes": n, "classes": k, "degree": d, "snr": snr, "spectral": False})
    g, y = data.splits["train"]["graph"], data.splits["train"]["y"]
    s, r = np.asarray(g.senders), np.asarray(g.receivers)
    assert (s != r).all()
    undirected = {(min(a, b), max(a, b)) for a, b in zip(s.tolist(), r.tolist())}
    assert 2 * len(undirected) == len(s)  # each pair once, both ways
    assert np.bincount(y).min() >= n // k
    assert abs(len(s) / n - d) < 0.3
    m = data.spec["block_model"]
    assert abs((m["a"] - m["b"]) / (k * np.sqrt(d)) - snr) < 1e-9
    assert abs((m["a"] + (k - 1) * m["b"]) / k - d) < 1e-9
    within = np.mean(y[s] == y[r])
    assert abs(within - m["a"] / (k * d)) < 0.02
    masks = {k_: v["mask"] for k_, v in data.splits.items()}
    assert np.bincount(y[masks["train"]]).tolist() == [20] * k
    assert masks["validation"].sum() == 500 and masks["test"].sum() == n - 20 * k - 500
    assert not (masks["train"] & masks["test"]).any()
    assert not (masks["validation"] & masks["test"]).any()
    assert data.spec["input_shape"] == (16,) and data.spec["num_outputs"] == k


def test_sbm_is_deterministic_and_features_carry_the_class():
    a = sbm.load({"nodes": 2000, "feature_snr": 2.0, "spectral": False})
    b = sbm.load({"nodes": 2000, "feature_snr": 2.0, "spectral": False})
    ga, gb = a.splits["test"]["graph"], b.splits["test"]["graph"]
    assert np.array_equal(ga.senders, gb.senders) and np.array_equal(ga.nodes, gb.nodes)
    assert np.array_equal(a.splits["test"]["mask"], b.splits["test"]["mask"])
    x, y = np.asarray(ga.nodes), a.splits["test"]["y"]
    mean0, mean1 = x[y == 0].mean(0), x[y == 1].mean(0)
    assert abs(np.linalg.norm(mean0 - mean1) - 4.0) < 0.3  # +-2 along one direction
    bayes = a.spec["baselines"]["test"]["feature_bayes_accuracy"]
    assert 0.95 < bayes < 0.99  # Phi(2) = 0.977
    other = sbm.load({"nodes": 2000, "seed": 1, "spectral": False}).splits["test"]["graph"]
    assert not np.array_equal(other.senders[:100], ga.senders[:100])
    assert sbm.load({"nodes": 50, "features": "identity", "train_per_class": 5, "validation": 10,
                     "spectral": False}).spec["input_shape"] == (50,)


def test_sbm_spectral_baseline_detects_above_the_threshold_only():
    base = {"nodes": 3000, "features": "constant"}
    high = sbm.load({**base, "snr": 2.5}).spec["baselines"]
    low = sbm.load({**base, "snr": 0.5}).spec["baselines"]
    assert high["test"]["spectral_accuracy"] > 0.95
    assert high["validation"]["spectral_accuracy"] > 0.95
    assert low["test"]["spectral_accuracy"] < 0.6
    hetero = sbm.load({**base, "snr": -2.0}).spec["baselines"]["test"]["spectral_accuracy"]
    assert hetero > 0.85
    three = sbm.load({**base, "classes": 3, "snr": 2.5}).spec["baselines"]["test"]
    assert three["spectral_accuracy"] > 0.85
    assert sbm.load({**base, "spectral": False}).spec["baselines"] == {"validation": {}, "test": {}}


def test_sbm_100k_nodes_and_a_million_edges():
    data = sbm.load({"nodes": 100_000, "validation": 1000})
    g = data.splits["train"]["graph"]
    assert abs(g.num_edges - 1_000_000) < 10_000 and g.nodes.shape == (100_000, 16)
    assert data.spec["baselines"]["test"]["spectral_accuracy"] > 0.8  # snr 1.5


@pytest.mark.parametrize("over, key", [
    ({"snr": 3.5}, "data.snr"), ({"snr": -3.5}, "data.snr"), ({"classes": 1}, "data.classes"),
    ({"nodes": 3}, "data.nodes"), ({"degree": 0}, "data.degree"),
    ({"features": "identity", "nodes": 30_000}, "data.features"),
    ({"features": "pca"}, "data.features"),
    ({"classes": 20, "feature_dim": 16}, "data.feature_dim"),
    ({"train_per_class": 500}, "data.train_per_class"), ({"validation": 999}, "data.validation"),
    ({"spectral": 1}, "data.spectral"), ({"feature_snr": float("nan")}, "data.feature_snr"),
    ({"size": 10}, "data.size")])
def test_sbm_bad_keys(over, key):
    with pytest.raises(ConfigError, match=key):
        sbm.load(over)


# --- triangles ------------------------------------------------------------------------------------

def test_triangles_targets_are_networkx_counts():
    cfg = {"graphs": 60, "min_nodes": 5, "max_nodes": 12, "p_min": 0.2, "p_max": 0.9,
           "target": "count", "batch_size": 8}
    raw = triangles.random_graphs(cfg)
    for r in raw[:10]:
        g = nx_graph(r["senders"], r["receivers"], r["nodes"])
        assert r["triangles"] == sum(nx.triangles(g).values()) // 3
        assert r["edges"] == g.number_of_edges() and 5 <= r["nodes"] <= 12
    data = triangles.load(cfg)
    train = data.splits["train"]
    for i in range(10):
        g = slot_graph(train, i)
        assert train["y"][i, 0] == sum(nx.triangles(g).values()) // 3
    counts = sorted(float(v["y"][i, 0]) for v in data.splits.values() for i in range(len(v["y"])))
    assert counts == sorted(float(r["triangles"]) for r in raw)
    assert data.spec["task"] == "regression" and data.spec["num_outputs"] == 1
    assert data.spec["level"] == "graph" and data.spec["max_nodes"] <= 12
    mse = np.mean((data.splits["test"]["y"] - train["y"].mean()) ** 2)
    assert np.isclose(data.spec["baselines"]["test"]["mean_mse"], mse, rtol=1e-5)
    assert data.spec["baselines"]["test"]["edges_mse"] < mse
    batch = data.sample(train, 0, jax.random.key(0))
    assert batch["y"].shape == (8, 1) and batch["graph"].num_graphs == 8


def test_triangles_targets_and_features():
    cfg = {"graphs": 50, "max_nodes": 15}
    log = triangles.load(cfg)
    count = triangles.load({**cfg, "target": "count"})
    for s in log.splits:
        assert np.allclose(log.splits[s]["y"], np.log1p(count.splits[s]["y"]), atol=1e-5)
    std = triangles.load({**cfg, "target": "standardised"}).splits["train"]["y"]
    assert abs(std.mean()) < 1e-5 and abs(std.std() - 1) < 1e-4
    deg = triangles.load({**cfg, "features": "degree"}).splits["train"]
    n = int(deg["n_node"][0])
    assert np.array_equal(deg["nodes"][0, :n, 0],
                          np.bincount(deg["senders"][0, :int(deg["n_edge"][0])], minlength=n))
    assert triangles.expected_triangles(4, 6) == 4 and triangles.expected_triangles(10, 0) == 0


@pytest.mark.parametrize("over, key", [
    ({"min_nodes": 20, "max_nodes": 10}, "data.max_nodes"), ({"min_nodes": 2}, "data.min_nodes"),
    ({"p_max": 1.5}, "data.p_max"), ({"p_min": 0.6}, "data.p_max"),
    ({"target": "raw"}, "data.target"),
    ({"features": "identity"}, "data.features"), ({"graphs": 5}, "data.graphs"),
    ({"test_fraction": 1.0}, "data.test_fraction"), ({"batch_size": 10_000}, "data.batch_size"),
    ({"nodes": 10}, "data.nodes")])
def test_triangles_bad_keys(over, key):
    with pytest.raises(ConfigError, match=key):
        triangles.load({"graphs": 20, **over})


# --- bad user input to dlcore.graphs and dlcore.data.graph_data ---------------------------------

def small_graph():
    return G.graph(np.ones((4, 1)), [0, 1, 2], [1, 2, 3])


MASKS = {"train": np.array([True, False, False, False]), "test": np.ones(4, bool)}


@pytest.mark.parametrize("args, message", [
    ((np.ones((3, 1)), [0, 1], [1, 3]), "node index 3, outside the 3 nodes"),
    ((np.ones((3, 1)), [0, -1], [1, 2]), "node index -1, outside the 3 nodes"),
    ((np.ones((3, 1)), [0, 1, 2], [1, 2]), "3 senders but 2 receivers"),
    ((np.ones((3, 1)), [0.0, 1.0], [1, 2]), "integer node indices"),
    ((np.array([[1.0], [np.nan], [0.0]]), [0], [1]), "NaN or Inf"),
    ((np.zeros((0, 2)), [], []), "no nodes"),
    ((np.array(["a", "b"]), [0], [1]), "not numbers"),
])
def test_graph_refuses_bad_input(args, message):
    with pytest.raises(ConfigError, match=message):
        G.graph(*args)


def test_node_task_refuses_bad_input():
    g, y = small_graph(), np.array([0, 1, 0, 1])
    node_task(g, y, MASKS)  # the good case
    with pytest.raises(ConfigError, match="has 4 rows; the graph has 5"):
        node_task(g._replace(nodes=np.ones((5, 1), np.float32)), y, MASKS)
    with pytest.raises(ConfigError, match="NaN or Inf"):
        node_task(g._replace(nodes=np.array([[1], [np.nan], [1], [1]], np.float32)), y, MASKS)
    with pytest.raises(ConfigError, match="node index 7, outside the 4 nodes"):
        node_task(g._replace(receivers=np.array([1, 2, 7], np.int32)), y, MASKS)
    with pytest.raises(ConfigError, match="node index -2"):
        node_task(g._replace(senders=np.array([0, -2, 2], np.int32)), y, MASKS)
    with pytest.raises(ConfigError, match="3 targets for 4 nodes"):
        node_task(g, y[:3], MASKS)
    with pytest.raises(ConfigError, match="the graph has no nodes"):
        node_task(g._replace(node_mask=np.zeros(4, bool)), y, MASKS)
    with pytest.raises(ConfigError, match="'train' mask must be"):
        node_task(g, y, {**MASKS, "train": np.array([1, 0, 0, 0])})
    with pytest.raises(ConfigError, match="no 'test' mask"):
        node_task(g, y, {"train": MASKS["train"]})
    with pytest.raises(ConfigError, match="NaN or Inf"):
        node_task(g, np.array([0.0, 1.0, np.nan, 2.0]), MASKS)


def test_graph_task_refuses_bad_input():
    gs, y = [small_graph()] * 10, np.arange(10) % 2
    split = {"train": np.arange(8), "test": np.array([8, 9])}
    graph_task(gs, y, split, batch_size=2)  # the good case
    with pytest.raises(ConfigError, match="no graphs"):
        graph_task([], y, split)
    with pytest.raises(ConfigError, match="9 targets for 10 graphs"):
        graph_task(gs, y[:9], split, batch_size=2)
    with pytest.raises(ConfigError, match="graph 3: .*NaN or Inf"):
        bad = small_graph()._replace(nodes=np.array([[1], [1], [np.inf], [1]], np.float32))
        graph_task(gs[:3] + [bad] + gs[4:], y, split, batch_size=2)
    with pytest.raises(ConfigError, match="'test' split has no graphs"):
        graph_task(gs, y, {"train": np.arange(8), "test": []}, batch_size=2)
    with pytest.raises(ConfigError, match="data.batch_size"):
        graph_task(gs, y, split, batch_size=9)


# Bad split indices, unequal feature widths and scalar features: one clear error each.

@pytest.mark.parametrize("bad", [[8, 12], [8, -1], [8.5, 9.0]])
def test_graph_task_refuses_bad_split_indices(bad):
    gs, y = [small_graph()] * 10, np.arange(10) % 2
    with pytest.raises(ConfigError, match="the 'test' split (holds graph index|must be a vector "
                       "of integer graph indices)"):
        graph_task(gs, y, {"train": np.arange(8), "test": np.array(bad)}, batch_size=2)


def test_graph_task_refuses_unequal_feature_widths():
    wide = G.graph(np.ones((4, 2)), [0, 1, 2], [1, 2, 3])
    with pytest.raises(ConfigError, match="features"):
        graph_task([small_graph()] * 5 + [wide] * 5, np.arange(10) % 2,
                   {"train": np.arange(8), "test": np.array([8, 9])}, batch_size=2)


def test_graph_refuses_scalar_features():
    with pytest.raises(ConfigError, match="node features must be an array"):
        G.graph(5.0, [], [])
