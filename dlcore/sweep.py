"""Hyperparameter sweeps in one program: every (grid point, seed) member trains in one jitted
program, `jax.vmap`-ped over the members' states, through the host loop (dlcore.loop.run, members=).

    summary = run_sweep(config, {"inner_lr": [0.003, 0.01, 0.03], "inner_steps": [1, 2, 3]},
                        seeds=3, workdir="runs/sweep")

What can be swept: the hyperparameters an algorithm carries in its state (`state.hyper`, a dict of
scalars that its step and evaluation read), listed with the config key each starts from in the
algorithm module's `HYPER` (MAML: inner_lr <- meta.inner_lr, inner_steps <- meta.inner_steps).
Members of one program share its shapes and its length, so the program is built from the config
with every swept key at its largest value in the grid (for a step count, the length of a loop that
masks the steps past each member's own count: dlcore.meta.adapt), and each member's `hyper` is then
set to its own point. Every point's settings are checked (ConfigError) before anything compiles.

Member m is (point m // seeds, seed config['seed'] + m % seeds) and gets the keys that seed gets in
`dlcore run` (dlcore.loop.split_keys): a member trains as `dlcore run` with that seed and its point's
settings does, to float rounding (tests/test_sweep.py).

The run directory is a `dlcore run` directory of the program (checkpoints, resume, NaN guard,
metrics.jsonl with per-member values under 'per_seed', TensorBoard, plots): config.json holds the
program's config and the sweep ({'grid', 'seeds'}). Run again in the same directory, a sweep resumes
from its newest good checkpoint; a directory holding another run or another sweep is refused.
summary.json is then replaced by the sweep's: per grid point the metrics' means and stds over seeds
and their per-seed values.
"""
from __future__ import annotations

import copy
import itertools
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from dlcore import algorithms, data as data_lib, loop
from dlcore.config import ConfigError, check


def sweepable(config: dict) -> dict[str, str]:
    """{hyperparameter: the config key it starts from} that `config`'s algorithm can sweep."""
    return dict(getattr(algorithms.get(config["algorithm"]), "HYPER", {}))


def check_grid(config: dict, grid: dict) -> dict[str, list]:
    """The grid as {name: [values]}; ConfigError naming any key that cannot be swept."""
    keys = sweepable(config)
    check(isinstance(grid, dict) and len(grid) > 0, "sweep",
          f"needs at least one hyperparameter to sweep; got {grid!r}")
    for name, values in grid.items():
        if name not in keys:
            choices = ", ".join(keys) or "none (its state carries no hyperparameters)"
            raise ConfigError(f"sweep key '{name}' is not a hyperparameter that algorithm "
                              f"'{config['algorithm']}' can sweep in one program; sweepable: {choices}")
        check(isinstance(values, (list, tuple)) and len(values) > 0, f"sweep.{name}",
              f"must be a non-empty list of values; got {values!r}")
    return {name: list(values) for name, values in grid.items()}


def grid_points(grid: dict[str, list]) -> list[dict]:
    """Every combination, the first key varying slowest."""
    return [dict(zip(grid, values)) for values in itertools.product(*grid.values())]


def point_config(config: dict, point: dict) -> dict:
    """`config` with each hyperparameter of `point` set at its config key."""
    keys = sweepable(config)
    cfg = copy.deepcopy(config)
    for name, value in point.items():
        *path, last = keys[name].split(".")
        section = cfg
        for part in path:
            section = section[part]
        section[last] = value
    return cfg


def run_sweep(config: dict, grid: dict[str, list], seeds: int = 1, workdir: str | Path = "runs/sweep",
              progress: bool = True) -> dict:
    """Train every (grid point, seed) of `config` in one program (resuming what is in `workdir`);
    returns the summary it writes."""
    t_start = time.perf_counter()
    workdir = Path(workdir)
    check(isinstance(seeds, int) and seeds >= 1, "--seeds", f"must be >= 1; got {seeds}")
    loop.validate(config["loop"])
    check(config["loop"]["devices"] == 1, "loop.devices",
          f"a sweep runs on one device; got {config['loop']['devices']}")
    grid = check_grid(config, grid)
    points = grid_points(grid)
    program = program_config(config, grid, points)

    seed_list = [config["seed"] + s for _ in points for s in range(seeds)]
    values = {name: [point[name] for point in points for _ in range(seeds)] for name in grid}
    run = loop.run({**program, "sweep": {"grid": grid, "seeds": seeds}}, workdir, progress=progress,
                   members=(seed_list, lambda states: with_hyper(states, values)))

    summary = {
        "experiment": config["experiment"],
        "grid": grid,
        "points": [_point_summary(point, run["per_seed"], p, seeds) for p, point in enumerate(points)],
        "seeds": seeds,
        "seed_values": seed_list[:seeds],
        "members": len(seed_list),
        "seconds": time.perf_counter() - t_start,
        "steps": run["steps"],
        "steps_per_second": run["steps_per_second"],  # of the whole program: a step updates all
        "versions": run["versions"],
        "config": program,
    }
    if "early_stopping" in run:  # per member
        summary["early_stopping"] = run["early_stopping"]
    loop._write_json(workdir / "summary.json", summary)  # the loop's per-member summary, regrouped
    return summary


def program_config(config: dict, grid: dict[str, list], points: list[dict]) -> dict:
    """The config the one program is built from: every swept key at its largest value. Every
    point's settings are checked first (ConfigError), and the algorithm's state must carry `hyper`."""
    _, spec = data_lib.load(config["data"])
    module = algorithms.get(config["algorithm"])
    for point in points:
        module.make(point_config(config, point), spec)
    program = point_config(config, {name: max(values) for name, values in grid.items()})
    state = jax.eval_shape(module.make(program, spec).init, jax.random.key(0))  # traced, not run
    check(isinstance(getattr(state, "hyper", None), dict), "algorithm",
          f"'{config['algorithm']}' lists HYPER but its state has no `hyper` dict")
    return program


def with_hyper(states, values: dict[str, list]):
    """`states` (a leading member axis [M]) with each swept `hyper` entry set to its member's value.
    values: {name: [M values]}."""
    hyper = {**states.hyper, **{name: jnp.asarray(v, states.hyper[name].dtype)
                                for name, v in values.items()}}
    return states._replace(hyper=hyper)


def _point_summary(point: dict, per_member: dict, p: int, seeds: int) -> dict:
    """One grid point's metrics: mean and std over its seeds, and each seed's value.
    per_member: metric -> [M, ...] values, member m = (point m // seeds, seed m % seeds)."""
    out = {"hyper": point, "metrics": {}, "metrics_std": {}, "per_seed": {}}
    for name, v in per_member.items():
        v = np.asarray(v, np.float64)[p * seeds:(p + 1) * seeds]
        mean, std = v.mean(0), v.std(0)
        out["metrics"][name] = float(mean) if mean.ndim == 0 else mean.tolist()
        out["metrics_std"][name] = float(std) if std.ndim == 0 else std.tolist()
        out["per_seed"][name] = v.tolist()
    return out
