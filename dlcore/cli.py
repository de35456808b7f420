"""The `dlcore` command: list | run | sweep | search | report | explain | attack.

    dlcore list
    dlcore run NAME_OR_PATH [--workdir DIR] [--set key=value ...] [--quick] [--seeds N] [--json]
               [--init-from RUN [--init-seed S]]
               [--coordinator HOST:PORT --num-processes N --process-id I]   (dlcore.distributed)
    dlcore sweep NAME_OR_PATH --grid optim.learning_rate=1e-3,1e-2 [--grid KEY=V1,V2] [--seeds N]
    dlcore search NAME_OR_PATH --space optim.learning_rate=log:1e-4:1e-1 [--space KEY=KIND:ARGS]
                  [--members 16] [--search-seed 0] [--rungs 1 --eta 3] [--metric validation_accuracy]
    dlcore report DIR
    dlcore explain DIR [--method ig|saliency|gradxinput|smoothgrad|occlusion|all] [--count 8]
    dlcore attack DIR --eps 0.1 [--eps ...] [--norm linf|l2] [--steps 40] [--restarts 1]

Exit status: 0 on success, 2 for bad input (unknown experiment or key, bad value, unusable data,
a run directory that holds another run or is in use), 1 when training fails (NaN/Inf, a hung
program, a full disk), 130/143 when SIGINT/SIGTERM ended it (the state saved: the same command
resumes). Errors and warnings are one line on stderr.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import signal
import sys
import threading
import warnings
from pathlib import Path, PurePosixPath
from typing import Callable, Sequence


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dlcore", description=__doc__.split("\n")[0])
    parser.add_argument("--version", action="version", version=f"dlcore {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="one experiment a line: name, then what it is")
    r = sub.add_parser("run", help="train an experiment (resumes what its run directory holds)")
    r.add_argument("experiment", help="a name from `dlcore list`, or a path to a config .py file")
    r.add_argument("--workdir", help="run directory (default: runs/<experiment>, with a suffix "
                   "naming --quick, --seeds and --set, so different commands never share one)")
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
    r.add_argument("--coordinator", metavar="HOST:PORT", help="one process of a run of several "
                   "(dlcore.distributed): process 0's address and a free port, the same on every "
                   "process; with --num-processes and --process-id. Without them JAX detects a "
                   "cluster where DLCORE_DISTRIBUTED=auto or srun/mpirun launched several tasks")
    r.add_argument("--num-processes", type=int, metavar="N", help="how many processes the run has")
    r.add_argument("--process-id", type=int, metavar="I", help="this process's index, 0 .. N-1")
    r.add_argument("--heartbeat-seconds", type=int, default=60, metavar="S", help="a process "
                   "silent this long is taken as dead and every other one ends (default 60)")
    r.add_argument("--init-from", metavar="RUN", help="start from the trained parameters of the "
                   "run in directory RUN (transfer learning; dlcore.transfer: transfer.reinit "
                   "keeps a new head fresh, optim.freeze freezes layers)")
    r.add_argument("--init-seed", type=int, metavar="S", help="the seed of RUN to start from (default 0)")
    r.add_argument("--no-compile-cache", action="store_true",
                   help="compile everything anew (default: JAX's persistent cache in "
                   "$DLCORE_COMPILE_CACHE or ~/.cache/dlcore/jax; dlcore.compile_cache)")
    r.add_argument("--tracker", dest="trackers", action="append", default=[], metavar="NAME",
                   help="also send the config, metrics, summary and pictures to an experiment "
                   "tracker: wandb or mlflow (repeatable, or a comma list; configured by their "
                   "own variables: WANDB_MODE, WANDB_PROJECT, MLFLOW_TRACKING_URI, ...); a "
                   "resumed run continues the same tracked run (RUN/tracker.json)")
    w = sub.add_parser("sweep", help="every grid point x seed of an experiment in one program "
                       "(numbers the state carries: optim.*, and e.g. MAML's meta.inner_lr)")
    w.add_argument("experiment")
    w.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2,...",
                   help="a config key and its values, e.g. --grid optim.learning_rate=1e-3,1e-2")
    for flag in ("--workdir", "--set", "--quick", "--seeds", "--fresh", "--no-progress",
                 "--no-compile-cache", "--tracker"):
        w._add_action(next(a for a in r._actions if flag in a.option_strings))
    s = sub.add_parser("search", help="random search and successive halving: members drawn from "
                       "a space, all in one program, chosen on the validation split (dlcore.search)")
    s.add_argument("experiment")
    s.add_argument("--space", action="append", default=[], metavar="KEY=KIND:ARGS",
                   help="a key and its distribution: log:LOW:HIGH, uniform:LOW:HIGH, "
                   "int:LOW:HIGH or choice:V1,V2,... (repeatable)")
    s.add_argument("--members", type=int, default=16, help="members drawn (seeds seed, seed+1, ...)")
    s.add_argument("--search-seed", type=int, default=0, help="the seed of the draws (recorded)")
    s.add_argument("--rungs", type=int, default=1,
                   help="successive halving's rungs (1: random search, every member to the end)")
    s.add_argument("--eta", type=int, default=3, help="the best 1/eta go on at each rung")
    s.add_argument("--metric", help="the validation metric that ranks members "
                   "(default: validation_<the experiment's headline metric>)")
    s.add_argument("--mode", choices=["max", "min"],
                   help="larger or smaller is better (default: max for accuracies and returns)")
    for flag in ("--workdir", "--set", "--quick", "--fresh", "--no-progress", "--no-compile-cache",
                 "--tracker"):
        s._add_action(next(a for a in r._actions if flag in a.option_strings))
    p = sub.add_parser("report", help="draw a run's figures: learning curves, and what the trained "
                       "model does (filters, activations, gradients, episodes, fits)")
    p.add_argument("workdir")
    p._add_action(next(a for a in r._actions if "--no-compile-cache" in a.option_strings))
    e = sub.add_parser("explain", help="attributions of a supervised classifier's predictions "
                       "(saliency, gradient x input, SmoothGrad, Integrated Gradients, occlusion) "
                       "with their checks: RUN/plots/explain_<method>.png and RUN/explain.json")
    e.add_argument("workdir")
    e.add_argument("--method", default="ig", choices=["ig", "saliency", "gradxinput",
                                                      "smoothgrad", "occlusion", "all"])
    e.add_argument("--count", type=int, default=8, help="examples explained (the first N)")
    e.add_argument("--split", default="test")
    e._add_action(next(a for a in r._actions if "--no-compile-cache" in a.option_strings))
    a = sub.add_parser("attack", help="accuracy of a supervised classifier under uniform noise, "
                       "FGSM and PGD per eps: a markdown table and RUN/attack.json")
    a.add_argument("workdir")
    a.add_argument("--eps", type=float, action="append", help="budget (repeatable; default 0.1)")
    a.add_argument("--norm", default="linf", choices=["linf", "l2"], help="PGD's ball")
    a.add_argument("--steps", type=int, default=40)
    a.add_argument("--restarts", type=int, default=1)
    a.add_argument("--count", type=int, default=1000, help="examples attacked (the first N)")
    a.add_argument("--split", default="test")
    a._add_action(next(o for o in r._actions if "--no-compile-cache" in o.option_strings))
    args = parser.parse_args(argv)
    return guarded(lambda: _main(args))


def guarded(work: Callable[[], int]) -> int:
    """work()'s exit status, under the `dlcore` command's rules (the module docstring): Ctrl-C and
    SIGTERM end it with 130/143, warnings and dlcore's errors are one line on stderr with their
    exit status, not a traceback. For a script of one's own that trains through dlcore, as the
    studies in experiments/studies do: `sys.exit(cli.guarded(main))`."""
    previous = {sig: signal.signal(sig, _interrupted) for sig in (signal.SIGINT, signal.SIGTERM)}
    # orbax logs what it meets (a damaged checkpoint, a missing file) through absl, several lines
    # each; dlcore says what it did about it in one line of its own
    logging.getLogger("absl").setLevel(logging.CRITICAL)
    shown = warnings.showwarning
    warnings.showwarning = _one_line
    try:
        return _one_line_errors(work)
    finally:
        warnings.showwarning = shown
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("dlcore")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "(not installed)"


def _interrupted(signum, frame):
    """Before the loop takes over the signals (and on a second one): leave where we are. Nothing
    half-written remains: every file dlcore writes is replaced atomically."""
    from dlcore.watch import Interrupted
    raise Interrupted("interrupted; run the same command to start again (or resume)", signum)


def _background_error(*args):
    """An exception nobody catches (orbax's threads after a failed save: 'Event loop is closed',
    a dozen times over): one line each kind, not a traceback; the error that matters was said."""
    info = args[0] if len(args) == 1 else None
    exc = (info.exc_value if info is not None else args[1])
    line = f"{type(exc).__name__}: {str(exc)[:200]}"
    if line not in _said:
        _said.add(line)
        print(f"dlcore: note: in the background: {line}", file=sys.stderr)


_said: set[str] = set()


def _one_line(message, category, filename, lineno, file=None, line=None):
    print(f"dlcore: warning: {message}", file=sys.stderr)


def _main(args) -> int:
    from dlcore import distributed
    if args.command == "list":
        from dlcore.config import list_experiments
        for name, doc in list_experiments():
            print(f"{name:24s} {doc}")
        return 0
    if not getattr(args, "no_compile_cache", False):
        from dlcore import compile_cache
        compile_cache.enable()
    if args.command == "report":
        return _report(Path(args.workdir))
    if args.command == "explain":
        from dlcore import explain
        return explain.main(args)
    if args.command == "attack":
        from dlcore import attack
        return attack.main(args)
    code = {"sweep": _sweep, "search": _search}.get(args.command, _run)(args)
    distributed.leave(done=True)  # the other processes must not take this exit for a death
    return code


def _one_line_errors(work: Callable[[], int]) -> int:
    from dlcore import distributed
    from dlcore.config import ConfigError
    from dlcore.loop import Hung, Interrupted, TrainingError
    try:
        return work()
    except ConfigError as e:
        print(f"dlcore: error: {e}", file=sys.stderr)
        return 2
    except Hung as e:  # XLA's threads are stuck: nothing could join them, so leave at once
        distributed.settle()
        print(f"dlcore: error: {e}", file=sys.stderr, flush=True)
        os._exit(1)
    except Interrupted as e:
        print(f"dlcore: {e}", file=sys.stderr)
        return 128 + e.signum
    except TrainingError as e:
        distributed.settle()  # a lost process, not this error, when one stopped answering
        print(f"dlcore: error: {e}", file=sys.stderr)
        return 1
    except Exception as e:  # XLA cannot allocate: one line, not a C++ stack
        distributed.settle()  # a collective whose peer died: the heartbeat's line, no traceback
        if "RESOURCE_EXHAUSTED" not in str(e):
            raise
        print(f"dlcore: error: out of device memory ({str(e).splitlines()[0][:200]}); choose a "
              "smaller model, batch or seed count", file=sys.stderr)
        return 1


def default_workdir(experiment: str, quick: bool, seeds: int, overrides: list[str],
                    kind: str = "") -> Path:
    """runs/<experiment>[<kind>][-quick][-seedsN][-<hash of the overrides>]: the same command
    finds its run again (and resumes it), a different one never lands in it. The experiment's
    name is a path inside runs/: '..', '.' and a leading '/' are dropped."""
    parts = [p for p in ("quick" if quick else "", f"seeds{seeds}" if seeds > 1 else "") if p]
    if overrides:
        parts.append(hashlib.sha1("\n".join(sorted(overrides)).encode()).hexdigest()[:6])
    inside = [p for p in PurePosixPath(experiment.replace("\\", "/")).parts
              if p not in ("/", "..")] or ["run"]
    return Path("runs", *inside[:-1], inside[-1] + kind + "".join(f"-{p}" for p in parts))


def _prepare(args, kind: str = "", extra: Sequence[str] = ()) -> tuple[dict, Path]:
    """The config with its overrides, and the run directory (--fresh moves it aside only once the
    run's values are checked, in rundir.claimed)."""
    from dlcore import experiment
    from dlcore.config import check
    cpu_devices = getattr(args, "cpu_devices", 0)
    check(cpu_devices >= 0, "--cpu-devices", f"must be a count of devices >= 1 (0: leave the CPU "
          f"as one device); got {cpu_devices}")
    if cpu_devices:
        import jax
        jax.config.update("jax_num_cpu_devices", cpu_devices)
    from dlcore import distributed  # joins the other processes before any device is touched
    distributed.initialize(getattr(args, "coordinator", None), getattr(args, "num_processes", None),
                           getattr(args, "process_id", None), getattr(args, "heartbeat_seconds", 60))
    config = experiment.load(args.experiment, quick=args.quick, overrides=args.overrides)
    distributed.check_same_config(config)  # before any process builds data or compiles
    from dlcore import transfer
    config = transfer.with_flags(config, getattr(args, "init_from", None),
                                 getattr(args, "init_seed", None))
    flags = [c for c in config.get("changed", []) if c.startswith("--init-")]
    workdir = Path(args.workdir) if args.workdir else default_workdir(
        config["experiment"], args.quick, args.seeds, [*args.overrides, *extra, *flags], kind)
    return config, workdir


def _run(args) -> int:
    config, workdir = _prepare(args)
    from dlcore import experiment
    summary = experiment.run(config, workdir, seeds=args.seeds, progress=not args.no_progress,
                             fresh=args.fresh, trackers=args.trackers)
    from dlcore import distributed
    if not distributed.is_main():  # process 0 reports for the run
        return 0
    _print_result(summary, workdir)
    if args.json:
        print(json.dumps(summary, default=str))
    return 0


def _sweep(args) -> int:
    import ast
    from dlcore import sweep
    from dlcore.config import ConfigError
    grid: dict = {}
    for item in args.grid:
        name, sep, values = item.partition("=")
        try:  # literals only (numbers), as --set parses them: never code
            grid[name.strip()] = [ast.literal_eval(v.strip()) for v in values.split(",")] if sep else None
        except (ValueError, SyntaxError):
            raise ConfigError(f"--grid {item}: values must be numbers separated by commas") from None
    config, workdir = _prepare(args, "-sweep", [f"grid:{g}" for g in args.grid])
    summary = sweep.run_sweep(config, grid, args.seeds, workdir, progress=not args.no_progress,
                              fresh=args.fresh, trackers=args.trackers)
    shown = summary["headline"][:1]
    for point in summary["points"]:
        m = point["metrics"]
        for k in shown:
            if isinstance(m.get(k), (int, float)):
                print(f"{point['hyper']}: {k} = {m[k]:.4f} ± {point['metrics_std'][k]:.4f}")
    print(f"{summary['members']} members in one program, {summary['seconds']:.1f} s; "
          f"run directory {workdir}")
    return 0


def _search(args) -> int:
    from dlcore import search
    space = search.parse_space(args.space)  # the syntax first: before any config is loaded
    points = search.draw(space, args.members, args.search_seed)
    args.seeds = 1  # default_workdir's seed count: members have their own seeds
    config, workdir = _prepare(args, "-search", [
        *(f"space:{s}" for s in args.space), f"members:{args.members}",
        f"search-seed:{args.search_seed}", f"rungs:{args.rungs}", f"eta:{args.eta}",
        *(f"{k}:{v}" for k, v in (("metric", args.metric), ("mode", args.mode)) if v)])
    report = search.run_search(config, points, workdir, rungs=args.rungs, eta=args.eta,
                               metric=args.metric, mode=args.mode, space=args.space,
                               search_seed=args.search_seed, progress=not args.no_progress,
                               fresh=args.fresh, trackers=args.trackers)
    print(search.table(report))
    best, metric = report["best"], report["chosen_on"]
    print(f"best (by {metric}): member {best['member']}, seed {best['seed']}, "
          + ", ".join(f"{k}={v}" for k, v in best["hyper"].items())
          + f": {metric} = {best['validation'][-1][metric]:.4f}"
          + "".join(f", {k} = {v:.4f} (reported, not used to choose)"
                    for k, v in best["test"].items() if k == "test_" + metric[len("validation_"):]))
    print(f"{len(report['members'])} members, {len(report['rungs'])} rung(s), "
          f"{report['seconds']:.1f} s; {workdir / 'search.json'}")
    return 0


def measured(metrics: dict, key: str):
    """summary metric `key`, or element i of a vector metric for 'name[i]'; None if absent."""
    name, _, index = key.partition("[")
    value = metrics.get(name)
    if index and isinstance(value, list):
        i = int(index.rstrip("]"))
        return value[i] if -len(value) <= i < len(value) else None
    return value if not index else None


def _print_result(summary: dict, workdir: Path) -> None:
    m, s = summary["metrics"], summary["metrics_std"]
    n = summary["seeds"]

    def show(key: str, note: str = "") -> None:
        value = measured(m, key)
        if not isinstance(value, (int, float)):
            return
        spread = measured(s, key)
        spread = f" ± {spread:.4f} (std over {n} seeds)" if n > 1 and spread is not None else ""
        print(f"{summary['experiment']}: {key} = {value:.4f}{spread}{note}")

    published = summary.get("published") or {}
    for key in summary.get("headline") or list(m)[:1]:
        if key not in published:
            show(key)
    for key, figures in published.items():
        refs = "; ".join(f"{src}: {v}" for src, v in figures.items()) if isinstance(figures, dict) \
            else str(figures)
        show(key, f"  [published: {refs}]")
    if summary.get("changed") and summary.get("config", {}).get("published"):
        print(f"(published figures not shown: this run differs from the published protocol: "
              f"{', '.join(summary['changed'])})")
    rate = summary.get("steps_per_second")
    start, ran = summary.get("start_step", 0), summary.get("steps_run", summary["steps"])
    end = start + ran
    steps = (f"{ran} steps ({start} -> {end}, resumed)" if start else f"{end} steps")
    if end < summary["steps"]:
        steps += f" (early stopping; {summary['steps']} allowed)"
    print(f"{steps} in {summary['seconds']:.1f} s"
          + (f" ({rate:,.0f} steps/s after compiling)" if rate else "") + f"; run directory {workdir}")


def _report(workdir: Path) -> int:
    from dlcore.config import ConfigError
    from dlcore import plots, writers
    seed_dirs = sorted(workdir.glob("seed_*/metrics.jsonl"))
    if not (workdir / "metrics.jsonl").exists() and seed_dirs:  # seeds run one after another
        for path in seed_dirs:
            _report(path.parent)
        return 0
    if not (workdir / "metrics.jsonl").exists():
        raise ConfigError(f"{workdir} is not a run directory (no metrics.jsonl)")
    title = _title(workdir)
    drawn = plots.learning_curves(workdir, title=title)
    for path in drawn:
        print(path)
    if (workdir / "checkpoints").exists() and (workdir / "config.json").exists():
        for path in _pictures(workdir, title):
            print(path)
            drawn.append(path)
    _send_pictures(workdir, drawn, title)
    steps = [r["step"] for r in writers.read_jsonl(workdir / "metrics.jsonl", warn=False)]
    if steps:  # in TensorBoard at the run's last step, replacing what an earlier report wrote
        writers.write_pictures(workdir / "tensorboard", max(steps), drawn)
    return 0


def _send_pictures(workdir: Path, paths: list[Path], title: str) -> None:
    """The pictures to the experiment trackers the run was tracked with (RUN/tracker.json), in
    the same tracked run; none: nothing is imported."""
    from dlcore import trackers
    names = trackers.recorded(workdir)
    if not names:
        return
    try:
        record = json.loads((workdir / "config.json").read_text())
    except (OSError, ValueError):  # a run made from Python values: its name is enough
        record = {}
    tracked = trackers.start(names, workdir, record if isinstance(record, dict) else {}, title)
    try:
        tracked.images(paths)
    finally:
        tracked.close(None)  # the tracked run keeps the status its training left


def _title(workdir: Path) -> str:
    try:
        return json.loads((workdir / "config.json").read_text()).get("experiment") or workdir.name
    except (OSError, ValueError, AttributeError):  # ValueError: not JSON, not UTF-8
        return workdir.name


def _pictures(workdir: Path, title: str) -> list[Path]:
    """The algorithm's pictures of the run's newest checkpoint (its first seed)."""
    from dlcore import experiment
    from dlcore.config import ConfigError
    from dlcore.core import Snapshot
    try:
        run = experiment.load_run(workdir)
    except ConfigError as e:  # the curves are drawn; say why there is nothing more
        print(f"dlcore: note: no pictures of the model: {e}", file=sys.stderr)
        return []
    if run.algorithm.pictures is None:
        return []
    out = workdir / "plots"
    out.mkdir(exist_ok=True)
    snapshot = Snapshot(run.final, run.init, run.data, run.metrics, out,
                        f"{title}, step {run.step}", run.history)
    return run.algorithm.pictures(snapshot)


def console() -> None:
    """The `dlcore` command. Errors of orbax's threads after a failed save, which can come as late
    as the interpreter's exit, are one line each (not for main() called in-process)."""
    threading.excepthook = sys.unraisablehook = _background_error
    sys.exit(main())


if __name__ == "__main__":
    console()
