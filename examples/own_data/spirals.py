"""Two spirals from a .npz of my own (make_data.py writes it next to this file).

Command:  python make_data.py && dlcore run spirals.py
"""


def get_config(quick: bool = False) -> dict:
    return {
        "algorithm": "supervised",
        "data": {"name": "npz", "path": "my_data.npz", "test_fraction": 0.2,
                 "validation_fraction": 0.1, "batch_size": 64, "shuffle": True},
        "model": {"name": "mlp", "hidden": (64, 64), "activation": "tanh"},
        "optim": {"name": "adam", "learning_rate": 1e-2},
        "loop": {"steps": 1000 if quick else 3000, "eval_every": 250,
                 "checkpoint_every": 1000, "log_every": 50,
                 "best_metric": "validation/accuracy"},
    }
