"""Few-shot glyph classification, the transfer baseline: a classifier over the 300 training classes,
its head replaced by a zero-initialised 5-way head and the whole network fine-tuned on each test
episode's support set (Chen et al. 2019's "baseline"; Finn et al.'s "pretrained").

Command:  dlcore run glyphs/pretrained      (quick smoke run: --quick; 5-shot: --set data.k_shot=5)
Runtime:  about 8 minutes on a 2-core CPU (the evaluation fine-tunes 600 times: most of it).
Expected: about 0.57 at 1-shot, a little above nearest neighbour on pixels (0.545), far below
ProtoNets.
glyphs/protonet's data, test episodes and conv stages. Pretraining batches are 60 classes with 2
examples each (global labels); fine-tuning takes 20 steps of 0.1 on the support set.
"""

from dlcore.config import load


def get_config(quick: bool = False) -> dict:
    config = load("glyphs/protonet", quick=quick)
    del config["experiment"]
    config["algorithm"] = "pretrained"
    config["data"].update(batch_size=1, n_way=60 if not quick else 20, k_shot=1, q_query=1)
    config["meta"] = {"test_steps": 20 if not quick else 3, "test_inner_lr": 0.1,
                      "task_batching": "unroll"}  # fine-tuning convs: see glyphs/maml
    config["data"]["eval_chunk"] = 10
    return config
