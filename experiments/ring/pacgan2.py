"""PacGAN2 on PacGAN's ring (Lin et al., NeurIPS 2018, Table 1): ring/gan with the discriminator
judging two samples at once (concatenated: a 4-D input), 100 such pairs a step.

Command:  dlcore run ring/pacgan2 --seeds 10  (quick smoke run: --quick)
Runtime:  about 50 minutes per seed on a 2-core CPU (400,000 steps at ~130 steps/s).
Expected: PacGAN Table 1 (10 trials): 7.9 ± 0.1 modes, 95.6 % high-quality samples, reverse KL 0.07.
"""
from dlcore.config import load


def get_config(quick: bool = False) -> dict:
    config = load("ring/gan", quick=quick)
    del config["experiment"]
    config["gan"]["pack"] = 2
    # PacGAN's batch of 100 and data set of 100,000 count packed inputs (its reference code), so
    # each step judges 100 pairs of real and 100 pairs of generated samples
    config["data"]["batch_size"] *= 2
    config["data"]["num_samples"] *= 2
    config["published"] = {"test_modes": {"PacGAN_table1": 7.9},
                           "test_high_quality": {"PacGAN_table1": 0.956},
                           "test_reverse_kl": {"PacGAN_table1": 0.07}}
    return config
