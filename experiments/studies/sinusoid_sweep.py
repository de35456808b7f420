"""Sinusoid MAML: inner learning rate x inner steps, every grid point and seed trained in one program.

Command:  python experiments/studies/sinusoid_sweep.py [--quick] [--seeds 3] [--sequential]
                                                       [--out runs/studies/sinusoid_sweep] [--set k=v]
Runtime:  on a 2-core CPU, --quick about 1 minute (12 x 3 members of 200 steps; --sequential adds
          about 4 minutes); the full study trains 36 members of sinusoid/maml's 70,000 meta-updates
          in one program, every member paying for 3 inner steps (the longest in the grid): about
          2 hours (9 steps/s measured at 36 members), no faster than one after another on this CPU.
Writes:   <out>/sinusoid_sweep.md: the test MSE after 1 and 10 test-time steps per grid point (mean
          ± std over seeds; test-time steps use the member's own inner learning rate) and the wall
          time of the one program; <out>/sinusoid_sweep.json the numbers; <out>/sweep the sweep's
          run directory (dlcore.sweep: checkpointed; run again with the same settings, the study
          resumes there, and the wall time is then only what was left).

meta.inner_lr in {0.003, 0.01, 0.03, 0.1} x meta.inner_steps in {1, 2, 3} (dlcore.sweep.run_sweep). With
--sequential, each member also trains alone, one after another (the same code, one member per
program): the table adds that wall time and the largest difference between the two results.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from dlcore import cli, experiment, study, sweep
from dlcore.config import check

GRID = {"meta.inner_lr": [0.003, 0.01, 0.03, 0.1], "meta.inner_steps": [1, 2, 3]}
STEPS_AFTER = (1, 10)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="the experiment's smoke-test length")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--sequential", action="store_true",
                   help="also train every member alone, one after another, and compare")
    p.add_argument("--out", default="runs/studies/sinusoid_sweep")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="a config override for every member, as in `dlcore run`")
    args = p.parse_args(argv)
    out = Path(args.out)
    config = experiment.load("sinusoid/maml", quick=args.quick, overrides=args.set)
    config["loop"]["plots"] = False
    check(config["meta"]["test_steps"] >= max(STEPS_AFTER), "meta.test_steps",
          f"the table needs at least {max(STEPS_AFTER)} test-time steps")

    t0 = time.perf_counter()
    summary = sweep.run_sweep(config, GRID, args.seeds, out / "sweep")
    wall = time.perf_counter() - t0
    timing = {"members": summary["members"], "one_program_seconds": wall,
              "one_program_steps_per_second": summary["steps_per_second"]}
    if args.sequential:
        timing.update(sequential(config, summary, args.seeds, out / "sequential"))

    rows = []
    for point in summary["points"]:
        m, s = point["metrics"]["test_mse_after_steps"], point["metrics_std"]["test_mse_after_steps"]
        rows.append([point["hyper"]["meta.inner_lr"], point["hyper"]["meta.inner_steps"],
                     *(f"{m[k]:.3f} ± {s[k]:.3f}" for k in STEPS_AFTER)])
    table = study.markdown_table(
        ["inner lr", "inner steps", *(f"test MSE after {k} step{'s' * (k > 1)}" for k in STEPS_AFTER)],
        rows)
    steps = config["loop"]["steps"]
    text = (f"sinusoid/maml{' (quick)' if args.quick else ''}, {steps} meta-updates, "
            f"{args.seeds} seed{'s' * (args.seeds > 1)} per point (mean ± std over seeds)\n\n{table}\n\n"
            f"{timing['members']} members in one program: {wall:.1f} s wall")
    if args.sequential:
        rel = np.asarray(timing["relative_differences"])
        text += (f"; one after another: {timing['sequential_seconds']:.1f} s "
                 f"({timing['sequential_seconds'] / wall:.2f}x the one program).\n"
                 f"Members whose test MSE after 0..10 steps equals their lone run's to 1e-4 "
                 f"(relative): {int((rel <= 1e-4).sum())} of {len(rel)}; largest relative "
                 f"difference {rel.max():.1e} (the one program rounds differently from a lone "
                 f"run; training amplifies that after about 100 steps, as it does for `--seeds`)")
    study.write(out, "sinusoid_sweep", text, {"quick": args.quick, "grid": GRID, "seeds": args.seeds,
                                              "steps": steps, "timing": timing,
                                              "points": summary["points"]})
    print(text)
    return 0


def sequential(config: dict, summary: dict, seeds: int, out: Path) -> dict:
    """Every member of the sweep trained alone, one after another: the wall time and, per member,
    the largest relative difference from its one-program result (test MSE after 0..10 steps)."""
    t0 = time.perf_counter()
    diffs = []
    for p, point in enumerate(summary["points"]):
        for s in range(seeds):
            cfg = {**config, "seed": config["seed"] + s}
            grid = {name: [value] for name, value in point["hyper"].items()}
            alone = sweep.run_sweep(cfg, grid, 1, out / f"point{p}_seed{s}", progress=False)
            a = np.asarray(alone["points"][0]["per_seed"]["test_mse_after_steps"][0])
            b = np.asarray(point["per_seed"]["test_mse_after_steps"][s])
            diffs.append(float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-12))))
    return {"sequential_seconds": time.perf_counter() - t0, "relative_differences": diffs}


if __name__ == "__main__":
    sys.exit(cli.guarded(main))
