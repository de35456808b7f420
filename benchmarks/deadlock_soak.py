"""Soak test for the CPU deadlock that dlcore.rl.guard() prevents (README: 'A deadlock guard').

    python benchmarks/deadlock_soak.py {none,option,flag} [--seconds 360] [--hang-after 60]

Compiles benchmarks/ppo_minimal.py's train for 4 seeds x 32 environments x 100k steps as
`jax.jit(jax.vmap(train))` and runs it on fresh keys again and again for --seconds. A run that has
not finished after --hang-after seconds (one takes a few seconds) is declared a hang: the script
prints the run number and exits with status 3, since the stuck XLA threads cannot be stopped.
  none    no guard
  option  the per-program option jax.jit(..., compiler_options={...: False})
  flag    XLA_FLAGS=--xla_cpu_enable_concurrency_optimized_scheduler=false for the process
          (what dlcore.rl.guard() sets), before JAX starts
Measured here (jax 0.10.2, 2-core CPU, several soaks in parallel): none hung in 3 of 3
processes, option in 3 of 3, flag ran 123 times in 6 minutes without a hang.
"""
import argparse
import os
import sys
import threading
import time
from pathlib import Path

FLAG = "xla_cpu_enable_concurrency_optimized_scheduler"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("mode", choices=("none", "option", "flag"))
    ap.add_argument("--seconds", type=float, default=360)
    ap.add_argument("--hang-after", type=float, default=60)
    args = ap.parse_args()
    if args.mode == "flag":  # XLA reads its flags when the backend starts: before importing jax
        os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} --{FLAG}=false".strip()
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import jax
    import ppo_minimal

    cfg = dict(ppo_minimal.CONFIG, num_envs=32, total_timesteps=100_000)
    options = {FLAG: False} if args.mode == "option" else None
    train = jax.jit(jax.vmap(ppo_minimal.make_train(cfg)), compiler_options=options)
    keys = lambda i: jax.random.split(jax.random.PRNGKey(i), 4)
    compiled = train.lower(keys(0)).compile()
    runs, started = 0, time.monotonic()

    def watch():
        while True:
            time.sleep(1)
            if time.monotonic() - started > args.hang_after:
                print(f"{args.mode}: HANG in run {runs + 1}", flush=True)
                os._exit(3)
    threading.Thread(target=watch, daemon=True).start()
    t0 = time.monotonic()
    while time.monotonic() - t0 < args.seconds:
        started = time.monotonic()
        jax.block_until_ready(compiled(keys(runs)))
        runs += 1
    print(f"{args.mode}: {runs} runs in {args.seconds:.0f} s, no hang", flush=True)


if __name__ == "__main__":
    main()
