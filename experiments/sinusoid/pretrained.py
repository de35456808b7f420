"""Sinusoid regression, the pretrained baseline of Finn et al. 2017: one network regressed on the
pooled points of all training tasks, fine-tuned on each test task with learning rate 0.02.

Command:  dlcore run sinusoid/pretrained    (quick smoke run: --quick)
Runtime:  about 1 minute on a 2-core CPU (70,000 steps).
Expected: MSE about 1.8 after ten fine-tuning steps at K = 10 (the paper's Fig. 3 and a reference
implementation; measured here 1.52 ± 0.19): averaging over phases leaves it predicting about zero, and ten small steps on ten
points do not recover the sinusoid.
"""

from dlcore.config import load


def get_config(quick: bool = False) -> dict:
    config = load("sinusoid/maml", quick=quick)
    del config["experiment"]
    config["algorithm"] = "pretrained"
    config["meta"] = {"test_steps": 10, "test_inner_lr": 0.02}
    config["published"] = {"test_mse_after_steps[10]": {"paper_fig3_k10": 1.8,
                                                        "reference_impl_k10": 1.8}}
    return config
