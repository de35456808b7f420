"""Hyperparameter search in one program: random search and successive halving, every member
`jax.vmap`-ped through the host loop (loop.train, members=), for any algorithm.

    space = parse_space(["optim.learning_rate=log:1e-4:1e-1", "optim.weight_decay=log:1e-5:1e-1"])
    points = draw(space, 32, search_seed=0)              # [{key: value}] per member
    report = run_search(config, points, "runs/search", rungs=3, eta=3)   # also RUN/search.json

A search space is one `KEY=KIND:ARGS` per key (the command line's `--space`):

    KEY=log:LOW:HIGH        log-uniform on [LOW, HIGH], 0 < LOW < HIGH
    KEY=uniform:LOW:HIGH    uniform on [LOW, HIGH]
    KEY=int:LOW:HIGH        an integer of LOW..HIGH (both included), each equally likely
    KEY=choice:V1,V2,...    one of the numbers V1, V2, ..., each equally likely

The keys are those dlcore.sweep can sweep (numbers a state carries: optimizer hyperparameters,
an algorithm's HYPER keys), for the same reason: members of one program share its shapes. `draw`
takes member m's values, key after key, from numpy's PCG64 seeded with the search seed: the same
seed gives the same members, and the first N members of a larger search are those of an
N-member one. Drawn floats keep 4 significant digits, so a member is reproduced exactly with
`dlcore run --set KEY=VALUE` as printed. Member m trains with seed config['seed'] + m.

Successive halving (Jamieson & Talwalkar 2016; a rung of Li et al.'s Hyperband): with `rungs` K
and `eta`, rung i ends at step budget / eta^(K-1-i) (rounded down to a multiple of
loop.steps_per_call; budget = loop.steps). All members train to the first rung's end; each rung
is scored on the **validation** split (`metric`, a 'validation_*' summary metric) and the best
max(1, n // eta) go on to the next rung, until the budget. rungs=1 is plain random search. Each
rung is one program of its surviving members (a `loop.train` run directory RUN/rung_<i>), and
a survivor goes on from where it was: the rung starts from the previous rung's final checkpoint
(its parameters, optimizer state and step count), at that rung's step, so its batches and step
keys are those the uninterrupted run draws. A survivor therefore computes what the same member
trained to the budget without halving computes, to float rounding (tests/test_search.py). The
algorithm is built for the whole budget, so a learning-rate schedule has the budget as its
length for every member, whichever rung it stops at.

The test split is never read to choose: ranking uses `metric` alone, which must be a validation
metric; the members' test metrics are reported beside it only. Data without a validation split is
refused (set data.validation_fraction). A member whose metrics become NaN or Inf stops the whole
program (the loop's NaN guard, naming the member's index in its rung): narrow the space or set
optim.clip_norm.

RUN is a run directory like any other: locked against a second process, refused when it holds
another search (config.json records the config, the space, the search seed and every member's
values), resumed by running the same command again (each finished rung is read back from its
checkpoint, an interrupted one resumes from its newest), moved aside with fresh=True. RUN/search.json
lists every member: its values, seed, validation metric at each rung it reached, test metrics (for
reporting), and the chosen best.
"""
from __future__ import annotations

import ast
import difflib
import time
from pathlib import Path
from typing import Any, NamedTuple

import jax
import numpy as np

from dlcore import checkpoint, experiment, loop, rundir, sweep, transfer
from dlcore import data as data_lib
from dlcore.config import ConfigError, check, flatten
from dlcore.watch import TrainingError

KINDS = ("log", "uniform", "int", "choice")
# summary metrics better when larger; any other (loss, mse, error, ...) is better when smaller
MAXIMIZED = ("accuracy", "return", "auc", "f1", "r2", "precision", "recall", "score")


# --- the space and the members -------------------------------------------------------------------

class Dim(NamedTuple):
    """One key's distribution: kind in KINDS; low/high for log, uniform, int; values for choice."""
    kind: str
    low: float = 0.0
    high: float = 0.0
    values: tuple = ()


def parse_space(specs: list[str]) -> dict[str, Dim]:
    """{key: Dim} from 'KEY=KIND:ARGS' strings (module docstring); ConfigError naming the spec."""
    check(isinstance(specs, (list, tuple)) and len(specs) > 0, "--space",
          "search needs at least one key, e.g. --space optim.learning_rate=log:1e-4:1e-1")
    space = {}
    for spec in specs:
        key, sep, text = str(spec).partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--space {spec}: expected KEY=KIND:ARGS, e.g. "
                              "optim.learning_rate=log:1e-4:1e-1")
        check(key not in space, "--space", f"'{key}' is given twice")
        space[key] = parse_dim(key, text.strip())
    return space


