"""Few-shot digits with Prototypical Networks (Snell et al. 2017): 5-way 1-shot on unseen digits.

Command:  dlcore run digits/protonet        (quick smoke run: --quick; 5-shot: --set data.k_shot=5)
Runtime:  about 1 minute on a 2-core CPU.
Expected: above nearest neighbour on pixels (about 0.72 1-shot, 0.90 5-shot).
Data: scikit-learn's 8x8 digits as classes (dlcore.data.digits_classes), a documented
class split: digits 0-4 meta-train, 5-9 meta-test, 174 examples each (the smallest class's count).
With five test classes, every 5-way test episode uses all of 5-9 in a random order; 600 episodes
with 15 queries per class (data.eval_seed). Embedding: two 3x3 conv stages of 32 channels with ReLU
and 2x2 max pooling (8 -> 2), flattened, a linear map to 64 dimensions. Adam 1e-3.
"""


def get_config(quick: bool = False) -> dict:
    config = {
        "algorithm": "protonet",
        "data": {"name": "digits_classes", "batch_size": 4, "n_way": 5, "k_shot": 1, "q_query": 10,
                 "test_n_way": 5, "test_k_shot": 0, "test_q_query": 15, "eval_tasks": 600,
                 "eval_chunk": 100, "eval_seed": 2000, "train_classes": (0, 1, 2, 3, 4)},
        "model": {"name": "cnn", "dims": 2, "channels": (32, 32), "kernel_sizes": (3, 3),
                  "strides": (1, 1), "padding": "SAME", "pool": "max", "head": "flatten",
                  "dense": (), "input_shape": (8, 8, 1)},
        "meta": {"embedding_dim": 64},
        "optim": {"name": "adam", "learning_rate": 1e-3},
        "loop": {"steps": 2000, "log_every": 100, "eval_every": 1000, "checkpoint_every": 1000,
                 "steps_per_call": 1},  # a conv step inside a scan: slow on CPU
    }
    if quick:
        config["data"].update(eval_tasks=20, eval_chunk=20)
        config["loop"].update(steps=20, log_every=10, eval_every=20, checkpoint_every=20)
    return config
