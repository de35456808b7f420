"""PacGAN's ring experiment, plain GAN (Lin et al., NeurIPS 2018, Table 1): 8 Gaussian modes
(sigma 0.01) on the unit circle.

Command:  dlcore run ring/gan --seeds 10      (quick smoke run: --quick)
Runtime:  about 45 minutes per seed on a 2-core CPU (400,000 steps at ~150 steps/s; 2 seeds in one
          program about 90 minutes); README has the measured runs and their length.
Expected: PacGAN Table 1 (10 trials): 6.3 ± 0.5 modes, 98.2 % high-quality samples, reverse KL
          0.45 (test_modes, test_high_quality, test_reverse_kl: 2,500 generated samples; a mode
          counts when a sample lies within 3 sigma of it).
Protocol: generator z ~ N(0, I_2) -> 4 x (400, batch norm, ReLU) -> 2; discriminator 3 maxout
layers (200 units, 5 pieces) -> linear; Adam 1e-4, beta1 0.8; batch 100 of 100,000 training
samples; the non-saturating generator loss. ring/pacgan2 packs two samples per input.
As in PacGAN's reference code (fjxmlzn/PacGAN, synthetic_data_experiments), beyond the paper's
text: weights ~ N(0, 0.02^2) and zero biases in both networks; both networks step at once from one
forward pass (ALI's training algorithm: gan.updates 'simultaneous'); the generator's batch-norm
running statistics (used for the scored samples) move by 0.05 a step.
"""


def get_config(quick: bool = False) -> dict:
    config = {
        "algorithm": "gan",
        "data": {"name": "mixture", "kind": "ring", "num_samples": 100_000, "batch_size": 100},
        "generator": {"name": "mlp", "hidden": (400, 400, 400, 400), "batch_norm": True,
                      "batch_norm_momentum": 0.95, "activation": "relu", "init": "normal_002"},
        "discriminator": {"name": "maxout", "hidden": (200, 200, 200), "pieces": 5,
                          "init": "normal_002"},
        "gan": {"latent": 2, "noise": "normal", "pack": 1, "loss": "non_saturating",
                "updates": "simultaneous", "eval_samples": 2500},
        "optim": {"name": "adam", "learning_rate": 1e-4, "b1": 0.8},
        "loop": {"steps": 400_000, "log_every": 2000, "eval_every": 20_000,
                 "checkpoint_every": 20_000, "steps_per_call": 100},
        "published": published(6.3, 0.982, 0.45),
    }
    if quick:
        config["data"]["num_samples"] = 2000
        config["gan"]["eval_samples"] = 500
        config["loop"].update(steps=40, eval_every=20, checkpoint_every=20, log_every=10,
                              steps_per_call=10)
    return config


def published(modes: float, high_quality: float, reverse_kl: float) -> dict:
    """PacGAN Table 1's means over 10 trials, as summary metrics."""
    return {"test_modes": {"PacGAN_table1": modes},
            "test_high_quality": {"PacGAN_table1": high_quality},
            "test_reverse_kl": {"PacGAN_table1": reverse_kl}}
