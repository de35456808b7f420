"""Zero-shot glyph classification among all 100 unseen classes at once (chance 1 %).

Command:  dlcore run glyphs/zeroshot_all    (quick smoke run: --quick, 20 unseen classes)
Runtime:  about 2-3 minutes on a 2-core CPU (as glyphs/zeroshot; the 100-way test is no slower).
Expected: test accuracy about 0.87 (measured 0.8684 +- 0.0022, seed 0) among 100 unseen classes,
          chance 0.01; the same test on 100 of the training classes gives about 0.96.
glyphs/zeroshot's data, model and training, so the same trained model (same seed); only the test
differs: 20 episodes, each of all 100 test classes with 10 query images per class, every query
classified among the 100 classes' attribute vectors. The 95 % interval is over episodes, which all
hold the same 100 classes and differ only in the query images drawn: it covers the drawing of
images, not of classes or seeds (50-way accuracy moved by about 0.03 between seeds here). Two episodes are evaluated at a time (2 x 1000 query images through the
conv stages, about 0.2 GB of activations).
"""
from dlcore.config import load


def get_config(quick: bool = False) -> dict:
    config = load("glyphs/zeroshot", quick=quick)
    del config["experiment"]  # named by whoever loads this file
    # every test class in each episode (the quick config has 20 test classes)
    config["data"].update(test_n_way=config["data"]["test_classes"], test_q_query=10,
                          eval_tasks=20 if not quick else 4, eval_chunk=2)
    return config
