"""A2C on CartPole-v1 (Mnih et al. 2016, synchronous), Stable-Baselines3's settings.

Command:  dlcore run cartpole/a2c --seeds 4     (quick smoke run: --quick)
Runtime:  about 75 s for 4 seeds in one program on a 2-core CPU (12,500 updates)
Expected: final return (mean of each seed's last 100 training episodes) near 500. No figure is
published for this exact setting in the issue's sources; measured here (2026-12-02): 500.00 ± 0.00 over 4 seeds; greedy policy 500.0.
Settings (SB3 A2C defaults, rl-baselines3-zoo's CartPole-v1 entry): 8 environments x 5 steps per
update, 12,500 updates (500,000 environment steps); RMSprop 7e-4 (decay 0.99, ε 1e-5); γ 0.99;
λ 1 (n-step returns); value coefficient 0.5; entropy 0; gradient norm clipped to 0.5; actor and
critic 64-64 tanh.
"""


def get_config(quick: bool = False) -> dict:
    config = {
        "algorithm": "a2c",  # its defaults are Stable-Baselines3's (dlcore.algorithms.a2c.defaults)
        "data": {"name": "env", "env": "CartPole-v1", "num_envs": 8, "eval_episodes": 32,
                 "eval_seed": 1000},
        "model": {"hidden": (64, 64), "activation": "tanh"},
        "rl": {"gamma": 0.99, "num_steps": 5},
        "optim": {"name": "rmsprop", "learning_rate": 7e-4, "rms_decay": 0.99, "eps": 1e-5,
                  "clip_norm": 0.5},
        "loop": {"steps": 12500, "log_every": 250, "eval_every": 6250, "checkpoint_every": 6250,
                 "steps_per_call": 250},
    }
    if quick:
        config["data"].update(eval_episodes=4)
        config["loop"].update(steps=4, log_every=2, eval_every=4, checkpoint_every=2,
                              steps_per_call=2)
    return config
