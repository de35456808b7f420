"""dlcore.graphs (the Graph value, batching, padding to buckets, slots), graph data as Data
(dlcore.data.graph_data) and the graph learning algorithm (dlcore.algorithms.graph), with a
small dense model of the test's own so these checks stand apart from the gnn family."""
from __future__ import annotations

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import networkx as nx
import numpy as np
import pytest

from dlcore import experiment, graphs as G
from dlcore.algorithms import graph as graph_alg
from dlcore.config import ConfigError
from dlcore.data import graph_data


def random_graph(rng, n, e, f=3, d=0):
    return G.graph(rng.normal(size=(n, f)), rng.integers(0, n, e), rng.integers(0, n, e),
                   edges=rng.normal(size=(e, d)) if d else None)


class Dense(nn.Module):
    """Mean aggregation over in-neighbours and itself through the dense adjacency (a reference
    model any padding must leave unchanged), then an optional sum readout."""
    num_outputs: int
    readout: str = "none"

    @nn.compact
    def __call__(self, g, train=False):
        a = G.dense_adjacency(g) + jnp.eye(g.num_nodes)
        h = nn.tanh(nn.Dense(8)(a @ g.nodes / a.sum(1, keepdims=True)))
        h = nn.Dense(self.num_outputs)(a @ h / a.sum(1, keepdims=True))
        if self.readout == "none":
            return h
        return jax.ops.segment_sum(h * g.node_mask[:, None], g.node_graph, g.num_graphs)


def test_batch_shifts_indices_and_blocks_the_adjacency():
    rng = np.random.default_rng(0)
    gs = [random_graph(rng, n, e) for n, e in ((3, 4), (5, 7), (2, 1))]
    b = G.batch(gs)
    assert (b.num_nodes, b.num_edges, b.num_graphs) == (10, 12, 3)
    assert b.n_node.tolist() == [3, 5, 2] and b.node_graph.tolist() == [0] * 3 + [1] * 5 + [2] * 2
    a = np.asarray(G.dense_adjacency(b))
    starts = [0, 3, 8, 10]
    for i, g in enumerate(gs):
        s, t = starts[i], starts[i + 1]
        np.testing.assert_array_equal(a[s:t, s:t], G.dense_adjacency(g))
        assert a[s:t].sum() == a[s:t, s:t].sum()  # no edge leaves its own graph
    G.check(b)


