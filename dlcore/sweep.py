"""Hyperparameter sweeps in one program: every (grid point, seed) member trains in one jitted
program, `jax.vmap`-ped over the members' states, through the host loop (loop.train, members=).

    summary = run_sweep(config, {"optim.learning_rate": [1e-3, 3e-3, 1e-2],
                                 "optim.weight_decay": [0.0, 0.1]}, seeds=3, workdir="runs/sweep")

What can be swept is what a state carries as a traced number:

* every optimizer hyperparameter of dlcore.optim (`optim.learning_rate`, `optim.weight_decay`,
  `optim.l2`, `optim.clip_norm`, `optim.b1`, ...): optax.inject_hyperparams keeps them in the
  optimizer state, so any algorithm whose optimizer comes from `optim.build` sweeps them;
* the keys an algorithm module lists in `HYPER` (MAML: `meta.inner_lr`, `meta.inner_steps`, kept
  in `state.hyper`).

Members of one program share its shapes and its length, so the program is built from the config
with every swept key at its largest value in the grid (which transforms the optimizer chain has; a
step count is the length of a loop that masks the steps past each member's own count:
dlcore.meta.adapt), and each member's numbers are then set to its own point. Every point's settings
are checked (ConfigError) before anything compiles. A key that changes shapes (model widths, batch
size) cannot share a program: it is refused, naming what can be swept.

Member m is (point m // seeds, seed config['seed'] + m % seeds) and gets the keys that seed gets in
`dlcore run`; it computes what `dlcore run` with that seed and its point's settings computes, the
seeds vmapped (tests/test_sweep.py checks equality over the first steps; README: "Sweeps").

The run directory is a `dlcore run` directory of the program (checkpoints, resume, NaN guard,
metrics.jsonl with per-member values under 'per_seed', TensorBoard, plots): config.json holds the
program's config and the sweep ({'grid', 'seeds'}); summary.json then holds, per grid point, the
metrics' means and stds over its seeds and their per-seed values.
"""
from __future__ import annotations

import copy
import itertools
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

from dlcore import data as data_lib, experiment, loop, optim, rundir, transfer
from dlcore.config import ConfigError, check, get


def sweepable(config: dict) -> list[str]:
    """The config keys `config`'s algorithm can sweep in one program."""
    keys = [f"optim.{k}" for k in optim.HYPERPARAMETERS] if "optim" in config else []
    return keys + list(experiment.maker(config["algorithm"]).hyper)


def check_grid(config: dict, grid: dict) -> dict[str, list]:
    """The grid as {config key: [values]}; ConfigError naming any key that cannot be swept."""
    keys = sweepable(config)
    check(isinstance(grid, dict) and len(grid) > 0, "sweep",
          f"needs at least one key to sweep; got {grid!r}")
    for name, values in grid.items():
        if name not in keys:
            raise ConfigError(
                f"sweep key '{name}' cannot be swept in one program for algorithm "
                f"'{config['algorithm']}' (it is not a number the state carries; keys that change "
                f"shapes never are); sweepable: {', '.join(keys) or 'none'}")
        check(isinstance(values, (list, tuple)) and len(values) > 0, f"sweep.{name}",
              f"must be a non-empty list of values; got {values!r}")
    return {name: list(values) for name, values in grid.items()}


def grid_points(grid: dict[str, list]) -> list[dict]:
    """Every combination, the first key varying slowest."""
    return [dict(zip(grid, values)) for values in itertools.product(*grid.values())]


def point_config(config: dict, point: dict) -> dict:
    """`config` with each key of `point` set."""
    cfg = copy.deepcopy(config)
    for key, value in point.items():
        *path, last = key.split(".")
        section = cfg
        for part in path:
            section = section[part]
        section[last] = value
    return cfg


