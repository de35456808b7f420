"""Few-shot digits with second-order MAML (Finn et al. 2017): 5-way 1-shot on unseen digits.

Command:  dlcore run digits/maml            (quick smoke run: --quick; 5-shot: --set data.k_shot=5)
Runtime:  about 2 minutes on a 2-core CPU.
Expected: above nearest neighbour on pixels (about 0.72 1-shot, 0.90 5-shot).
digits/protonet's data, class split, test episodes and conv stages, ending in a 5-way head; 8
episodes per meta-batch, one inner step of 0.4 in training, three at test, Adam 1e-3.
"""

from dlcore.config import load


def get_config(quick: bool = False) -> dict:
    config = load("digits/protonet", quick=quick)
    del config["experiment"]
    config["algorithm"] = "maml"
    config["data"].update(batch_size=8, q_query=5)
    # tasks in turn, not vmapped: 5x faster for convs on a CPU (benchmarks/meta_tasks.py)
    config["meta"] = {"inner_lr": 0.4, "inner_steps": 1, "test_steps": 3,
                      "task_batching": "unroll"}
    config["data"]["eval_chunk"] = 10  # unrolled: ten tasks per compiled chunk
    return config
