"""PPO on Gymnasium's own CartPole-v1 (Python environments, a host loop; dlcore.gym) beside the
same agent trained end to end in JAX on dlcore's CartPole, with the same config and seeds.

Command:  python experiments/studies/gymnasium_cartpole.py [--seeds 2] [--quick]
Runtime:  about 2 minutes per Gymnasium seed on a 2-core CPU (500k steps at ~4,000 steps/s).
Writes:   runs/studies/gymnasium_cartpole.json: per seed the final return (mean of the last 100
training episodes) and environment steps per second of both paths, and their ratio.
"""
import argparse
import json
import sys
import time
from pathlib import Path

import jax
import numpy as np

from dlcore import cli, experiment, gym, rl


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="40 iterations instead of 976")
    ap.add_argument("--out", default="runs/studies/gymnasium_cartpole.json")
    args = ap.parse_args()
    rl.guard()  # before JAX computes anything (dlcore.rl.guard)
    config = experiment.load("cartpole/ppo",
                             overrides=["loop.steps=40", "loop.log_every=40"] if args.quick else [])
    seeds = list(range(args.seeds))

    host = [gym.train(config, "CartPole-v1", seed=s, log_every=100) for s in seeds]
    algorithm, _ = experiment.build(config)
    train = jax.jit(jax.vmap(rl.make_train(algorithm, config["loop"]["steps"],
                                           config["loop"]["log_every"])))
    keys = jax.numpy.stack([jax.random.key(s) for s in seeds])
    t0 = time.perf_counter()
    jax.block_until_ready(train.lower(keys).compile())
    t1 = time.perf_counter()
    states, curve = train(keys)
    jax.block_until_ready(states)
    t2 = time.perf_counter()
    steps = config["loop"]["steps"] * config["data"]["num_envs"] * config["rl"]["num_steps"]
    jax_rate = steps * len(seeds) / (t2 - t1)
    host_rate = float(np.mean([h["env_steps_per_second"] for h in host]))
    result = {
        "env_steps_per_seed": steps,
        "gymnasium": {"final_return": [h["final_return"] for h in host],
                      "env_steps_per_second": host_rate,
                      "seconds": [h["seconds"] for h in host]},
        "jax": {"final_return": np.asarray(curve["return"][:, -1]).tolist(),
                "env_steps_per_second": jax_rate, "compile_seconds": t1 - t0,
                "seconds": t2 - t1},
        "speedup_jax_over_gymnasium": jax_rate / host_rate,
    }
    for name in ("gymnasium", "jax"):
        r = result[name]["final_return"]
        print(f"{name:10s} final return {np.mean(r):7.2f} ± {np.std(r):.2f} over {len(r)} seeds; "
              f"{result[name]['env_steps_per_second']:,.0f} env steps/s")
    print(f"end-to-end JAX / Gymnasium host loop: {result['speedup_jax_over_gymnasium']:.1f}x")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(cli.guarded(main))
