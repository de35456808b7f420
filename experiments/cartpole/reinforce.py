"""REINFORCE with a learned value baseline on CartPole-v1 (Williams 1992).

Command:  dlcore run cartpole/reinforce --seeds 4     (quick smoke run: --quick)
Runtime:  about 50 s for 4 seeds in one program on a 2-core CPU (400 updates, 3,200 episodes per seed)
Expected: final return (mean of each seed's last 100 training episodes) near 500; measured here:
497.04 ± 0.63 over 4 seeds;
greedy policy 499.2 ± 1.4. No figure is published for this exact setting in the issue's sources.
Settings: each update plays one whole episode in each of 8 environments (Monte-Carlo returns,
γ 0.99), advantages G - V(s) normalised, one Adam step of 1e-3 annealed linearly to 0; actor
and critic 64-64 tanh. No gradient-norm clipping: the baseline's squared error on unnormalised
returns (up to ~100) has gradients far larger than the policy's, and one global-norm clip shrank
the policy's with them (final return 335 ± 18 over 4 seeds with clip 0.5, 497 without:
`dlcore run cartpole/reinforce --seeds 4 --set optim.clip_norm=0.5`).
"""
from dlcore import optim, rl
from dlcore.algorithms import reinforce
from dlcore.loop import defaults as loop_defaults
from dlcore.models import defaults as model_defaults


def get_config(quick: bool = False) -> dict:
    config = {
        "algorithm": "reinforce",
        "seed": 0,
        "data": {"name": "CartPole-v1", "num_envs": 8, "eval_episodes": 32, "eval_seed": 1000},
        "model": {**model_defaults("mlp"), "hidden": (64, 64), "activation": "tanh"},
        "rl": rl.defaults(gamma=0.99),
        "reinforce": reinforce.defaults(),
        "optim": optim.defaults(name="adam", learning_rate=1e-3, schedule="linear"),
        "loop": loop_defaults(steps=400, log_every=20, eval_every=200, checkpoint_every=200,
                              best_metric="", steps_per_call=20),
    }
    if quick:
        config["data"].update(eval_episodes=4)
        config["loop"].update(steps=4, log_every=2, eval_every=4, checkpoint_every=2,
                              steps_per_call=2)
    return config
