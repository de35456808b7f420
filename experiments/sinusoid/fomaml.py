"""Sinusoid regression with first-order MAML (Finn et al. 2017, Sec. 5.2), K = 10.

Command:  dlcore run sinusoid/fomaml        (quick smoke run: --quick)
Runtime:  about 1-2 minutes on a 2-core CPU (70,000 meta-updates).
Expected: MSE after one test-time step close to second-order MAML's (a reference implementation
measured 0.42 for both at K = 10).
sinusoid/maml's settings; the inner gradient is a constant to the meta-gradient.
"""

from dlcore.config import load


def get_config(quick: bool = False) -> dict:
    config = load("sinusoid/maml", quick=quick)
    del config["experiment"]  # named by whoever loads this file
    config["meta"]["first_order"] = True
    config["published"] = {"test_mse_after_steps[1]": {"reference_impl_k10": 0.42}}
    return config
