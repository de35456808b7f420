"""scikit-learn digits (8x8) with a small 2-D CNN.

Command:  dlcore run digits/cnn            (quick smoke run: --quick)
Runtime:  about 20 s on a 2-core CPU.
Expected: test accuracy about 0.98 on the fixed stratified split (1437 train / 360 test,
split_seed 0; dlcore.data.digits documents it).
Model: two 3x3 conv stages (32, 64 channels, SAME padding, batch norm, ReLU, 2x2 max pooling):
8x8 -> 4x4 -> 2x2, flattened 256 -> dense 128 (dropout 0.3) -> 10. AdamW with a cosine schedule.
"""


def get_config(quick: bool = False) -> dict:
    config = {
        "algorithm": "supervised",
        "data": {"name": "digits", "batch_size": 64, "shuffle": True, "test_fraction": 0.2,
                 "split_seed": 0},
        "model": {"name": "cnn", "dims": 2, "channels": (32, 64), "kernel_sizes": (3, 3),
                  "strides": (1, 1), "padding": "SAME", "pool": "max", "batch_norm": True,
                  "activation": "relu", "head": "flatten", "dense": (128,), "dropout": 0.3,
                  "input_shape": (8, 8, 1)},
        "optim": {"name": "adamw", "learning_rate": 2e-3, "weight_decay": 1e-4,
                  "schedule": "cosine"},
        "loop": {"steps": 2000, "log_every": 100, "eval_every": 250, "checkpoint_every": 1000},
    }
    if quick:
        config["loop"].update(steps=50, eval_every=50, checkpoint_every=50, log_every=50)
    return config
