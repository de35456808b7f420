"""dlcore's PPO against a minimal single-file end-to-end-jitted PPO (benchmarks/ppo_minimal.py) on
CartPole-v1, CleanRL's settings for both, measured in one run.

    python benchmarks/ppo_cartpole.py [--seeds 0 1 8] [--repeats 3] [--timesteps 500000]

Both run in this one process, under dlcore's CPU deadlock guard (dlcore.rl.guard: an XLA flag
for the whole process; `--no-guard` leaves it off, and may hang). For each seed count, both are
compiled once as `jax.jit(jax.vmap(train))` (seed count 0: `jax.jit(train)`, one seed) and run
`--repeats` times on fresh keys, alternating. Printed per path: compile seconds, environment
steps per second (all seeds together, median over repeats), and the wall time until the mean over seeds of the
return of the last 100 training episodes first reaches 475, counted from the start of the
compile (the program's cost per iteration is fixed, so the time at iteration u is
compile + run * u / iterations). dlcore tracks that return on the device (dlcore.rl.Episodes);
for the baseline it is rebuilt from each iteration's finished episodes (sum and count), whole
iterations at a time. Then the ratio baseline / dlcore (> 1: dlcore faster). Same
hyperparameters; one difference in the algorithms: dlcore bootstraps truncated episodes from
their final observation, the baseline (like CleanRL) treats a truncation as an end.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import jax
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ppo_minimal  # noqa: E402

from dlcore import experiment, rl  # noqa: E402

TARGET = 475.0


def dlcore_train(timesteps: int):
    config = experiment.load("cartpole/ppo")
    iters = timesteps // (config["data"]["num_envs"] * config["rl"]["num_steps"])
    config = experiment.apply_overrides(config, [f"loop.steps={iters}", "loop.log_every=1",
                                                 "loop.steps_per_call=1", "loop.eval_every=1",
                                                 "loop.checkpoint_every=1"])
    algorithm, _ = experiment.build(config)
    # curve["return"]: the last-100 mean, per iteration
    return rl.make_train(algorithm, iters, 1), iters


def minimal_train(timesteps: int):
    cfg = dict(ppo_minimal.CONFIG, total_timesteps=timesteps)
    return ppo_minimal.make_train(cfg), timesteps // (cfg["num_envs"] * cfg["num_steps"])


def last100(mean_return: np.ndarray, episodes: np.ndarray) -> np.ndarray:
    """[iters] mean return over (about) the last 100 episodes, from per-iteration means/counts."""
    sums = np.nan_to_num(mean_return) * episodes
    out = np.zeros(len(sums))
    for u in range(len(sums)):
        s = n = 0.0
        for v in range(u, -1, -1):  # whole iterations back until 100 episodes are covered
            s, n = s + sums[v], n + episodes[v]
            if n >= 100:
                break
        out[u] = s / n if n else 0.0
    return out


def batched(fn, seeds: int):
    """seeds > 0: vmapped over that many keys; 0: one seed, no vmap (its outputs get a seed axis)."""
    if seeds:
        return jax.vmap(fn)
    return lambda key: jax.tree.map(lambda a: a[None], fn(key[0]))


def seed_keys(r: int, seeds: int):
    return jax.random.split(jax.random.key(1000 * r), max(seeds, 1))


def compile_both(seeds: int, timesteps: int):
    """{name: (compiled train, iterations, compile seconds)} for both contenders."""
    out = {}
    for name, make in (("minimal", minimal_train), ("dlcore", dlcore_train)):
        fn, iters = make(timesteps)
        t0 = time.perf_counter()
        compiled = jax.jit(batched(fn, seeds)).lower(seed_keys(0, seeds)).compile()
        out[name] = (compiled, iters, time.perf_counter() - t0)
    return out


def curve(out, is_dlcore: bool) -> np.ndarray:
    """Mean over seeds of the last-100-episode return, per iteration, from train's whole output
    (both return the trained state too: returning only the curve lets XLA drop work, and it
    did so unevenly, in favour of the minimal PPO)."""
    metrics = out[1]
    if is_dlcore:
        return np.asarray(metrics["return"]).mean(0)
    mean_return, episodes = np.asarray(metrics["mean_return"]), np.asarray(metrics["episodes"])
    return np.mean([last100(m, e) for m, e in zip(mean_return, episodes)], 0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 8],
                    help="seed counts to time (0: one seed without vmap)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--timesteps", type=int, default=500_000)
    ap.add_argument("--no-guard", action="store_true",
                    help="run without dlcore.rl.guard() (may deadlock on CPU)")
    args = ap.parse_args()
    guarded = False if args.no_guard else rl.guard()  # before JAX computes anything
    print(f"jax {jax.__version__} on {jax.default_backend()}; {args.timesteps:,} steps per seed; "
          f"median of {args.repeats}; deadlock guard {'on' if guarded else 'off'}")
    for seeds in args.seeds:
        programs = compile_both(seeds, args.timesteps)
        runs = {name: [] for name in programs}
        for r in range(args.repeats):  # alternate, so drift in the machine's speed hits both
            keys = seed_keys(r, seeds)
            for name, (compiled, _, _) in programs.items():
                t0 = time.perf_counter()
                out = jax.block_until_ready(compiled(keys))
                runs[name].append((time.perf_counter() - t0, jax.device_get(out)))
        rows = {}
        for name, (_, iters, compile_s) in programs.items():
            run_s = statistics.median(t for t, _ in runs[name])
            steps = max(seeds, 1) * iters * 128 * 4
            reach = []
            for t, out in runs[name]:
                c = curve(out, name == "dlcore")
                hit = np.nonzero(c >= TARGET)[0]
                reach.append(compile_s + t * (hit[0] + 1) / iters if len(hit) else float("nan"))
            finals = [float(curve(out, name == "dlcore")[-1]) for _, out in runs[name]]
            rows[name] = dict(compile=compile_s, rate=steps / run_s, final=float(np.mean(finals)),
                              reach=float(np.nanmedian(reach)) if not np.all(np.isnan(reach))
                              else float("nan"), reached=int(np.sum(~np.isnan(reach))))
            r = rows[name]
            print(f"  {seeds} seed(s) {name:8s} compile {r['compile']:5.1f} s  "
                  f"{r['rate']:9,.0f} env steps/s  final return {r['final']:6.1f}  "
                  f"time to {TARGET:.0f}: {r['reach']:5.1f} s ({r['reached']}/{args.repeats} runs)",
                  flush=True)
        m, d = rows["minimal"], rows["dlcore"]
        print(f"  {seeds} seed(s) ratio minimal/dlcore: steps/s {d['rate'] / m['rate']:.2f}, "
              f"time to {TARGET:.0f} {m['reach'] / d['reach']:.2f}  (> 1: dlcore faster)",
              flush=True)


if __name__ == "__main__":
    main()
