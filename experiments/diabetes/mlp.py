"""scikit-learn diabetes progression: regression with an MLP, L2 penalty and gradient clipping.

Command:  dlcore run diabetes/mlp          (quick smoke run: --quick)
Runtime:  a few seconds on a 2-core CPU.
Expected: test MSE about 0.72 on standardised targets (predicting the mean gives about 1.0).
"""


def get_config(quick: bool = False) -> dict:
    config = {
        "algorithm": "supervised",
        "data": {"name": "diabetes", "batch_size": 32, "shuffle": True, "test_fraction": 0.2,
                 "split_seed": 0},
        "model": {"name": "mlp", "hidden": (64,), "activation": "tanh"},
        "optim": {"name": "adam", "learning_rate": 1e-3, "l2": 1e-3, "clip_norm": 1.0},
        "loop": {"steps": 2000, "log_every": 100, "eval_every": 500, "checkpoint_every": 1000},
    }
    if quick:
        config["loop"].update(steps=200, eval_every=100, checkpoint_every=100, log_every=50)
    return config
