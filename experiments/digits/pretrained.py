"""Few-shot digits, the transfer baseline: a 5-way classifier on digits 0-4, its head replaced by a
zero-initialised head and the whole network fine-tuned on each test episode's support set (digits
5-9): 20 steps of 0.1.

Command:  dlcore run digits/pretrained      (quick smoke run: --quick; 5-shot: --set data.k_shot=5)
Runtime:  about 1 minute on a 2-core CPU.
Expected: above chance; compare with digits/protonet and nearest neighbour on pixels.
"""

from dlcore.config import load


def get_config(quick: bool = False) -> dict:
    config = load("digits/protonet", quick=quick)
    del config["experiment"]
    config["algorithm"] = "pretrained"
    config["data"].update(batch_size=1, n_way=5, k_shot=10, q_query=10, test_k_shot=1)
    config["meta"] = {"test_steps": 20 if not quick else 3, "test_inner_lr": 0.1,
                      "task_batching": "unroll"}  # fine-tuning convs: see glyphs/maml
    config["data"]["eval_chunk"] = 10
    return config
