"""The adding problem (Hochreiter & Schmidhuber 1997), sequence length 100, with a GRU.

Command:  dlcore run adding/gru           (quick smoke run: --quick; longer: --set data.seq_len=200)
Runtime:  about 2-3 minutes on a 2-core CPU (6000 steps through 100-step sequences).
Expected: test MSE below 0.01.
Predicting the constant 1 gives MSE 1/6 ~= 0.167 (dlcore.data.adding). The network reads
the whole sequence; a dense layer maps its final hidden state to the sum. Adam with gradient
clipping; PyTorch's default initialisation. `dlcore report` on the run directory draws
||dL/dh_t|| against the time step t, at initialisation and after training.
"""
from dlcore.config import load


def get_config(quick: bool = False) -> dict:
    # adding/rnn's data, model size, optimizer and schedule; only the cell differs
    config = load("adding/rnn", quick=quick)
    del config["experiment"]  # named by whoever loads this file, not "adding/rnn"
    config["model"].update(cell="gru")
    return config
