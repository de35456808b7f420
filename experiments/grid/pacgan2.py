"""PacGAN2 on PacGAN's grid (Lin et al., NeurIPS 2018, Table 1): grid/gan with two samples per
discriminator input.

Command:  dlcore run grid/pacgan2 --seeds 10  (quick smoke run: --quick)
Runtime:  about 50 minutes per seed on a 2-core CPU (400,000 steps at ~130 steps/s).
Expected: PacGAN Table 1 (10 trials): 23.8 ± 0.7 modes, 91.3 % high-quality samples, reverse KL 0.13.
"""
from dlcore.config import load


def get_config(quick: bool = False) -> dict:
    config = load("ring/gan", quick=quick)
    del config["experiment"]
    config["data"]["kind"] = "grid"
    config["gan"]["pack"] = 2
    # PacGAN's batch of 100 and data set of 100,000 count packed inputs (its reference code), so
    # each step judges 100 pairs of real and 100 pairs of generated samples
    config["data"]["batch_size"] *= 2
    config["data"]["num_samples"] *= 2
    config["published"] = {"test_modes": {"PacGAN_table1": 23.8},
                           "test_high_quality": {"PacGAN_table1": 0.913},
                           "test_reverse_kl": {"PacGAN_table1": 0.13}}
    return config