def parse_dim(key: str, text: str) -> Dim:
    """The Dim of 'KIND:ARGS'; ConfigError saying what the kind expects."""
    kind, _, args = text.partition(":")
    if kind not in KINDS:
        raise ConfigError(f"--space {key}={text}: unknown kind '{kind}'; use one of "
                          "log:LOW:HIGH, uniform:LOW:HIGH, int:LOW:HIGH, choice:V1,V2,...")
    if kind == "choice":
        values = tuple(_number(key, text, v) for v in args.split(",")) if args.strip() else ()
        if not values:
            raise ConfigError(f"--space {key}={text}: choice needs at least one value, "
                              "e.g. choice:0.9,0.95")
        return Dim(kind, values=values)
    parts = args.split(":")
    if len(parts) != 2:
        raise ConfigError(f"--space {key}={text}: {kind} takes two bounds, e.g. {kind}:"
                          + ("1:5" if kind == "int" else "1e-4:1e-1"))
    low, high = (_number(key, text, p, integer=kind == "int") for p in parts)
    if kind == "log" and not 0 < low < high:
        raise ConfigError(f"--space {key}={text}: log needs 0 < LOW < HIGH")
    if kind != "log" and not low <= high:
        raise ConfigError(f"--space {key}={text}: needs LOW <= HIGH")
    return Dim(kind, low, high)


def _number(key: str, text: str, value: str, integer: bool = False):
    """A finite number (an int when `integer`) from `value`, or ConfigError. Literals only, as
    --set parses them: never code."""
    try:
        v = ast.literal_eval(value.strip())
    except (ValueError, SyntaxError):
        v = None
    if not (isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v)):
        raise ConfigError(f"--space {key}={text}: '{value.strip()}' is not a number (a search "
                          "draws numbers the state carries; a name, such as an optimizer's, "
                          "changes the program: run one search per name)")
    if integer and type(v) is not int:
        raise ConfigError(f"--space {key}={text}: '{value.strip()}' is not an integer")
    return v


def draw(space: dict[str, Dim], members: int, search_seed: int) -> list[dict]:
    """[{key: value}] for `members` members, from PCG64 seeded with `search_seed` (member m's
    values drawn after member m-1's, so a larger search extends a smaller one)."""
    check(type(members) is int and members >= 1, "--members", f"must be >= 1; got {members!r}")
    check(type(search_seed) is int and search_seed >= 0, "--search-seed",
          f"must be an integer >= 0; got {search_seed!r}")
    rng = np.random.default_rng(search_seed)
    return [{key: _draw_one(rng, dim) for key, dim in space.items()} for _ in range(members)]


def _draw_one(rng: np.random.Generator, dim: Dim):
    if dim.kind == "choice":
        return dim.values[int(rng.integers(len(dim.values)))]
    if dim.kind == "int":
        return int(rng.integers(int(dim.low), int(dim.high) + 1))
    if dim.kind == "log":
        v = float(np.exp(rng.uniform(np.log(dim.low), np.log(dim.high))))
    else:
        v = float(rng.uniform(dim.low, dim.high))
    # 4 significant digits: printed values reproduce the member; clipped, so rounding never
    # leaves the space
    return min(max(float(f"{v:.4g}"), dim.low), dim.high)


def check_keys(config: dict, keys) -> None:
    """ConfigError for a key the config does not have, or one that cannot be searched in one
    program (it is no number the state carries), naming what can."""
    can = sweep.sweepable(config)
    flat = flatten(config)
    for key in keys:
        if key in can:
            continue
        if key not in flat:
            hint = difflib.get_close_matches(key, can + list(flat), n=1)
            raise ConfigError(f"--space: unknown config key '{key}'"
                              + (f"; did you mean '{hint[0]}'?" if hint else "")
                              + f" (searchable: {', '.join(can) or 'none'})")
        raise ConfigError(f"--space: '{key}' cannot be searched in one program for algorithm "
                          f"'{config['algorithm']}' (it is not a number the state carries; keys "
                          f"that change shapes never are); searchable: {', '.join(can) or 'none'}")


# --- rungs and the choice of survivors -----------------------------------------------------------

