"""PPO on CartPole-v1 (Schulman et al. 2017) with CleanRL's settings, trained end to end inside jit.

Command:  dlcore run cartpole/ppo --seeds 4     (quick smoke run: --quick)
Runtime:  about 25-45 s for 4 seeds in one program on a 2-core CPU (976 iterations)
Expected: final return (mean of each seed's last 100 training episodes) near 500, the maximum;
CleanRL's documentation reports 490.04 ± 6.12 (ppo.py, 500k steps, 3 seeds). Measured here (2026-12-02):
500.00 ± 0.00 over 4 seeds (`--seeds 4`), every seed at the maximum; greedy policy 500.0 on 32 fixed evaluation episodes.
Settings (CleanRL ppo.py): 4 environments x 128 steps per iteration, 976 iterations (499,712
environment steps), 4 epochs of 4 minibatches, Adam 2.5e-4 annealed linearly to 0, gradient norm
clipped to 0.5, γ 0.99, GAE λ 0.95, clip 0.2 (policy and value), entropy 0.01, value 0.5;
actor and critic 64-64 tanh, orthogonal initialisation.
"""


def get_config(quick: bool = False) -> dict:
    config = {
        "algorithm": "ppo",  # its defaults are CleanRL's (dlcore.algorithms.ppo.defaults)
        "data": {"name": "env", "env": "CartPole-v1", "num_envs": 4, "eval_episodes": 32,
                 "eval_seed": 1000},
        "model": {"hidden": (64, 64), "activation": "tanh"},
        "rl": {"gamma": 0.99, "num_steps": 128},
        "optim": {"name": "adam", "learning_rate": 2.5e-4, "eps": 1e-5, "schedule": "linear",
                  "clip_norm": 0.5},
        "loop": {"steps": 976, "log_every": 61, "eval_every": 488, "checkpoint_every": 488,
                 "steps_per_call": 61},
        "published": {"test_final_return": {"cleanrl_ppo_cartpole_500k_3seeds": "490.04 ± 6.12"}},
    }
    if quick:
        config["data"].update(eval_episodes=4)
        config["loop"].update(steps=4, log_every=2, eval_every=4, checkpoint_every=2,
                              steps_per_call=2)
    return config
