"""MNIST-1D with a residual LayerNorm MLP of my own (my_models.py, next to this file).

Command:  dlcore run resln_mnist1d.py            (NNX: --set model.name=my_models:NNXMLP)
"""


def get_config(quick: bool = False) -> dict:
    return {
        "algorithm": "supervised",
        "data": {"name": "mnist1d", "batch_size": 100, "shuffle": True},
        "model": {"name": "my_models:ResLNMLP", "width": 128, "depth": 3},
        "optim": {"name": "adamw", "learning_rate": 3e-3, "weight_decay": 0.05,
                  "schedule": "warmup_cosine", "warmup_steps": 20 if quick else 200},
        "loop": {"steps": 200 if quick else 4000, "eval_every": 100 if quick else 500,
                 "checkpoint_every": 100 if quick else 1000, "log_every": 50,
                 "steps_per_call": 10},
    }
