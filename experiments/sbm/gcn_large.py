"""A large graph trained full-batch: the block model of sbm/gcn at 100,000 nodes and about
1,000,000 directed edges, every step the whole graph.

Command:  dlcore run sbm/gcn_large      (quick smoke run: --quick)
Runtime:  about a minute on a 2-core CPU; the README gives the measured time per epoch
          (summary.json: steps_per_second, after compiling).
Expected: test accuracy as sbm/gcn's at this signal-to-noise ratio (about 0.95), above the
          spectral baseline of the same graph; no published figure.
Protocol: sbm/gcn's (Kipf & Welling's GCN, 200 full-batch epochs) with data.nodes=100000 and
5,000 validation nodes.
"""
from dlcore.config import load


def get_config(quick: bool = False) -> dict:
    config = load("sbm/gcn", quick=quick)
    del config["experiment"]
    config["data"].update(nodes=100_000, validation=5000)
    config["loop"].update(eval_every=100 if not quick else 10, log_every=20 if not quick else 10)
    if quick:  # the smoke run builds the large graph and steps on it; the baseline can wait
        config["data"]["spectral"] = False
    return config
