"""MNIST-1D MLP trained with mixup and label smoothing (mixup_ls.py, next to this file).

Command:  dlcore run mixup_mnist1d.py
"""


def get_config(quick: bool = False) -> dict:
    return {
        "algorithm": "mixup_ls",
        "data": {"name": "mnist1d", "batch_size": 100, "augment_shift": 3},
        "model": {"name": "mlp", "hidden": (256, 256), "init": "torch"},
        "optim": {"name": "adam", "learning_rate": 3e-3},
        "mixup": {"alpha": 0.2, "smoothing": 0.1},
        "loop": {"steps": 200 if quick else 6000, "eval_every": 100 if quick else 500,
                 "checkpoint_every": 100 if quick else 1000, "log_every": 50,
                 "steps_per_call": 10},
    }
