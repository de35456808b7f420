"""Sinusoid regression with Reptile (Nichol et al. 2018), K = 10.

Command:  dlcore run sinusoid/reptile       (quick smoke run: --quick)
Runtime:  about 2 minutes on a 2-core CPU (70,000 meta-updates, 5 inner steps each).
Expected: after fine-tuning, MSE well below the pretrained baseline's; Reptile needs more test-time
steps than MAML (its initialisation is not trained for one step).
sinusoid/maml's data, network, meta-batch and test protocol; each task's parameters take 5 SGD steps
of 0.01 on all of its 2K points, and Adam 1e-3 applies the meta-gradient params - mean(adapted).
"""

from dlcore.config import load


def get_config(quick: bool = False) -> dict:
    config = load("sinusoid/maml", quick=quick)
    del config["experiment"]
    config["algorithm"] = "reptile"
    config["meta"].update(inner_steps=5, inner_lr=0.01)
    config["published"] = {}
    return config
