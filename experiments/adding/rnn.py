"""The adding problem (Hochreiter & Schmidhuber 1997), sequence length 100, with a vanilla (tanh) RNN.

Command:  dlcore run adding/rnn           (quick smoke run: --quick; longer: --set data.seq_len=200)
Runtime:  about 2-3 minutes on a 2-core CPU (6000 steps through 100-step sequences).
Expected: test MSE near the 0.167 baseline: its gradients vanish over 100 steps.
Predicting the constant 1 gives MSE 1/6 ~= 0.167 (dlcore.data.adding). The network reads
the whole sequence; a dense layer maps its final hidden state to the sum. Adam with gradient
clipping; PyTorch's default initialisation. `dlcore report` on the run directory draws
||dL/dh_t|| against the time step t, at initialisation and after training.
"""


def get_config(quick: bool = False) -> dict:
    config = {
        "algorithm": "supervised",
        "data": {"name": "adding", "seq_len": 100, "train_size": 20000, "test_size": 2000,
                 "data_seed": 0, "batch_size": 50, "shuffle": True},
        "model": {"name": "rnn", "cell": "rnn", "hidden_size": 64, "head": "last", "init": "torch"},
        "optim": {"name": "adam", "learning_rate": 1e-3, "clip_norm": 1.0},
        "loop": {"steps": 6000, "log_every": 100, "eval_every": 500, "checkpoint_every": 1000},
        "published": {"test_mse": {"predict_one_baseline": round(1 / 6, 4)}},
    }
    if quick:
        config["data"].update(seq_len=20, train_size=500, test_size=100)
        config["loop"].update(steps=50, eval_every=50, checkpoint_every=50, log_every=50)
    return config
