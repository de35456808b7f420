"""Sinusoid regression with Meta-SGD (Li et al. 2017): MAML with a learned rate per parameter, K = 10.

Command:  dlcore run sinusoid/metasgd       (quick smoke run: --quick)
Runtime:  about 1-2 minutes on a 2-core CPU (70,000 meta-updates).
Expected: MSE after one test-time step below MAML's (Li et al. Table 1, 10-shot, 5-40 MSE 0.53 vs
MAML 0.69, an older harder protocol; read the ordering, not the numbers). Measured here 0.208
after one step; further steps with the learned rates diverge (README, Meta-learning).
sinusoid/maml's settings; the rates start at 0.01 and are meta-learned with the initialisation.
"""

from dlcore.config import load


def get_config(quick: bool = False) -> dict:
    config = load("sinusoid/maml", quick=quick)
    del config["experiment"]
    config["algorithm"] = "metasgd"
    config["published"] = {"test_mse_after_steps[1]": {"li2017_table1_10shot_metasgd": 0.53,
                                                       "li2017_table1_10shot_maml": 0.69}}
    return config
