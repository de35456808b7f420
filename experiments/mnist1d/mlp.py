"""MNIST-1D MLP (Greydanus & Kobak, ICML 2024): 40-100-100-10, ReLU, residual second layer.

Command:  dlcore run mnist1d/mlp          (quick smoke run: --quick)
Runtime:  about 10 s on a 2-core CPU (6000 Adam steps).
Expected: test accuracy about 0.65; the paper's table gives 68 %, the authors' notebook 65.1 %.
Recipe (greydanus/mnist1d): Adam lr 1e-2, batch 100 taken in stored order, 6000 steps, PyTorch's
default initialisation (model.init='torch'); the final test accuracy is reported.
"""


def get_config(quick: bool = False) -> dict:
    config = {
        "algorithm": "supervised",
        "data": {"name": "mnist1d", "batch_size": 100, "shuffle": False},
        "model": {"name": "mlp", "hidden": (100, 100), "activation": "relu", "residual": True,
                  "init": "torch"},
        "optim": {"name": "adam", "learning_rate": 1e-2},
        # 10 steps per compiled call (lax.scan): measured faster than one (benchmarks/mnist1d_mlp.py)
        "loop": {"steps": 6000, "log_every": 100, "eval_every": 250, "checkpoint_every": 1000,
                 "steps_per_call": 10},
        "published": {"test_accuracy": {"paper_table": 0.68, "authors_notebook": 0.651}},
    }
    if quick:
        config["loop"].update(steps=200, eval_every=100, checkpoint_every=100, log_every=50)
    return config
