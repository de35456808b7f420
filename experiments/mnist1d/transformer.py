"""MNIST-1D Transformer encoder: the 40 samples as 40 tokens, two pre-LayerNorm blocks, mean readout.

Command:  dlcore run mnist1d/transformer   (quick smoke run: --quick)
          dlcore run mnist1d/transformer --set model.positions=none --set data.shuffle_seq=true
Runtime:  about 8 minutes on a 2-core CPU (6000 Adam steps).
Expected: see the README's results table; the paper's table gives MLP 68 %, CNN 94 %, GRU 91 %
(no Transformer). Each sample is a token of one feature, embedded by a dense layer; learned
positions; width 64, 4 heads, MLP 4x; Adam lr 1e-3 with a cosine decay, batch 100 in stored order.
Without positional information (model.positions=none) and with the mean readout the encoder is
permutation invariant: MNIST-1D with its samples shuffled by one fixed permutation
(data.shuffle_seq=true) then gives the same accuracy as unshuffled (tests/test_transformer.py).
"""


def get_config(quick: bool = False) -> dict:
    config = {
        "algorithm": "supervised",
        "data": {"name": "mnist1d", "batch_size": 100, "shuffle": False},
        "model": {"name": "transformer", "layers": 2, "heads": 4, "width": 64,
                  "positions": "learned", "readout": "mean", "input_shape": (40,)},
        "optim": {"name": "adam", "learning_rate": 1e-3, "schedule": "cosine"},
        "loop": {"steps": 6000, "log_every": 100, "eval_every": 500, "checkpoint_every": 1000,
                 "steps_per_call": 10},
        "published": {"test_accuracy": {"paper_table_mlp": 0.68, "paper_table_cnn": 0.94,
                                        "paper_table_gru": 0.91}},
    }
    if quick:
        config["loop"].update(steps=100, eval_every=50, checkpoint_every=50, log_every=50)
    return config
