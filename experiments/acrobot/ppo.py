"""PPO on Acrobot-v1 (Schulman et al. 2017) with CleanRL's settings (its ppo.py defaults, as for CartPole), trained end to end inside jit.

Command:  dlcore run acrobot/ppo --seeds 4     (quick smoke run: --quick)
Runtime:  about 30-70 s for 4 seeds in one program on a 2-core CPU
Expected: final return (mean of each seed's last 100 training episodes; -1 per step until the tip
swings above the line, at most 500 steps) near -86; CleanRL's documentation reports -86.36 ± 1.32
(ppo.py, 500k steps, 3 seeds). Measured here (2026-12-02):
-83.00 ± 1.63 over 4 seeds; greedy policy -85.3. About 30 s for 4 seeds.
Settings: cartpole/ppo's (CleanRL's ppo.py defaults, which its Acrobot benchmark used too), only
the environment differs.
"""

from dlcore import config as config_lib


def get_config(quick: bool = False) -> dict:
    config = config_lib.load("cartpole/ppo", quick=quick)
    del config["experiment"]  # the loader names this file's experiment
    config["data"]["env"] = "Acrobot-v1"
    config["published"] = {"test_final_return": {"cleanrl_ppo_acrobot_500k_3seeds": "-86.36 ± 1.32"}}
    return config
