"""Sinusoid regression with MAML (Finn, Abbeel & Levine 2017), second-order, K = 10.

Command:  dlcore run sinusoid/maml          (quick smoke run: --quick; other K: --set data.k_shot=5)
Runtime:  about 1.5 minutes on a 2-core CPU (70,000 meta-updates, about 1,000 a second).
Expected: MSE after one test-time step about 0.4-0.5 for K = 10 (the paper's Fig. 3 reads about 0.5;
a reference implementation measured 0.42; measured here 0.311 ± 0.030), 0.144 after ten.
Settings of the paper's code (cbfinn/maml): amplitude U[0.1, 5], phase U[0, pi], x U[-5, 5]; K
support and K query points per task; a 2x40 ReLU network; meta-batch 25 tasks; Adam 1e-3; inner
learning rate 0.01, one inner step in training, up to 10 at test. Scored on 600 fixed test tasks
(data.eval_seed) with 100 query points each; summary.json's metrics.mse_after_steps holds the mean
MSE after 0..10 test-time steps, metrics.median_mse_after_steps the median.
"""


def get_config(quick: bool = False) -> dict:
    config = {
        "algorithm": "maml",
        "data": {"name": "sinusoid", "batch_size": 25, "k_shot": 10, "q_query": 10,
                 "eval_tasks": 600, "eval_query": 100, "eval_chunk": 600, "eval_seed": 1000},
        "model": {"name": "mlp", "hidden": (40, 40), "activation": "relu", "input_shape": (1,)},
        "meta": {"inner_lr": 0.01, "inner_steps": 1, "test_steps": 10},
        "optim": {"name": "adam", "learning_rate": 1e-3},
        "loop": {"steps": 70000, "log_every": 1000, "eval_every": 10000,
                 "checkpoint_every": 10000, "steps_per_call": 100},
        # the query MSE after one test-time step (metrics.test_mse_after_steps[1])
        "published": {"test_mse_after_steps[1]": {"paper_fig3_k10": 0.5,
                                                  "reference_impl_k10": 0.42}},
    }
    if quick:
        config["data"].update(eval_tasks=50, eval_chunk=50)
        config["loop"].update(steps=200, log_every=100, eval_every=200, checkpoint_every=200)
    return config