def test_pad_keeps_every_real_output_and_buckets_are_powers_of_two():
    rng = np.random.default_rng(1)
    b = G.batch([random_graph(rng, 6, 9), random_graph(rng, 4, 5)])
    p = G.pad_to_bucket(b)
    assert (p.num_nodes, p.num_edges, p.num_graphs) == (16, 16, 4)
    G.check(p)
    assert p.graph_mask.tolist() == [True, True, False, False]
    model = Dense(2, "sum")
    v = model.init(jax.random.key(0), b)
    out_b, out_p = model.apply(v, b), model.apply(v, p)
    np.testing.assert_allclose(out_p[:2], out_b, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(out_p[2:], 0.0)  # padding graphs sum nothing
    node_model = Dense(2)
    np.testing.assert_allclose(node_model.apply(v, p)[:10], node_model.apply(v, b), rtol=1e-5,
                               atol=1e-6)
    assert [G.bucket(n) for n in (0, 1, 8, 9, 100, 128, 129)] == [8, 8, 8, 16, 128, 128, 256]


def test_padded_batches_compile_once_per_bucket():
    rng = np.random.default_rng(2)
    gs = [random_graph(rng, int(n), int(2 * n)) for n in rng.integers(3, 40, 60)]
    model = Dense(2, "sum")
    v = model.init(jax.random.key(0), G.batch(gs[:2]))
    batches = list(G.padded_batches(gs, batch_size=4))
    shapes = {(g.num_nodes, g.num_edges, g.num_graphs) for _, g in batches}
    assert len(shapes) < len(batches) // 2  # 15 batches, a few buckets
    chex.clear_trace_counter()
    # one trace per bucket: a batch of a shape already seen must reuse its program
    forward = jax.jit(chex.assert_max_traces(lambda v, g: model.apply(v, g), n=len(shapes)))
    outs = [np.asarray(forward(v, g))[:len(idx)] for idx, g in batches]
    expect = model.apply(v, G.batch(gs))  # all 60 at once, unpadded
    np.testing.assert_allclose(np.concatenate(outs), expect, rtol=1e-5, atol=1e-5)


def test_slots_make_the_same_graphs_as_batch():
    rng = np.random.default_rng(3)
    gs = [random_graph(rng, n, e, d=2) for n, e in ((4, 6), (7, 3), (1, 0))]
    slots = G.stack(gs)
    assert slots["nodes"].shape == (3, 7, 3) and slots["senders"].shape == (3, 6)
    s = jax.jit(G.from_slots)(slots)
    G.check(s)
    b = G.batch(gs)
    real = np.asarray(s.node_mask)
    np.testing.assert_array_equal(np.asarray(s.nodes)[real], b.nodes)
    np.testing.assert_array_equal(np.asarray(s.edges)[np.asarray(s.edge_mask)], b.edges)
    a = np.asarray(G.dense_adjacency(s))[np.ix_(real, real)]
    np.testing.assert_array_equal(a, G.dense_adjacency(b))
    model = Dense(2, "sum")
    v = model.init(jax.random.key(0), b)
    np.testing.assert_allclose(model.apply(v, s), model.apply(v, b), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("build, message", [
    (lambda: G.graph(np.ones((3, 2)), [0, 3], [1, 2]), "senders hold node index 3, outside the 3 nodes"),
    (lambda: G.graph(np.ones((3, 2)), [0, -1], [1, 2]), "senders hold node index -1"),
    (lambda: G.graph(np.ones((3, 2)), [0, 1], [1, 2.5]), "receivers must be a vector of integer"),
    (lambda: G.graph(np.ones((3, 2)), [0, 1], [1]), "2 senders but 1 receivers"),
    (lambda: G.graph(np.array([[1.0], [np.nan]]), [0], [1]), "node features hold NaN or Inf"),
    (lambda: G.graph(np.ones((0, 2)), [], []), "the graph has no nodes"),
    (lambda: G.graph(np.ones((2, 2)), [0], [1], edges=np.ones((3, 1))), "3 rows of edge features for 1 edges"),
    (lambda: G.batch([G.graph(np.ones((2, 2)), [0], [1]), G.graph(np.ones((2, 3)), [0], [1])]),
     "graphs with [2, 3] node features"),
    (lambda: G.check(G.graph(np.ones((3, 2)), [0], [1])._replace(nodes=np.ones((4, 2)))),
     "'node_graph' has 3 rows; the graph has 4"),
    (lambda: G.pad(G.graph(np.ones((3, 2)), [0], [1]), 2, 4, 2), "does not fit 2, 4 and 2"),
])
def test_bad_graphs_are_one_clear_error(build, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        build()


def karate() -> tuple:
    k = nx.karate_club_graph()
    y = np.array([k.nodes[v]["club"] != "Mr. Hi" for v in k.nodes], np.int64)
    train = np.zeros(34, bool)
    train[[0, 33]] = True
    return G.from_networkx(k, np.eye(34)), y, train


def test_node_task_input_errors():
    g, y, train = karate()
    with pytest.raises(ConfigError, match="33 targets for 34 nodes"):
        graph_data.node_task(g, y[:-1], {"train": train, "test": ~train})
    with pytest.raises(ConfigError, match="the 'test' mask selects no nodes"):
        graph_data.node_task(g, y, {"train": train, "test": np.zeros(34, bool)})
    with pytest.raises(ConfigError, match="no 'test' mask"):
        graph_data.node_task(g, y, {"train": train})
    with pytest.raises(ConfigError, match="negative class label"):
        graph_data.node_task(g, y - 1, {"train": train, "test": ~train})


def test_masked_metrics_by_hand():
    out = jnp.array([[2.0, 0.0], [0.0, 1.0], [5.0, -5.0]])
    y, mask = jnp.array([0, 0, 1]), jnp.array([True, True, False])
    m = graph_alg.masked_metrics(out, y, mask, True)
    ce = lambda o, t: -jax.nn.log_softmax(o)[t]
    np.testing.assert_allclose(m["loss"], (ce(out[0], 0) + ce(out[1], 0)) / 2, rtol=1e-6)
    assert float(m["accuracy"]) == 0.5
    r = graph_alg.masked_metrics(out[:, :1], jnp.array([[1.0], [2.0], [100.0]]), mask, False)
    np.testing.assert_allclose(r["mse"], ((2 - 1) ** 2 + (0 - 2) ** 2) / 2)


def cycles_data(batch_size=4):
    gs = [G.from_networkx(nx.cycle_graph(n)) for n in (5, 6, 9, 11) * 6]
    y = np.array([0, 0, 1, 1] * 6)
    return graph_data.graph_task(gs, y, graph_data.stratified(y, 0.25, 0, 0.2),
                                 batch_size=batch_size, name="cycles")


def make(data, readout="sum", **graph):
    config = experiment.complete({"algorithm": "graph", "data": {"name": data},
                                  "model": {"name": Dense, "readout": readout},
                                  "graph": graph})
    return graph_alg.make(config, data, 10)


def test_graph_task_steps_and_chunked_evaluation_agrees():
    data = cycles_data()
    algo = make(data, eval_batch_size=256)
    chunked = make(data, eval_batch_size=4)
    state = algo.init(jax.random.key(0))
    batch = data.sample(data.splits["train"], 3, jax.random.key(1))
    assert batch["graph"].num_graphs == 4 and batch["graph"].num_nodes == 4 * 11
    state, metrics = jax.jit(algo.step)(state, batch, jax.random.key(2))
    assert set(metrics) == {"loss", "accuracy"} and int(state.step) == 1
    test = data.splits["test"]
    whole = jax.jit(algo.evaluate)(state, test, None)
    parts = jax.jit(chunked.evaluate)(state, test, None)
    for k in whole:
        np.testing.assert_allclose(whole[k], parts[k], rtol=1e-5)
    # by hand: the whole split as one batch of graphs
    out = algo.extras["model"].apply({"params": state.params}, graph_data.as_batch(test)["graph"])[0]
    np.testing.assert_allclose(whole["accuracy"], np.mean(np.argmax(out, -1) == test["y"]), rtol=1e-6)


def test_the_readout_must_match_the_task_and_the_data_must_be_graphs():
    with pytest.raises(ConfigError, match="model.readout.*one output row per graph"):
        make(cycles_data(), readout="none")
    g, y, train = karate()
    with pytest.raises(ConfigError, match="model.readout.*one output row per node"):
        make(graph_data.node_task(g, y, {"train": train, "test": ~train}), readout="sum")
    with pytest.raises(ConfigError, match="graph learning takes graph data"):
        experiment.build({"algorithm": "graph", "data": {"name": "digits"},
                          "model": {"name": Dense}})


def test_baselines_are_reported_beside_the_metrics(tmp_path):
    g, y, train = karate()
    data = graph_data.node_task(g, y, {"train": train, "test": ~train}, name="karate",
                                baselines={"test": {"spectral_accuracy": 0.75}})
    summary = experiment.run({"algorithm": "graph", "data": {"name": data},
                              "model": {"name": Dense}, "optim": {"learning_rate": 0.01},
                              "loop": {"steps": 40, "eval_every": 20}}, tmp_path, seeds=2,
                             progress=False)
    m = summary["metrics"]
    assert m["test_spectral_accuracy"] == pytest.approx(0.75)
    assert "test_spectral_accuracy" in summary["headline"]
    assert 0.8 <= m["test_accuracy"] <= 1.0  # two labelled nodes suffice on this graph
