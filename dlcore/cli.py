"""The `dlcore` command: list | run | sweep | report.

    dlcore list
    dlcore run NAME_OR_PATH [--workdir DIR] [--set key=value ...] [--quick] [--seeds N] [--json]
    dlcore sweep NAME_OR_PATH --grid inner_lr=0.003,0.01 [--grid inner_steps=1,2] [--seeds N] ...
    dlcore report DIR

Exit status: 0 on success, 2 for bad input (unknown experiment or key, bad value, unusable data or
run directory), 1 when training fails (NaN/Inf).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dlcore", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="one experiment a line: name, then what it is")
    r = sub.add_parser("run", help="train an experiment (resumes what its run directory holds)")
    r.add_argument("experiment", help="a name from `dlcore list`, or a path to a config .py file")
    r.add_argument("--workdir", help="run directory (default: runs/<experiment>[-quick])")
    r.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set optim.learning_rate=3e-3")
    r.add_argument("--quick", action="store_true", help="the experiment's short smoke-test variant")
    r.add_argument("--seeds", type=int, default=1, help="train N seeds (seed, seed+1, ...)")
    r.add_argument("--json", action="store_true", help="print summary.json as the last line")
    r.add_argument("--fresh", action="store_true",
                   help="move an existing run directory aside (DIR.old-<time>) and start over")
    r.add_argument("--cpu-devices", type=int, default=0,
                   help="split the CPU into N XLA devices (to try loop.devices > 1 without GPUs)")
    r.add_argument("--no-progress", action="store_true", help="no progress bar")
    w = sub.add_parser("sweep", help="every grid point x seed of an experiment in one program "
                       "(hyperparameters the algorithm carries in its state, e.g. MAML's inner_lr)")
    w.add_argument("experiment")
    w.add_argument("--grid", action="append", default=[], metavar="NAME=V1,V2,...",
                   help="a hyperparameter and its values, e.g. --grid inner_lr=0.003,0.01,0.03")
    for flag in ("--workdir", "--set", "--quick", "--seeds", "--fresh", "--no-progress"):
        w._add_action(next(a for a in r._actions if flag in a.option_strings))
    p = sub.add_parser("report", help="draw a run's figures: learning curves, and filters, "
                       "activations and gradients through time from its newest checkpoint")
    p.add_argument("workdir")
    args = parser.parse_args(argv)

    from dlcore.config import ConfigError
    try:
        if args.command == "list":
            from dlcore.config import list_experiments
            for name, doc in list_experiments():
                print(f"{name:24s} {doc}")
            return 0
        if args.command == "report":
            return _report(Path(args.workdir))
        if args.command == "sweep":
            return _sweep(args)
        return _run(args)
    except ConfigError as e:
        print(f"dlcore: error: {e}", file=sys.stderr)
        return 2
    except Exception as e:
        from dlcore.loop import TrainingError
        if isinstance(e, TrainingError):
            print(f"dlcore: error: {e}", file=sys.stderr)
            return 1
        raise


def _prepare(args, kind: str = "") -> tuple[dict, Path]:
    """The config with its overrides, and the run directory (moved aside first with --fresh)."""
    from dlcore import config as config_lib
    config = config_lib.load(args.experiment, quick=args.quick)
    config = config_lib.apply_overrides(config, args.overrides)
    if getattr(args, "cpu_devices", 0):
        import jax
        jax.config.update("jax_num_cpu_devices", args.cpu_devices)
    name = config["experiment"] + kind
    workdir = Path(args.workdir or Path("runs") / (name + ("-quick" if args.quick else "")))
    if args.fresh and workdir.exists():
        aside = workdir.with_name(f"{workdir.name}.old-{time.strftime('%Y%m%d-%H%M%S')}")
        shutil.move(str(workdir), str(aside))
        print(f"moved the previous run to {aside}", file=sys.stderr)
    return config, workdir


def _sweep(args) -> int:
    import ast
    from dlcore import sweep
    from dlcore.config import ConfigError
    grid = {}
    for item in args.grid:
        name, sep, values = item.partition("=")
        try:  # literals only (numbers), as --set parses them: never code
            grid[name.strip()] = [ast.literal_eval(v.strip()) for v in values.split(",")] if sep else None
        except (ValueError, SyntaxError):
            raise ConfigError(f"--grid {item}: values must be numbers separated by commas") from None
    config, workdir = _prepare(args, "-sweep")
    summary = sweep.run_sweep(config, grid, args.seeds, workdir, progress=not args.no_progress)
    for point in summary["points"]:
        m = point["metrics"]
        shown = next((k for k in ("test_accuracy", "test_mse", "test_loss") if k in m), None)
        if shown:
            print(f"{point['hyper']}: {shown} = {m[shown]:.4f}")
    print(f"{summary['members']} members in one program, {summary['seconds']:.1f} s; "
          f"run directory {workdir}")
    return 0


def _run(args) -> int:
    config, workdir = _prepare(args)
    from dlcore import loop
    summary = loop.run(config, workdir, seeds=args.seeds, progress=not args.no_progress)
    _print_result(summary, workdir)
    if args.json:
        print(json.dumps(summary, default=str))
    return 0


def _print_result(summary: dict, workdir: Path) -> None:
    m, s = summary["metrics"], summary["metrics_std"]
    shown = [k for k in ("test_accuracy", "test_mse", "test_loss") if k in m][:1] or list(m)[:1]
    shown = [k for k in ("final_return", "greedy_return") if k in m] or shown
    for k in shown:
        spread = f" ± {s[k]:.4f} (std over {summary['seeds']} seeds)" if summary["seeds"] > 1 else ""
        pub = summary.get("published") or {}
        ref = "; ".join(f"{src}: {v}" for src, v in pub.items())
        print(f"{summary['experiment']}: {k} = {m[k]:.4f}{spread}" + (f"  [{ref}]" if ref else ""))
    rate = summary.get("steps_per_second")
    print(f"{summary['steps']} steps in {summary['seconds']:.1f} s"
          + (f" ({rate:,.0f} steps/s after compiling)" if rate else "") + f"; run directory {workdir}")


def _report(workdir: Path) -> int:
    from dlcore.config import ConfigError
    from dlcore import plots
    seed_dirs = sorted(workdir.glob("seed_*/metrics.jsonl"))
    if not (workdir / "metrics.jsonl").exists() and seed_dirs:  # seeds run one after another
        for path in seed_dirs:
            _report(path.parent)
        return 0
    if not (workdir / "metrics.jsonl").exists():
        raise ConfigError(f"{workdir} is not a run directory (no metrics.jsonl)")
    for path in plots.learning_curves(workdir):
        print(path)
    if (workdir / "checkpoints").exists() and (workdir / "config.json").exists():
        for path in plots.model_pictures(workdir):
            print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
