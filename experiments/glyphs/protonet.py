"""Few-shot glyph classification with Prototypical Networks (Snell et al. 2017), 5-way 1-shot.

Command:  dlcore run glyphs/protonet        (quick smoke run: --quick;
          5-shot: --set data.k_shot=5)
Runtime:  about 3 minutes on a 2-core CPU (1000 steps of 120 images, one evaluation).
Expected: test accuracy about 0.99 (1-shot; 5-shot 0.997), against 0.545 / 0.807 for nearest
neighbour on pixels over the same episodes.
Data: dlcore.data.glyphs, 400 procedurally generated glyph classes of 20 distorted 28x28 renderings
(an Omniglot stand-in generated offline); classes 0-299 meta-train, 300-399 meta-test, disjoint.
Training episodes are 20-way (Snell et al. train with more classes than they test), K-shot,
5 queries per class; 600 test episodes are 5-way K-shot with 15 queries per class, the same
episodes for every method (data.eval_seed). Embedding: four 3x3 conv stages of 32 channels with
ReLU and 2x2 max pooling (28 -> 1), then a linear map to 64 dimensions. Adam 1e-3.
"""


def get_config(quick: bool = False) -> dict:
    config = {
        "algorithm": "protonet",
        "data": {"name": "glyphs", "batch_size": 1, "n_way": 20, "k_shot": 1, "q_query": 5,
                 "test_n_way": 5, "test_k_shot": 0, "test_q_query": 15, "eval_tasks": 600,
                 "eval_chunk": 50, "eval_seed": 2000, "num_classes": 400, "per_class": 20,
                 "image_size": 28, "data_seed": 0, "test_classes": 100, "validation_classes": 0},
        "model": {"name": "cnn", "dims": 2, "channels": (32, 32, 32, 32),
                  "kernel_sizes": (3, 3, 3, 3), "strides": (1, 1, 1, 1), "padding": "SAME",
                  "pool": "max", "head": "flatten", "dense": (), "input_shape": (28, 28, 1)},
        "meta": {"embedding_dim": 64},
        "optim": {"name": "adam", "learning_rate": 1e-3},
        "loop": {"steps": 1000, "log_every": 100, "eval_every": 1000, "checkpoint_every": 500,
                 "steps_per_call": 1},
    }
    if quick:
        config["data"].update(eval_tasks=20, eval_chunk=10, num_classes=60, test_classes=20)
        config["loop"].update(steps=20, log_every=10, eval_every=20, checkpoint_every=20)
    return config
