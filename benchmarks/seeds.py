"""Several seeds: one `vmap`-ped program against one run after another, in one process.

    python benchmarks/seeds.py [--seeds 8] [--experiments mnist1d/mlp,mnist1d/logreg] [--steps 6000]

Prints, per experiment, the whole-run seconds of both ways (compile, evaluation and checkpoints
included, as `dlcore run --seeds N` does them) and their ratio. The result decides each
experiment's `loop.seeds_in_one_program` default.
"""
from __future__ import annotations

import argparse
import tempfile
import time

import jax

from dlcore import experiment


def timed(cfg: dict, seeds: int) -> tuple[float, dict]:
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        s = experiment.run(cfg, d, seeds=seeds, progress=False)
        return time.perf_counter() - t0, s


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, default=8)
    p.add_argument("--steps", type=int, default=6000)
    p.add_argument("--experiments", default="mnist1d/mlp,mnist1d/logreg")
    args = p.parse_args()
    print(f"{args.seeds} seeds x {args.steps} steps, {jax.default_backend()} backend, "
          f"jax {jax.__version__}")
    print(f"{'experiment':20s} {'vmap s':>8s} {'sequential s':>12s} {'seq/vmap':>8s} "
          f"{'test acc (vmap)':>16s}")
    for name in args.experiments.split(","):
        base = experiment.load(name, overrides=[f"loop.steps={args.steps}", "loop.plots=false"])
        tv, sv = timed(experiment.apply_overrides(base, ["loop.seeds_in_one_program=true"]),
                       args.seeds)
        ts, _ = timed(experiment.apply_overrides(base, ["loop.seeds_in_one_program=false"]),
                      args.seeds)
        m, sd = sv["metrics"]["test_accuracy"], sv["metrics_std"]["test_accuracy"]
        print(f"{name:20s} {tv:8.1f} {ts:12.1f} {ts / tv:8.2f} {m:10.3f} ± {sd:.3f}")


if __name__ == "__main__":
    main()
