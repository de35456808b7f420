"""scikit-learn digits (8x8) with an MLP: a second built-in classification set.

Command:  dlcore run digits/mlp            (quick smoke run: --quick)
Runtime:  about 5 s on a 2-core CPU.
Expected: test accuracy about 0.97 on the fixed stratified split (1437 train / 360 test, seed 0).
"""


def get_config(quick: bool = False) -> dict:
    config = {
        "algorithm": "supervised",
        "data": {"name": "digits", "batch_size": 64, "shuffle": True, "test_fraction": 0.2,
                 "split_seed": 0},
        "model": {"name": "mlp", "hidden": (128, 128), "activation": "relu"},
        "optim": {"name": "adamw", "learning_rate": 1e-3, "weight_decay": 1e-4,
                  "schedule": "cosine"},
        "loop": {"steps": 3000, "log_every": 100, "eval_every": 500, "checkpoint_every": 1000},
    }
    if quick:
        config["loop"].update(steps=100, eval_every=50, checkpoint_every=50, log_every=50)
    return config
