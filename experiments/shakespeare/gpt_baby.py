"""nanoGPT's CPU "baby GPT" on tiny Shakespeare, character level: 4 layers, 4 heads, 128 wide.

Command:  dlcore run shakespeare/gpt_baby      (quick smoke run: --quick)
Runtime:  about 4 minutes on a 2-core CPU (2000 steps of 12 windows of 64 characters).
Expected: validation loss about 1.88 nats per character, nanoGPT's README figure for this
configuration (`python train.py config/train_shakespeare_char.py --device=cpu --compile=False
--eval_iters=20 --log_interval=1 --block_size=64 --batch_size=12 --n_layer=4 --n_head=4
--n_embd=128 --max_iters=2000 --lr_decay_iters=2000 --dropout=0.0`).
Recipe (nanoGPT's config/train_shakespeare_char.py with those overrides): no biases, dropout 0,
tied embeddings, learned positions; AdamW lr 1e-3, 100 warm-up steps, cosine decay to 1e-4 at step
2000, betas (0.9, 0.99), weight decay 0.1 (not on biases or LayerNorm), gradient clipping at 1.0.
The first 90 % of the characters train, the last 10 % validate; dlcore's validation loss is the
mean over 1024 fixed windows of that 10 % (nanoGPT's: 20 random batches of 12). The corpus is read
from data.path, $DLCORE_DATA/tinyshakespeare.txt or dlcore's cache, or downloaded once (its
checksum verified). `dlcore report` writes sample.txt and attention.png.
"""


def get_config(quick: bool = False) -> dict:
    config = {
        "algorithm": "lm",
        "data": {"name": "tiny_shakespeare", "block_size": 64, "batch_size": 12},
        "model": {"name": "gpt", "layers": 4, "heads": 4, "width": 128, "dropout": 0.0,
                  "bias": False},
        "optim": {"name": "adam", "learning_rate": 1e-3, "schedule": "warmup_cosine",
                  "warmup_steps": 100, "end_learning_rate": 1e-4, "b2": 0.99,
                  "weight_decay": 0.1, "clip_norm": 1.0},
        "lm": {"prompt": "ROMEO:\n", "sample_length": 58},
        "loop": {"steps": 2000, "log_every": 50, "eval_every": 250, "checkpoint_every": 500,
                 "steps_per_call": 10},
        "published": {"validation_loss": {"nanoGPT_README": 1.88}},
    }
    if quick:
        config["data"]["eval_windows"] = 64
        config["loop"].update(steps=40, eval_every=20, checkpoint_every=20, log_every=10,
                              steps_per_call=10)
        config["optim"]["warmup_steps"] = 10
    return config