def run_sweep(config: dict, grid: dict[str, list], seeds: int = 1,
              workdir: str | Path = "runs/sweep", progress: bool = True,
              fresh: bool = False, trackers: str | list[str] | tuple[str, ...] = ()) -> dict:
    """Train every (grid point, seed) of a complete `config` in one program (resuming what is in
    `workdir`, or moving it aside with `fresh`); returns the summary it writes. trackers:
    experiment trackers (dlcore.trackers) that get the program's run (metrics: means over all
    members, as in its metrics.jsonl)."""
    t_start = time.perf_counter()
    workdir = Path(workdir)
    check(type(seeds) is int and seeds >= 1, "--seeds", f"must be >= 1; got {seeds}")
    config = experiment.complete(config)
    loop.validate(config["loop"])
    check(config["loop"]["devices"] == 1, "loop.devices",
          f"a sweep runs on one device; got {config['loop']['devices']}")
    grid = check_grid(config, grid)
    points = grid_points(grid)
    data = data_lib.load(config["data"])
    make = experiment.maker(config["algorithm"]).make
    for point in points:  # every point's settings checked before anything compiles
        make(point_config(config, point), data, config["loop"]["steps"])
    program = point_config(config, {k: max(v) for k, v in grid.items()})
    program["sweep"] = {"grid": grid, "seeds": seeds}
    algorithm = experiment.with_transfer(make(program, data, program["loop"]["steps"]), program)
    program = transfer.pin(program, algorithm)  # the source's step and digest in config.json

    members = [(p, config["seed"] + s) for p in range(len(points)) for s in range(seeds)]
    member_cfgs = [point_config(config, points[p]) for p, _ in members]
    run = loop.train(algorithm, data, program["loop"], workdir,
                     members=([s for _, s in members], lambda states: with_points(
                         states, member_cfgs, list(grid), experiment.maker(config["algorithm"]).hyper)),
                     record=experiment.record(program), name=config["experiment"],
                     progress=progress, fresh=fresh, trackers=trackers)
    summary = {
        "experiment": config["experiment"],
        "grid": grid,
        "points": [_point_summary(point, run["per_seed"], p, seeds) for p, point in enumerate(points)],
        "seeds": seeds,
        "seed_values": [config["seed"] + s for s in range(seeds)],
        "members": len(members),
        "seconds": time.perf_counter() - t_start,
        "steps": run["steps"],
        "steps_per_second": run["steps_per_second"],  # of the whole program: a step updates all
        "headline": run["headline"],
        "versions": run["versions"],
        "config": experiment.record(program),
    }
    if "early_stopping" in run:  # per member
        summary["early_stopping"] = run["early_stopping"]
    rundir.write_json(workdir / "summary.json", summary)  # the loop's per-member summary, regrouped
    return summary


def with_points(states, member_cfgs: list[dict], keys: list[str], hyper: dict):
    """`states` (a leading member axis [M]) with each member's swept numbers set from its config:
    optimizer hyperparameters in every optax.inject_hyperparams state of the tree, the
    algorithm's HYPER keys in `state.hyper`."""
    optim_keys = [k.split(".", 1)[1] for k in keys if k.startswith("optim.")]
    if optim_keys:
        values = [optim.injected(cfg["optim"]) for cfg in member_cfgs]

        def set_optim(node):
            if not _is_injected(node):
                return node
            new = {k: jnp.asarray([v[k] for v in values], node.hyperparams[k].dtype)
                   for k in optim_keys}
            return node._replace(hyperparams={**node.hyperparams, **new})
        found = [n for n in jax.tree.leaves(states, is_leaf=_is_injected) if _is_injected(n)]
        if not found:
            raise ConfigError("sweep: this algorithm's state holds no dlcore.optim optimizer "
                              f"state, so {', '.join('optim.' + k for k in optim_keys)} cannot "
                              "be swept in one program")
        states = jax.tree.map(set_optim, states, is_leaf=_is_injected)
    own = [k for k in keys if k in hyper]
    if own:
        current = states.hyper
        states = states._replace(hyper={**current, **{
            hyper[k]: jnp.asarray([get(cfg, k) for cfg in member_cfgs], current[hyper[k]].dtype)
            for k in own}})
    return states


def _is_injected(node) -> bool:
    return isinstance(node, optax.InjectStatefulHyperparamsState)


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
