"""DQN on CartPole-v1 (Mnih et al. 2015) with CleanRL's settings, trained end to end inside jit.

Command:  dlcore run cartpole/dqn --seeds 4     (quick smoke run: --quick; double DQN:
          --set dqn.double=true)
Runtime:  about 2.5 minutes for 4 seeds in one program on a 2-core CPU (50,000 updates)
Expected: final return (mean of each seed's last 100 training episodes, acting ε-greedily with
ε = 0.05) near 500; CleanRL's documentation reports 488.69 ± 16.11 (dqn.py, 500k steps, 3 seeds).
Measured here (2026-12-02): 498.84 ± 2.01 over 4 seeds; greedy policy 500.0.
Settings (CleanRL dqn.py): one environment; 500,000 steps (50,000 updates, one every 10 steps);
replay buffer 10,000; minibatch 128; Adam 2.5e-4; γ 0.99; target network copied every 500 steps;
ε from 1 to 0.05 over the first half; learning starts after 10,000 steps; Q-network 120-84 ReLU.
"""


def get_config(quick: bool = False) -> dict:
    config = {
        "algorithm": "dqn",  # its defaults are CleanRL's (dlcore.algorithms.dqn.defaults)
        "data": {"name": "env", "env": "CartPole-v1", "num_envs": 1, "eval_episodes": 32,
                 "eval_seed": 1000},
        "model": {"hidden": (120, 84), "activation": "relu"},
        "rl": {"gamma": 0.99},
        "optim": {"name": "adam", "learning_rate": 2.5e-4},
        "loop": {"steps": 50000, "log_every": 1000, "eval_every": 25000,
                 "checkpoint_every": 25000, "steps_per_call": 1000},
        "published": {"test_final_return": {"cleanrl_dqn_cartpole_500k_3seeds": "488.69 ± 16.11"}},
    }
    if quick:
        config["data"].update(eval_episodes=4)
        config["dqn"] = {"learning_starts": 20, "buffer_size": 100, "batch_size": 8}
        config["loop"].update(steps=4, log_every=2, eval_every=4, checkpoint_every=2,
                              steps_per_call=2)
    return config
