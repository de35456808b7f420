"""nanoGPT's GPU character-level GPT on tiny Shakespeare: 6 layers, 6 heads, 384 wide, block 256.

Command:  dlcore run shakespeare/gpt           (quick smoke run: --quick)
Runtime:  minutes on a GPU; on a 2-core CPU about 8 s a step (a shortened run: --set
          loop.steps=N; the README gives what one measured).
Expected: best validation loss 1.4697 nats per character, nanoGPT's README figure (5000 steps,
about 3 minutes on one A100).
Recipe (nanoGPT's config/train_shakespeare_char.py): batch 64 windows of 256 characters, dropout
0.2, no biases, tied embeddings; AdamW lr 1e-3, 100 warm-up steps, cosine decay to 1e-4 at step
5000, betas (0.9, 0.99), weight decay 0.1, clipping at 1.0. Evaluation every 250 steps over 1024
fixed validation windows; loop.best_metric keeps the best checkpoint, as nanoGPT keeps its best.
"""


def get_config(quick: bool = False) -> dict:
    config = {
        "algorithm": "lm",
        "data": {"name": "tiny_shakespeare", "block_size": 256, "batch_size": 64},
        "model": {"name": "gpt", "layers": 6, "heads": 6, "width": 384, "dropout": 0.2,
                  "bias": False},
        "optim": {"name": "adam", "learning_rate": 1e-3, "schedule": "warmup_cosine",
                  "warmup_steps": 100, "end_learning_rate": 1e-4, "b2": 0.99,
                  "weight_decay": 0.1, "clip_norm": 1.0},
        "lm": {"prompt": "ROMEO:\n", "sample_length": 250},
        "loop": {"steps": 5000, "log_every": 50, "eval_every": 250, "checkpoint_every": 250,
                 "best_metric": "validation/loss", "best_mode": "min"},
        "published": {"validation_loss": {"nanoGPT_README_best": 1.4697}},
    }
    if quick:  # the same program at a size a CPU smoke test affords
        config["data"].update(block_size=32, batch_size=4, eval_windows=16)
        config["model"].update(layers=2, heads=2, width=32)
        config["lm"]["sample_length"] = 20
        config["optim"]["warmup_steps"] = 2
        config["loop"].update(steps=10, eval_every=5, checkpoint_every=5, log_every=5)
    return config
