"""minGPT's sort demo: a 3-layer GPT learns to sort 6 digits of a 3-symbol vocabulary.

Command:  dlcore run sort/gpt           (quick smoke run: --quick)
Runtime:  about 1 minute on a 2-core CPU (2000 steps of 64 sequences).
Expected: every held-out sequence sorted exactly by greedy decoding (test_completion_accuracy
1.0); minGPT's demo notebook reports 100 % (5000/5000) on held-out sequences.
Recipe (karpathy/minGPT demo.ipynb, 'gpt-nano'): 3 layers, 3 heads, 48 wide, biases, untied output
head, dropout 0.1 (embeddings, attention, residuals); AdamW lr 5e-4 constant, betas (0.9, 0.95),
weight decay 0.1, clipping at 1.0, batch 64, 2000 steps. Input and output are one sequence of 11
tokens (6 digits, then the first 5 of their sorted order); the loss counts only the 6 output
positions. A quarter of the 729 possible inputs is held out by a hash of the digits; inputs with
many repeated digits are drawn twice as often (minGPT's rejection sampling, as weights).
minGPT decays only its Linear weights; dlcore also decays the embeddings.
"""


def get_config(quick: bool = False) -> dict:
    config = {
        "algorithm": "lm",
        "data": {"name": "sort", "length": 6, "num_digits": 3, "batch_size": 64},
        "model": {"name": "gpt", "layers": 3, "heads": 3, "width": 48, "dropout": 0.1,
                  "bias": True, "tie_embeddings": False},
        "optim": {"name": "adam", "learning_rate": 5e-4, "b2": 0.95, "weight_decay": 0.1,
                  "clip_norm": 1.0},
        "lm": {"prompt": "201021", "sample_length": 6, "temperature": 0.0},
        "loop": {"steps": 2000, "log_every": 100, "eval_every": 500, "checkpoint_every": 1000,
                 "steps_per_call": 10},
        "published": {"test_completion_accuracy": {"minGPT_demo": 1.0}},
    }
    if quick:
        config["loop"].update(steps=40, eval_every=20, checkpoint_every=20, log_every=10)
    return config