def rung_steps(budget: int, rungs: int, eta: int, per_call: int) -> list[int]:
    """[r_0 < ... < r_{K-1} = budget]: where each rung ends (module docstring)."""
    check(type(rungs) is int and rungs >= 1, "--rungs", f"must be an integer >= 1; got {rungs!r}")
    check(type(eta) is int and eta >= 2, "--eta",
          f"must be an integer >= 2 (the best 1/eta go on); got {eta!r}")
    ends = [(budget // eta ** (rungs - 1 - i)) // per_call * per_call for i in range(rungs)]
    check(ends[0] > 0 and all(a < b for a, b in zip(ends, ends[1:])), "--rungs",
          f"{rungs} rungs of eta {eta} need a budget of at least {per_call * eta ** (rungs - 1)} "
          f"steps (the first rung: at least loop.steps_per_call {per_call}); loop.steps is "
          f"{budget}: raise it, or lower --rungs or --eta")
    return ends


def keep_count(n: int, eta: int) -> int:
    """How many of `n` members go on to the next rung: the best 1/eta, at least one."""
    return max(1, n // eta)


def select(scores, keep: int, mode: str) -> list[int]:
    """Positions of the `keep` best of `scores` ([M] validation metric) in increasing order; ties
    go to the earlier position, NaN ranks last."""
    s = np.asarray(scores, np.float64)
    rank = -s if mode == "max" else s
    order = np.argsort(np.where(np.isnan(rank), np.inf, rank), kind="stable")
    return sorted(order[:keep].tolist())


def survivors(per_member: dict, metric: str, keep: int, mode: str) -> list[int]:
    """Positions of the `keep` members of a rung that go on, from the rung summary's per-member
    metrics ({name: [M] values}): by the validation `metric` alone; no other entry (its test
    metrics) is read."""
    check(metric.startswith("validation_"), "--metric", f"must be a validation metric; got "
          f"{metric!r}")
    return select(per_member[metric], keep, mode)


def default_metric(algorithm) -> str:
    """'validation_<name>' of the algorithm's first headline metric 'test_<name>'."""
    head = next((h for h in algorithm.headline if h.startswith("test_")), None)
    if head is None:
        raise ConfigError("--metric: this algorithm names no test headline metric to score on "
                          "the validation split; name one, e.g. --metric validation_loss")
    return "validation_" + head[len("test_"):]


def default_mode(metric: str) -> str:
    return "max" if any(w in metric for w in MAXIMIZED) else "min"


def check_validation(data, data_cfg: dict) -> None:
    """ConfigError unless the data has a validation split to choose on, saying how to make one."""
    if "validation" in data.splits:
        return
    how = ("set data.validation_fraction (e.g. --set data.validation_fraction=0.2)"
           if "validation_fraction" in data_cfg else
           f"data '{data_cfg.get('name')}' makes none here (its keys: "
           f"{', '.join(sorted(data_cfg))}); give your data a 'validation' split")
    raise ConfigError(f"search chooses members on the validation split, and this data has none: "
                      f"{how}")


def check_metric(algorithm, data, metric: str, mode: str) -> None:
    """ConfigError unless `metric` is a scalar metric of the validation split (never test: a
    choice made on the test set leaks it into the result) and mode is max or min. The data has a
    validation split (check_validation)."""
    check(mode in ("max", "min"), "--mode", f"must be max or min; got {mode!r}")
    check(isinstance(metric, str) and metric.startswith("validation_"), "--metric",
          f"must be a validation metric (validation_<name>): the test split is never used to "
          f"choose; got {metric!r}")
    check(algorithm.evaluate is not None, "--metric", "this algorithm evaluates nothing to score")
    state = jax.eval_shape(algorithm.init, jax.random.key(0))
    found = jax.eval_shape(algorithm.evaluate, state, data.splits["validation"], jax.random.key(0))
    scalars = sorted(f"validation_{n}" for n, v in found.items() if not getattr(v, "shape", ()))
    check(metric in scalars, "--metric",
          f"'{metric}' is not a scalar validation metric of this run; choose one of "
          f"{', '.join(scalars) or '(none)'}")


# --- the search ---------------------------------------------------------------------------------

class Plan(NamedTuple):
    """A search checked and built: the complete config, its loop section, the data, the searched
    keys, each member's config, the program's config and Algorithm (built for the whole budget,
    every key at its members' largest value: dlcore.sweep), the algorithm's HYPER keys, the
    rungs' ends, and the metric and mode that rank members."""
    config: dict
    loop: dict
    data: Any
    keys: list
    member_cfgs: list
    program: dict
    algorithm: Any
    hyper: dict
    ends: list
    metric: str
    mode: str


def plan(config: dict, points: list[dict], rungs: int, eta: int, metric: str | None,
         mode: str | None) -> Plan:
    """Check everything about a search (ConfigError) and build its program; nothing compiles."""
    config = experiment.complete(config)
    cfg = loop.validate(config["loop"])
    check(cfg["devices"] == 1, "loop.devices", f"a search runs on one device; got {cfg['devices']}")
    check(cfg["early_stopping_patience"] == 0, "loop.early_stopping_patience",
          "a search chooses on validation itself; set it to 0")
    check(isinstance(points, list) and len(points) > 0 and all(isinstance(p, dict) and p
                                                               for p in points),
          "search", f"needs a non-empty list of members {{key: value}}; got {points!r}")
    keys = list(points[0])
    check(all(list(p) == keys for p in points), "search", "every member must set the same keys")
    check_keys(config, keys)
    budget = cfg["steps"]
    ends = rung_steps(budget, rungs, eta, cfg["steps_per_call"])
    data = data_lib.load(config["data"])
    check_validation(data, config["data"])
    algo = experiment.maker(config["algorithm"])
    member_cfgs = [sweep.point_config(config, p) for p in points]
    for c in member_cfgs:  # every member's settings checked before anything compiles
        algo.make(c, data, budget)
    program = sweep.point_config(config, {k: max(p[k] for p in points) for k in keys})
    # the whole budget: a schedule ends there for every member, whichever rung it stops at
    algorithm = experiment.with_transfer(algo.make(program, data, budget), program)
    program = transfer.pin(program, algorithm)  # a transfer source's step and digest recorded
    metric = metric or default_metric(algorithm)
    mode = mode or default_mode(metric)
    check_metric(algorithm, data, metric, mode)
    return Plan(config, cfg, data, keys, member_cfgs, program, algorithm, algo.hyper, ends, metric,
                mode)


def run_search(config: dict, points: list[dict], workdir: str | Path, *, rungs: int = 1,
               eta: int = 3, metric: str | None = None, mode: str | None = None,
               space: list[str] | None = None, search_seed: int | None = None,
               progress: bool = True, fresh: bool = False,
               trackers: str | list[str] | tuple[str, ...] = ()) -> dict:
    """Train the members `points` (member m: its values, seed config['seed'] + m) of a complete
    `config` by successive halving (rungs=1: all to the budget, i.e. random search), each rung one
    program; returns the report it writes to workdir/search.json. space and search_seed are
    recorded only (what drew the points). trackers: experiment trackers (dlcore.trackers), one
    tracked run per rung. Everything is checked (ConfigError) before anything compiles or is
    written."""
    t_start, workdir = time.perf_counter(), Path(workdir)
    p = plan(config, points, rungs, eta, metric, mode)
    from dlcore.trackers import check as check_trackers
    trackers = check_trackers(trackers)  # before the run directory is made
    seeds = [p.config["seed"] + m for m in range(len(points))]
    search = {"space": list(space or []), "search_seed": search_seed, "members": points,
              "seeds": seeds, "rungs": rungs, "eta": eta, "steps": p.ends, "metric": p.metric,
              "mode": p.mode}
    record = experiment.record({**p.program, "search": search})
    done: list[dict] = []
    alive = list(range(len(points)))
    with rundir.claimed(workdir, record, fresh):
        rundir.write_json(workdir / "config.json", record)
        for i, end in enumerate(p.ends):
            t_rung = time.perf_counter()
            summary = loop.train(
                p.algorithm, p.data, {**p.loop, "steps": end}, workdir / f"rung_{i}",
                members=([seeds[m] for m in alive], _prepare(i, p, alive, done, workdir),
                         p.ends[i - 1] if i else 0),
                record=experiment.record({**p.program, "search": {**search, "rung": i,
                                                                  "alive": alive}}),
                name=f"{p.config['experiment']} rung {i}", progress=progress, trackers=trackers)
            done.append({"rung": i, "steps": end, "members": alive,
                         "seconds": time.perf_counter() - t_rung, "per_member": summary["per_seed"]})
            report = _report(p.config, search, done, time.perf_counter() - t_start,
                             finished=i + 1 == len(p.ends))
            rundir.write_json(workdir / "search.json", report)  # after each rung: progress shows
            if i + 1 < len(p.ends):
                keep = keep_count(len(alive), eta)
                alive = [alive[j] for j in survivors(done[-1]["per_member"], p.metric, keep, p.mode)]
    return report


def _prepare(i: int, p: Plan, alive: list[int], done: list[dict], workdir: Path):
    """prepare(states) -> states for rung i (loop.train's members=): the first rung sets each
    member's values in its fresh state (dlcore.sweep.with_points); a later one carries the
    survivors on from the previous rung's final checkpoint."""
    if i == 0:
        return lambda states: sweep.with_points(states, [p.member_cfgs[m] for m in alive], p.keys,
                                                p.hyper)
    before = done[-1]
    positions = [before["members"].index(m) for m in alive]
    return lambda states: carried(p.algorithm, workdir / f"rung_{i - 1}", len(before["members"]),
                                  before["steps"], positions)


def carried(algorithm, directory: Path, members: int, step: int, positions: list[int]):
    """The states at `positions` ([M'] of the [members] stacked states) of the final checkpoint
    (at `step`) in a rung's run directory, as host arrays."""
    shapes = jax.eval_shape(jax.vmap(algorithm.init),
                            jax.random.split(jax.random.key(0), members))
    found = checkpoint.restore_latest(directory / "checkpoints", checkpoint.target(shapes))
    if found is None or found[1] != step:
        raise TrainingError(f"{directory} holds no checkpoint of its final step {step} to carry "
                            "the survivors on from; run the same command again (it trains that "
                            "rung to its end first), or pass --fresh")
    pick = np.asarray(positions)
    return jax.tree.map(lambda a: a[pick], found[0]["state"])


def _report(config: dict, search: dict, done: list[dict], seconds: float, finished: bool) -> dict:
    """search.json: every member's values, seed and validation metrics per rung reached; its test
    metrics at the last rung it reached (reported, never used to choose); the best by `metric`
    among the members of the last rung trained."""
    metric, points, seeds = search["metric"], search["members"], search["seeds"]
    members = [{"member": m, "seed": seeds[m], "hyper": points[m], "validation": [],
                "steps": 0, "test": {}} for m in range(len(points))]
    for rung in done:
        per = rung["per_member"]
        for p, m in enumerate(rung["members"]):
            scalars = {k: v[p] for k, v in per.items() if np.ndim(v[p]) == 0}
            members[m]["validation"].append({"rung": rung["rung"], "steps": rung["steps"], **{
                k: v for k, v in scalars.items() if k.startswith("validation_")}})
            members[m]["steps"] = rung["steps"]
            members[m]["test"] = {k: v for k, v in scalars.items() if k.startswith("test_")}
    last = done[-1]
    p = survivors(last["per_member"], metric, 1, search["mode"])[0]
    best = members[last["members"][p]]
    return {
        "experiment": config["experiment"],
        "finished": finished,
        "chosen_on": metric, "mode": search["mode"],
        "note": f"members are ranked and chosen on {metric} alone; test metrics are reported only",
        "best": {**best, "rung_directory": f"rung_{last['rung']}", "index_in_rung": p},
        "members": members,
        "rungs": [{k: r[k] for k in ("rung", "steps", "members", "seconds")} for r in done],
        "member_steps": sum(len(r["members"]) * (r["steps"] - (done[i - 1]["steps"] if i else 0))
                            for i, r in enumerate(done)),
        "seconds": seconds,
        "search": {k: v for k, v in search.items() if k != "members"},
        "config": experiment.record(config),
    }


def table(report: dict, limit: int = 10) -> str:
    """The best `limit` members as a markdown table: the furthest rung first, then by the
    validation metric there; the test metric beside it, for reporting."""
    metric, sign = report["chosen_on"], -1 if report["mode"] == "max" else 1
    test_name = "test_" + metric[len("validation_"):]
    keys = list(report["members"][0]["hyper"])
    steps = [r["steps"] for r in report["rungs"]]

    def last(m):
        v = m["validation"][-1][metric] if m["validation"] else None
        return sign * v if isinstance(v, (int, float)) and np.isfinite(v) else np.inf

    rows = sorted(report["members"], key=lambda m: (-m["steps"], last(m), m["member"]))
    lines = ["| member | seed | " + " | ".join(keys) + " | "
             + " | ".join(f"{metric} @{s}" for s in steps) + f" | {test_name} (reported) |",
             "|" + "---|" * (3 + len(keys) + len(steps))]
    for m in rows[:limit]:
        at = {v["steps"]: v[metric] for v in m["validation"]}
        lines.append(f"| {m['member']} | {m['seed']} | "
                     + " | ".join(_fmt(m["hyper"][k]) for k in keys) + " | "
                     + " | ".join(_fmt(at[s]) if s in at else "-" for s in steps)
                     + f" | {_fmt(m['test'].get(test_name))} |")
    if len(rows) > limit:
        lines.append(f"({len(rows) - limit} more members in search.json)")
    return "\n".join(lines)


def _fmt(v) -> str:
    return "-" if v is None else f"{v:.4g}" if isinstance(v, float) else str(v)
