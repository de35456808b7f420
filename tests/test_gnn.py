"""Graph neural networks end to end: what the GNN issue promises of the family as a whole.
Batches of graphs shard over 8 fake devices (conftest.py) with the single-device result."""
from __future__ import annotations

import jax
import networkx as nx
import numpy as np
import pytest

from dlcore import experiment, graphs as G, parallel
from dlcore.algorithms import graph as graph_alg
from dlcore.data import graph_data

pytestmark = pytest.mark.timeout(300)


def cycles(batch_size=16):
    """Cycles of four lengths, two classes: a graph task of small graphs of different sizes."""
    gs = [G.from_networkx(nx.cycle_graph(n), np.full((n, 2), n / 10.0)) for n in (5, 6, 9, 11) * 10]
    y = np.array([0, 0, 1, 1] * 10)
    return graph_data.graph_task(gs, y, graph_data.stratified(y, 0.2, 0), batch_size=batch_size,
                                 name="cycles")


@pytest.mark.parametrize("conv", ["gcn", "gin"])
def test_a_batch_of_graphs_sharded_over_8_devices_steps_as_on_one(conv):
    data = cycles()
    config = experiment.complete({"algorithm": "graph", "data": {"name": data},
                                  "model": {"name": "gnn", "conv": conv, "hidden": [16, 16],
                                            "readout": "mean"}})
    alg = graph_alg.make(config, data, 10)
    state = jax.jit(alg.init)(jax.random.key(0))
    batch = data.sample(data.splits["train"], 1, jax.random.key(3))
    key = jax.random.key(1)
    one, one_metrics = jax.jit(alg.step)(state, batch, key)

    mesh = parallel.data_mesh(8)
    sharded = jax.device_put(batch, parallel.batch_sharding(mesh))  # 2 graphs per device
    assert len(sharded["graph"].nodes.sharding.device_set) == 8
    eight, eight_metrics = jax.jit(alg.step)(parallel.put_replicated(state, mesh), sharded, key)
    for a, b in zip(jax.tree.leaves(one), jax.tree.leaves(eight)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
    for name in one_metrics:
        np.testing.assert_allclose(one_metrics[name], eight_metrics[name], rtol=1e-5)


def test_the_loop_on_8_devices_matches_one(tmp_path):
    data = cycles()
    config = {"algorithm": "graph", "data": {"name": data},
              "model": {"name": "gnn", "conv": "gin", "hidden": [16], "readout": "sum"},
              "optim": {"learning_rate": 0.01},
              "loop": {"steps": 20, "eval_every": 10, "plots": False}}
    one = experiment.run(config, tmp_path / "one", progress=False)
    eight = experiment.run(experiment.apply_overrides(experiment.complete(config),
                                                      ["loop.devices=8"]),
                           tmp_path / "eight", progress=False)
    for k in ("test_loss", "test_accuracy"):
        np.testing.assert_allclose(one["metrics"][k], eight["metrics"][k], rtol=1e-4)
