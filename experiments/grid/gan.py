"""PacGAN's grid experiment, plain GAN (Lin et al., NeurIPS 2018, Table 1): 25 Gaussian modes
(sigma 0.05) at {-4, -2, 0, 2, 4}^2; ring/gan's networks and training.

Command:  dlcore run grid/gan --seeds 10      (quick smoke run: --quick)
Runtime:  about 45 minutes per seed on a 2-core CPU (400,000 steps at ~150 steps/s).
Expected: PacGAN Table 1 (10 trials): 17.3 ± 0.8 modes, 94.8 % high-quality samples, reverse KL 0.70.
"""
from dlcore.config import load


def get_config(quick: bool = False) -> dict:
    config = load("ring/gan", quick=quick)
    del config["experiment"]
    config["data"]["kind"] = "grid"
    config["published"] = {"test_modes": {"PacGAN_table1": 17.3},
                           "test_high_quality": {"PacGAN_table1": 0.948},
                           "test_reverse_kl": {"PacGAN_table1": 0.7}}
    return config
