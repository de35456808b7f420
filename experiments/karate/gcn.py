"""Zachary's karate club with two labelled members: jraph's example, 20 seeds in one program.

Command:  dlcore run karate/gcn --seeds 20      (quick smoke run: --quick)
Runtime:  a few seconds on a 2-core CPU (30 full-graph steps per seed, all seeds vmapped).
Expected: the mean accuracy on the 32 members whose labels the model never saw about 0.95
          (the GNN issue asks >= 0.9); jraph's example prints the accuracy per step and no
          final figure, so there is no published number to set beside it.
Protocol (google-deepmind/jraph, examples/zacharys_karate_club.py): one-hot node identity
features [34, 34]; GCN 34 -> 5 (ReLU) -> 2; only node 0 (Mr. Hi) and node 33 (the administrator)
labelled; Adam 1e-2, 30 steps. jraph scores all 34 members (data.test_nodes=all); here the test
split is the other 32, so the two fitted nodes never count. One difference: jraph's second
layer adds no self loops, dlcore's GCN (Kipf & Welling, PyG) always does.
"""


def get_config(quick: bool = False) -> dict:
    config = {
        "algorithm": "graph",
        "data": {"name": "karate", "features": "identity", "test_nodes": "others"},
        "model": {"name": "gnn", "conv": "gcn", "hidden": (5,), "readout": "none"},
        "optim": {"name": "adam", "learning_rate": 1e-2},
        "loop": {"steps": 30, "log_every": 5, "eval_every": 10, "checkpoint_every": 30},
    }
    if quick:
        config["loop"].update(steps=10, eval_every=5, checkpoint_every=10)
    return config
