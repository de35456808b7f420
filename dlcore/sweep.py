"""Hyperparameter sweeps in one program: every (grid point, seed) member trains in one jitted
program, `jax.vmap`-ped over the members' states.

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

The run directory gets config.json (the config and the grid), metrics.jsonl (per member, at the log
and evaluation steps) and summary.json: per grid point the metrics' means and stds over seeds and
their per-seed values. Unlike `dlcore run` a sweep writes no checkpoints and does not resume: run
again in the same directory, it starts over (a directory holding a `dlcore run` is refused).
"""
from __future__ import annotations

import copy
import itertools
import json
import platform
import time
from functools import partial
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from dlcore import algorithms, data as data_lib, loop, writers
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
    """Train every (grid point, seed) of `config` in one program; returns the summary it writes."""
    t_start = time.perf_counter()
    workdir = Path(workdir)
    check(isinstance(seeds, int) and seeds >= 1, "--seeds", f"must be >= 1; got {seeds}")
    cfg = config["loop"]
    loop.validate(cfg)
    check(cfg["devices"] == 1, "loop.devices", f"a sweep runs on one device; got {cfg['devices']}")
    grid = check_grid(config, grid)
    points = grid_points(grid)

    # 1. every point's settings checked, then the one program built for the largest values.
    splits, spec = data_lib.load(config["data"])
    module = algorithms.get(config["algorithm"])
    for point in points:
        module.make(point_config(config, point), spec)
    program = point_config(config, {name: max(values) for name, values in grid.items()})
    algorithm = module.make(program, spec)
    sample = data_lib.sampler(config["data"], spec)
    saved = workdir / "config.json"
    if saved.exists() and "sweep" in json.loads(saved.read_text()):
        saved.unlink()  # an earlier sweep's directory: sweeps do not resume, it is replaced
    loop.prepare_workdir(workdir, {**config, "sweep": {"grid": grid, "seeds": seeds}})
    (workdir / "metrics.jsonl").unlink(missing_ok=True)

    # 2. the members: their keys are their seeds' keys in `dlcore run`; their hyper their points'.
    members = [(p, config["seed"] + s) for p in range(len(points)) for s in range(seeds)]
    keys = jax.tree.map(lambda *k: jnp.stack(k),
                        *[loop.split_keys(jax.random.key(seed)) for _, seed in members])
    states = jax.jit(jax.vmap(algorithm.init))(keys["init"])
    check(isinstance(getattr(states, "hyper", None), dict), "algorithm",
          f"'{config['algorithm']}' lists HYPER but its state has no `hyper` dict")
    hyper = dict(states.hyper)
    for name in grid:
        hyper[name] = jnp.asarray([points[p][name] for p, _ in members], hyper[name].dtype)
    states = states._replace(hyper=hyper)
    device_data = jax.device_put(splits)

    # 3. the compiled step, as in dlcore.loop: k updates per call, metrics summed on the device.
    total, k = cfg["steps"], cfg["steps_per_call"]
    key0 = jax.random.key(0)
    one = jax.tree.map(lambda a: a[0], states)
    metric_shapes = jax.eval_shape(
        lambda s: algorithm.step(s, sample(splits["train"], 0, key0), key0)[1], one)
    names = sorted(metric_shapes)

    def one_update(state, acc, t, data, key_data, key_step):
        batch = sample(data["train"], t, key_data)
        state, metrics = algorithm.step(state, batch, jax.random.fold_in(key_step, t))
        vec = jnp.stack([metrics[n].astype(jnp.float32) for n in names])
        bad = (acc["bad"] < 0) & ~jnp.isfinite(jnp.sum(vec))
        return state, {"sum": acc["sum"] + vec, "bad": jnp.where(bad, t, acc["bad"])}

    update = jax.vmap(one_update, in_axes=(0, 0, None, None, 0, 0))

    @partial(jax.jit, donate_argnums=0)
    def train_call(carry, data, key_data, key_step):
        def body(carry, _):
            state, acc, t = carry
            state, acc = update(state, acc, t, data, key_data, key_step)
            return (state, acc, t + 1), None
        if k == 1:
            return body(carry, None)[0]
        return jax.lax.scan(body, carry, None, length=k)[0]

    evaluate = jax.jit(jax.vmap(algorithm.evaluate, in_axes=(0, None, 0)))

    def zero_acc():
        return {"sum": jnp.zeros((len(members), len(names)), jnp.float32),
                "bad": jnp.full((len(members),), -1, jnp.int32)}

    # 4. the loop: metrics pulled at log and evaluation steps only.
    bar = writers.Progress(total, 0, label=f"{config['experiment']} sweep ") if progress else None
    carry = (states, zero_acc(), jnp.zeros((), jnp.int32))
    t, t_flushed, t_loop, steps_timed = 0, 0, None, 0
    try:
        while t < total:
            carry = train_call(carry, device_data, keys["data"], keys["step"])
            t += k
            if t_loop is None:  # the first call compiles; time the rest
                jax.block_until_ready(carry)
                t_loop, steps_timed = time.perf_counter(), t
            is_eval = t % cfg["eval_every"] == 0 or t == total
            if not (t % cfg["log_every"] == 0 or is_eval):
                continue
            states, acc, t_dev = carry
            record = loop._train_record(jax.device_get(acc), names, t - t_flushed, t, None,
                                        workdir, True)
            t_flushed = t
            carry = (states, zero_acc(), t_dev)
            if is_eval:
                record.update(loop._evaluate(evaluate, states, device_data, keys["eval"], splits,
                                             with_train=False))
            writers.append_jsonl(workdir / "metrics.jsonl", {
                "step": t, "time": time.time(),
                "per_member": {name: np.asarray(v).tolist() for name, v in record.items()}})
            if bar:
                bar.update(t, {n: float(np.mean(v)) for n, v in record.items() if np.ndim(v) == 1})
        jax.block_until_ready(carry)
        t_end = time.perf_counter()
    finally:
        if bar:
            bar.close()

    # 5. the end: every split evaluated, the members grouped back into grid points.
    final = loop._evaluate(evaluate, carry[0], device_data, keys["eval"], splits, with_train=True)
    named = loop.summary_metrics(final, algorithm.aliases)
    rate = (t - steps_timed) / (t_end - t_loop) if t > steps_timed and t_end > t_loop else None
    summary = {
        "experiment": config["experiment"],
        "grid": grid,
        "points": [_point_summary(point, named, p, seeds) for p, point in enumerate(points)],
        "seeds": seeds,
        "seed_values": [config["seed"] + s for s in range(seeds)],
        "members": len(members),
        "seconds": time.perf_counter() - t_start,
        "steps": total,
        "steps_per_second": rate,  # of the whole program: each step updates every member
        "versions": {"python": platform.python_version(), "jax": jax.__version__,
                     "backend": jax.default_backend(), "devices": jax.device_count()},
        "config": program,
    }
    loop._write_json(workdir / "summary.json", summary)
    return summary


def _point_summary(point: dict, named: dict, p: int, seeds: int) -> dict:
    """One grid point's metrics: mean and std over its seeds, and each seed's value."""
    out = {"hyper": point, "metrics": {}, "metrics_std": {}, "per_seed": {}}
    for name, v in named.items():
        v = np.asarray(v, np.float64)[p * seeds:(p + 1) * seeds]
        mean, std = v.mean(0), v.std(0)
        out["metrics"][name] = float(mean) if mean.ndim == 0 else mean.tolist()
        out["metrics_std"][name] = float(std) if std.ndim == 0 else std.tolist()
        out["per_seed"][name] = v.tolist()
    return out
