"""Node classification on a stochastic block model: a GCN against spectral clustering of the
same graph and against the features alone.

Command:  dlcore run sbm/gcn --seeds 5      (quick smoke run: --quick)
Runtime:  a few seconds on a 2-core CPU (200 full-graph steps, seeds vmapped).
Expected: 1,000 nodes, 2 blocks, average degree 10, signal-to-noise 1.5 (Kesten-Stigum at 1),
          contextual Gaussian features of signal 1 (features alone at best 0.84): the GCN,
          combining both, above both test_spectral_accuracy (graph alone, Bethe Hessian) and
          test_feature_bayes_accuracy (the features' Bayes-optimal accuracy); no published
          figure. experiments/studies/sbm.py sweeps the signal-to-noise ratio.
Protocol: Kipf & Welling's Cora GCN: 2 layers, 16 hidden, ReLU, dropout 0.5, Adam 0.01, L2 5e-4
(on every weight matrix, biases excluded; Kipf & Welling penalise the first layer only),
200 full-batch epochs; 20 labelled nodes per class, 500 validation nodes, the rest test.
"""


def get_config(quick: bool = False) -> dict:
    config = {
        "algorithm": "graph",
        "data": {"name": "sbm", "nodes": 1000, "classes": 2, "degree": 10.0, "snr": 1.5,
                 "features": "gaussian", "feature_dim": 16, "feature_snr": 1.0,
                 "train_per_class": 20, "validation": 500},
        "model": {"name": "gnn", "conv": "gcn", "hidden": (16,), "dropout": 0.5,
                  "readout": "none"},
        "optim": {"name": "adam", "learning_rate": 0.01, "l2": 5e-4},
        "loop": {"steps": 200, "log_every": 20, "eval_every": 20, "checkpoint_every": 200},
    }
    if quick:
        config["loop"].update(steps=20, eval_every=10, checkpoint_every=20, log_every=10)
    return config
