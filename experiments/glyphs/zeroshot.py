"""Zero-shot glyph classification: unseen classes recognised from their stroke attributes alone.

Command:  dlcore run glyphs/zeroshot        (quick smoke run: --quick; all 100 unseen classes at
          once: dlcore run glyphs/zeroshot_all)
Runtime:  about 2-3.5 minutes on a 2-core CPU (1000 steps; 3.5 min measured with the machine shared).
Expected: test accuracy about 0.98 (measured 0.9859 +- 0.0017 over 600 episodes, seed 0) on 5-way
          episodes of unseen classes; chance is 0.20 (reported as test_chance).
Data: dlcore.data.glyphs, 400 procedurally generated glyph classes; classes 0-299 train, 300-399
test (disjoint). A class is described by its 20-d binary stroke-membership vector, the parameters
that generate it. Training episodes: 32 training classes, 2 examples of each (support and query
pooled: both are labelled examples), classified among the 32 by the compatibility <f(x), g(a)>
(dlcore.algorithms.zeroshot), plus the attribute-detection loss with weight 0.5. Test: 600
episodes of 5 unseen classes with 15 query images each, classified from the 5 attribute vectors
alone (the 1-shot support set is drawn but never used; the same episodes as glyphs/protonet's).
f: glyphs/protonet's four conv stages, 64-d; g: linear. Adam 2e-3.
The attribute loss weight was chosen on 60 validation classes cut from the training classes
(--set data.validation_classes=60, 50-way, 3 seeds): 0.881 with it, 0.857 without.
"""


def get_config(quick: bool = False) -> dict:
    config = {
        "algorithm": "zeroshot",
        "data": {"name": "glyphs", "batch_size": 1, "n_way": 32, "k_shot": 1, "q_query": 1,
                 "test_n_way": 5, "test_k_shot": 0, "test_q_query": 15, "eval_tasks": 600,
                 "eval_chunk": 50, "eval_seed": 2000, "num_classes": 400, "per_class": 20,
                 "image_size": 28, "data_seed": 0, "test_classes": 100, "validation_classes": 0},
        "model": {"name": "cnn", "dims": 2, "channels": (32, 32, 32, 32),
                  "kernel_sizes": (3, 3, 3, 3), "strides": (1, 1, 1, 1), "padding": "SAME",
                  "pool": "max", "head": "flatten", "dense": (), "input_shape": (28, 28, 1)},
        "meta": {"embedding_dim": 64},
        "zeroshot": {"attribute_hidden": (), "attribute_loss": 0.5},
        "optim": {"name": "adam", "learning_rate": 2e-3},
        "loop": {"steps": 1000, "log_every": 100, "eval_every": 500, "checkpoint_every": 500,
                 "steps_per_call": 1},
    }
    if quick:
        config["data"].update(n_way=10, eval_tasks=20, eval_chunk=10, num_classes=60,
                              test_classes=20)
        config["loop"].update(steps=20, log_every=10, eval_every=20, checkpoint_every=20)
    return config
