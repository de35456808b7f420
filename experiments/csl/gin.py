"""CSL without positional encodings: GIN cannot tell the ten circulant graphs apart.

Command:  dlcore run csl/gin --seeds 4      (quick smoke run: --quick)
Runtime:  about a minute on a 2-core CPU.
Expected: test accuracy exactly 0.10 for every seed: the graphs are 4-regular and every node has
          the same feature, so any message-passing network (1-WL-bounded: GCN, GAT, GIN) gives
          all 150 graphs one representation (Dwivedi et al. 2023, Table: 10 % for every MPNN
          without positional encodings). csl/gin_pe adds Laplacian eigenvectors.
Protocol (Dwivedi et al., 'Benchmarking GNNs', CSL): fold 0 of 5 stratified folds (90 train,
30 validation, 30 test graphs); batch 5; GIN of 4 layers with sum readout; Adam 5e-4.
"""


def get_config(quick: bool = False) -> dict:
    config = {
        "algorithm": "graph",
        "data": {"name": "csl", "pe_dim": 0, "fold": 0, "batch_size": 5},
        "model": {"name": "gnn", "conv": "gin", "hidden": (64, 64, 64, 64), "readout": "sum",
                  "dense": (64,)},
        "optim": {"name": "adam", "learning_rate": 5e-4},
        "loop": {"steps": 3600, "log_every": 180, "eval_every": 360, "checkpoint_every": 1800,
                 "steps_per_call": 18},
        "published": {"test_accuracy": {"dwivedi_gin_without_pe": 0.10}},
    }
    if quick:
        config["loop"].update(steps=36, eval_every=18, checkpoint_every=36, log_every=18)
    return config
