"""REINFORCE with a learned value baseline on CartPole-v1 (Williams 1992).

Command:  dlcore run cartpole/reinforce --seeds 4     (quick smoke run: --quick)
Runtime:  about 50 s for 4 seeds in one program on a 2-core CPU (400 updates, 3,200 episodes per seed)
Expected: final return (mean of each seed's last 100 training episodes) near 500; measured here (2026-12-02):
494.94 ± 3.68 over 4 seeds;
greedy policy 497.7. No figure is published for this exact setting in the issue's sources.
Settings: each update plays one whole episode in each of 8 environments (Monte-Carlo returns,
γ 0.99), advantages G - V(s) normalised, one Adam step of 1e-3 annealed linearly to 0; actor
and critic 64-64 tanh. No gradient-norm clipping: the baseline's squared error on unnormalised
returns (up to ~100) has gradients far larger than the policy's, and one global-norm clip shrank
the policy's with them (final return 335 ± 18 over 4 seeds with clip 0.5, 497 without:
`dlcore run cartpole/reinforce --seeds 4 --set optim.clip_norm=0.5`).
"""


def get_config(quick: bool = False) -> dict:
    config = {
        "algorithm": "reinforce",
        "data": {"name": "env", "env": "CartPole-v1", "num_envs": 8, "eval_episodes": 32,
                 "eval_seed": 1000},
        "model": {"hidden": (64, 64), "activation": "tanh"},
        "rl": {"gamma": 0.99},
        "optim": {"name": "adam", "learning_rate": 1e-3, "schedule": "linear"},
        "loop": {"steps": 400, "log_every": 20, "eval_every": 200, "checkpoint_every": 200,
                 "steps_per_call": 20},
    }
    if quick:
        config["data"].update(eval_episodes=4)
        config["loop"].update(steps=4, log_every=2, eval_every=4, checkpoint_every=2,
                              steps_per_call=2)
    return config
