"""Few-shot glyph classification with second-order MAML (Finn et al. 2017), 5-way 1-shot.

Command:  dlcore run glyphs/maml            (quick smoke run: --quick; 5-shot: --set data.k_shot=5)
Runtime:  about 3 minutes on a 2-core CPU (500 second-order meta-updates, about 6 a second).
Expected: about 0.70 at 1-shot after the protocol's three test steps (0.76 after one), above
nearest neighbour on pixels (0.545); not yet trained to convergence in 500 meta-updates.
glyphs/protonet's data, test episodes and conv stages; the network ends in a 5-way head. Finn et
al.'s Omniglot recipe, shortened: 5-way training episodes with 5 queries per class, 4 episodes per
meta-batch, one inner step of 0.4 in training and three at test, Adam 1e-3, 500 meta-updates.
"""

from dlcore.config import load


def get_config(quick: bool = False) -> dict:
    config = load("glyphs/protonet", quick=quick)
    del config["experiment"]  # named by whoever loads this file
    config["algorithm"] = "maml"
    config["data"].update(batch_size=4, n_way=5, q_query=5)
    # tasks in turn, not vmapped: 5x faster for convs on a CPU (benchmarks/meta_tasks.py)
    config["meta"] = {"inner_lr": 0.4, "inner_steps": 1, "test_steps": 3,
                      "task_batching": "unroll"}
    config["data"]["eval_chunk"] = 10  # unrolled: ten tasks per compiled chunk
    if not quick:  # second-order steps through the conv stages are slow on a CPU
        config["loop"].update(steps=500, eval_every=500, checkpoint_every=250)
    return config
