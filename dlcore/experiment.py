"""The thin layer between a config and the loop: names become values here, and nowhere else.

    config = load("mnist1d/mlp", overrides=["optim.learning_rate=3e-3"])  # complete and checked
    algorithm, data = build(config)                       # the values the loop takes
    summary = run(config, "runs/mine", seeds=3)           # loop.train(algorithm, data, ...)
    r = load_run("runs/mine")                             # a run directory read back

A config is a dict of sections. `algorithm`, `model.name` and `data.name` resolve (dlcore.names) to
dlcore's code or yours; each section is completed from the defaults of the code that reads it (the
algorithm's `defaults()`, the model family's, the data source's, the loop's), and a key no code
reads is refused, naming the section's keys. Top-level keys: algorithm, seed, experiment,
published ({summary metric: {source: figure}}), import_paths (folders made importable: a config
file's own), changed (what differs from the experiment as published: overrides, --quick).
"""
from __future__ import annotations

import copy
import difflib
import inspect
import json
from pathlib import Path
from typing import Any, NamedTuple

from dlcore import config as config_lib, loop, names
from dlcore import data as data_lib, models, transfer
from dlcore.config import ConfigError, check
from dlcore.core import Algorithm, Data

TOP = ("algorithm", "seed", "experiment", "published", "import_paths", "changed", "sweep",
       "search")
# changing these does not change what a run computes, only how it is run and logged: a run with
# them changed still reproduces the experiment's published figures
BOOKKEEPING = ("loop.log_every", "loop.eval_every", "loop.checkpoint_every",
               "loop.keep_checkpoints", "loop.plots", "loop.watchdog_seconds", "loop.devices",
               "loop.steps_per_call", "loop.max_device_data_mb", "loop.data", "loop.seeds_in_one_program",
               "loop.sharding", "loop.model_parallel", "supervised.eval_batch_size",
               "lm.eval_batch_size", "lm.prompt", "lm.sample_length", "lm.temperature", "lm.top_k")


# --- what the algorithm is ---------------------------------------------------------------------------

class Maker(NamedTuple):
    make: Any          # make(config, data, steps) -> Algorithm
    defaults: dict | None  # {section: {key: default}} it reads; None: sections are not checked
    hyper: dict        # config keys its state carries as traced hyperparameters (dlcore.sweep)
    models: tuple = ("model",)  # its sections that name a model family (a GAN's generator and
    #                             discriminator): each completed from its family's defaults


def maker(name: Any) -> Maker:
    """What `algorithm` stands for: dlcore's module, yours, a make function or an Algorithm."""
    found = names.resolve(name, "algorithms", "algorithm", "make")
    if isinstance(found, Algorithm):
        return Maker(lambda config, data, steps: found, None, {})
    if hasattr(found, "make") and not inspect.isfunction(found):
        return Maker(found.make, found.defaults() if hasattr(found, "defaults") else None,
                     dict(getattr(found, "HYPER", {})), tuple(getattr(found, "MODELS", ("model",))))
    if callable(found):
        return Maker(found, None, {})
    raise ConfigError(f"config key 'algorithm': {names.reference(name)} is not an algorithm (a "
                      "module with make(), a make(config, data, steps) function or an Algorithm)")


# --- completing and overriding ---------------------------------------------------------------------

def complete(config: dict) -> dict:
    """Every section filled from the defaults of the code that reads it; ConfigError for a missing
    name, an unknown section or an unknown key."""
    check(isinstance(config, dict), "config", f"must be a dict of sections; got {config!r}")
    given = copy.deepcopy(config)
    _check_shape(given)
    names.import_paths(given.get("import_paths"))
    check("algorithm" in given, "algorithm", "the config names no algorithm")
    check("name" in given.get("data", {}), "data.name",
          "the config names no data source (a section 'data': {'name': 'mnist1d', ...})")
    algo = maker(given["algorithm"])
    seed = given.get("seed", 0)
    check(type(seed) is int, "seed", f"must be an integer; got {seed!r}")
    if algo.defaults is None:  # an algorithm without defaults(): its sections are unchecked
        sections = {k: dict(v) for k, v in given.items()
                    if isinstance(v, dict) and k not in TOP + ("data", "loop", "transfer")}
    else:
        sections = copy.deepcopy(algo.defaults)
    out = {"algorithm": given["algorithm"], "seed": seed,
           "experiment": given.get("experiment", "run")}
    for key in TOP[3:]:
        if key in given:
            out[key] = given[key]
    out["data"] = _merge("data", data_lib.defaults(given["data"]["name"]), given["data"])
    for section in algo.models:  # a family's section: the family's keys
        own = sections.get(section, {})
        if "name" in own:
            name = given.get(section, {}).get("name", own["name"])
            family = models.defaults(name)  # the algorithm's settings of its own family's keys
            sections[section] = {**family, **({k: v for k, v in own.items() if k in family}
                                              if name == own["name"] else {})}
    for section, defaults in sections.items():
        out[section] = _merge(section, defaults, given.get(section, {}))
    out["loop"] = _merge("loop", loop.defaults(), given.get("loop", {}))
    if "transfer" in given:  # any algorithm's; only when given, so other configs stay as they were
        out["transfer"] = _merge("transfer", transfer.defaults(), given["transfer"])
    for section in set(given) - set(out):
        hint = difflib.get_close_matches(section, list(out), n=1)
        raise ConfigError(f"config section '{section}' is not read by algorithm "
                          f"'{names.reference(given['algorithm'])}'"
                          + (f"; did you mean '{hint[0]}'?" if hint else "")
                          + f" (its sections: {', '.join(s for s in out if isinstance(out[s], dict))})")
    return out


def _check_shape(given: dict) -> None:
    """ConfigError unless every section is a dict and the top-level keys have their types: a
    string where a section belongs would otherwise fail deep inside the code that reads it."""
    for key, value in given.items():
        check(isinstance(key, str), repr(key), "config keys are strings")
        if key in TOP:
            continue
        if not isinstance(value, dict):
            raise ConfigError(f"config section '{key}' must be a dict of keys; got {value!r}")
        bad = [k for k in value if not isinstance(k, str)]
        check(not bad, key, f"its keys must be strings; got {bad[0]!r}" if bad else "")
    for key, kind, what in (("experiment", str, "a name"), ("published", dict,
                            "a dict {summary metric: {source: figure}}"),
                            ("import_paths", (list, tuple), "a list of folders"),
                            ("changed", list, "a list of overrides")):
        if key in given:
            check(isinstance(given[key], kind), key, f"must be {what}; got {given[key]!r}")
    paths = given.get("import_paths") or []
    bad = [p for p in paths if not isinstance(p, (str, Path))]
    check(not bad, "import_paths", f"must be a list of folders; got {bad[0]!r}" if bad else "")


def _merge(section: str, defaults: dict, given: dict) -> dict:
    if not isinstance(given, dict):
        raise ConfigError(f"config section '{section}' must be a dict of keys; got {given!r}")
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        hint = difflib.get_close_matches(unknown[0], list(defaults), n=1)
        raise ConfigError(f"config key '{section}.{unknown[0]}' is not read by this run's code"
                          + (f"; did you mean '{section}.{hint[0]}'?" if hint else "")
                          + f" ({section} has: {', '.join(sorted(defaults))})")
    return {**defaults, **given}


def apply_overrides(config: dict, overrides) -> dict:
    """`config` (complete) with each 'dotted.key=value' applied and type-checked against the key's
    current value. A new `model.name`, `data.name` or `algorithm` is applied first and its code's
    defaults fill the section (the values of keys the old and new sections share are kept), so
    `--set data.name=npz --set data.path=x.npz` works in either order."""
    overrides = list(overrides)
    algorithms = [config["algorithm"]] + [o.split("=", 1)[1].strip() for o in overrides
                                          if o.split("=", 1)[0].strip() == "algorithm"]
    model_sections = {s for a in algorithms for s in maker(a).models}  # old and new sections
    switches = [o for o in overrides if o.split("=", 1)[0].strip() in
                ("algorithm", "data.name", *(f"{s}.name" for s in model_sections))]
    config = copy.deepcopy(config)
    for item in switches:
        key, _, value = item.partition("=")
        key, value = key.strip(), value.strip()
        if key == "algorithm":  # its sections, keeping the values of keys it shares
            fresh = complete({**{k: v for k, v in config.items() if k in TOP or k == "data"},
                              "algorithm": value})
            for section, keys in fresh.items():
                if isinstance(keys, dict) and section not in TOP and section in config:
                    fresh[section] = {**keys, **{k: v for k, v in config[section].items()
                                                 if k in keys}}
            for s in maker(value).models:  # the same model, whichever algorithm trains it
                if "name" in fresh.get(s, {}) and "name" in config.get(s, {}):
                    fresh[s] = config[s]
            config = complete(fresh)
            continue
        section = key.split(".")[0]
        old = config.get(section, {})
        if "name" not in old:
            raise ConfigError(f"config key '{key}': algorithm '{names.reference(config['algorithm'])}'"
                              f" builds its own network; its {section} section has "
                              f"{', '.join(sorted(old))}")
        fresh = (data_lib.defaults(value) if section == "data" else models.defaults(value))
        config[section] = {**fresh, **{k: v for k, v in old.items() if k in fresh and k != "name"}}
    rest = [o for o in overrides if o not in switches]
    config = config_lib.apply_overrides(config, rest)
    changed = [o.strip() for o in overrides if o.split("=", 1)[0].strip() not in BOOKKEEPING]
    if changed:
        config["changed"] = config.get("changed", []) + changed
    return complete(config)


def load(name_or_path: str, quick: bool = False, overrides=()) -> dict:
    """An experiment's config (dlcore.config.load), completed, with `overrides` applied. A config
    file's own folder is importable from it, and a relative data.path is read from there."""
    raw = config_lib.load(name_or_path, quick=quick)
    folder = raw.pop("config_dir", None)
    if folder:
        raw["import_paths"] = [folder, *raw.get("import_paths", [])]
    if quick:
        raw["changed"] = ["--quick"]
    _absolute_path(raw.get("data", {}), folder or Path.cwd())  # the file's: from its folder
    config = apply_overrides(complete(raw), overrides)
    _absolute_path(config["data"], Path.cwd())  # a --set data.path: from where it was typed
    # a source run lives where runs are written (runs/ under the current directory), not beside
    # the config file, so a relative transfer.init_from is from here wherever it was written
    _absolute_path(config.get("transfer"), Path.cwd(), "init_from")
    return config


def _absolute_path(data: dict | None, base, key: str = "path") -> None:
    if not isinstance(data, dict):  # complete() names the mistake
        return
    path = data.get(key)
    if isinstance(path, str) and path and not Path(path).expanduser().is_absolute():
        data[key] = str(Path(base) / Path(path).expanduser())


def published(config: dict) -> dict:
    """The experiment's published figures, or {} when the run's settings differ from the protocol
    they were published under (overrides, --quick): a figure beside another protocol misleads."""
    return {} if config.get("changed") else dict(config.get("published") or {})


# --- values ------------------------------------------------------------------------------------------

def build(config: dict) -> tuple[Algorithm, Data]:
    """(algorithm, data) of a config (completed first); ConfigError for anything impossible,
    before any compile."""
    config = complete(config)
    steps = config["loop"]["steps"]  # make() is given it (the rest is the host loop's to check:
    # values built here also run outside it, in rl.make_train)
    check(type(steps) is int and steps > 0, "loop.steps", f"must be a positive integer; got {steps!r}")
    data = data_lib.load(config["data"])
    algorithm = maker(config["algorithm"]).make(config, data, config["loop"]["steps"])
    if not isinstance(algorithm, Algorithm):
        raise ConfigError(f"config key 'algorithm': make() returned {type(algorithm).__name__}, "
                          "not a dlcore Algorithm")
    return with_transfer(algorithm, config), data


def with_transfer(algorithm: Algorithm, config: dict) -> Algorithm:
    """`algorithm` starting from the run config['transfer'] names (dlcore.transfer), read with
    load_run (nothing in its directory changes); unchanged without one."""
    if not transfer.enabled(config):
        return algorithm
    path, seed, reinit = transfer.validate(config["transfer"])
    where, index = transfer.locate(path, seed)
    source = load_run(where, index)
    return transfer.wrap(algorithm, transfer.source(source.final, path, seed, source.step), reinit)


def record(config: dict) -> dict:
    """What a run directory's config.json keeps: the config, with the name each object passed from
    Python imports under (dlcore.names.reference) in its place."""
    def plain(x):
        if isinstance(x, dict):
            return {str(k): plain(v) for k, v in x.items()}
        if isinstance(x, (list, tuple)) and type(x) in (list, tuple):
            return [plain(v) for v in x]
        if x is None or isinstance(x, (str, bool, int, float)):
            return x
        if hasattr(x, "tolist") and hasattr(x, "dtype"):  # a number of numpy or JAX
            return x.tolist()
        return names.reference(x)  # a module, class, function, Algorithm, Data, ...
    return plain(config)


def run(config: dict, workdir: str | Path, seeds: int = 1, progress: bool = True,
        fresh: bool = False, trackers: str | list[str] | tuple[str, ...] = ()) -> dict:
    """Train a complete config in `workdir` (resuming what is there, or with `fresh` moving it
    aside once the config proved good); returns the summary. trackers: experiment trackers
    ('wandb', 'mlflow': dlcore.trackers) that also get the run.

    Several seeds run in one program, vmapped, unless loop.seeds_in_one_program is false: then one
    after another, each in workdir/seed_<s>, and the summary aggregates them."""
    check(type(seeds) is int and seeds >= 1, "--seeds", f"must be >= 1; got {seeds}")
    config = complete(config)
    algorithm, data = build(config)  # the data is checked before anything is written
    config = transfer.pin(config, algorithm)  # config.json names the source's step and digest
    if seeds > 1 and not config["loop"]["seeds_in_one_program"]:
        return _sequential_seeds(config, Path(workdir), seeds, progress, fresh, algorithm, data,
                                 trackers)
    return _train(config, workdir, algorithm, data, seeds, progress, fresh, trackers)


def _train(config: dict, workdir, algorithm: Algorithm, data: Data, seeds: int,
           progress: bool, fresh: bool = False, trackers=()) -> dict:
    return loop.train(algorithm, data, config["loop"], workdir, seeds, seed=config["seed"],
                      record=record(config), name=config["experiment"], progress=progress,
                      fresh=fresh, summary_extra=_summary_extra(config), trackers=trackers)


def _summary_extra(config: dict) -> dict:
    """What summary.json records of a config: the published figures it compares to (none when the
    protocol was changed, and what changed it) and the config itself."""
    return {"published": published(config),
            **({"changed": config["changed"]} if config.get("changed") else {}),
            "config": record(config)}


def _sequential_seeds(config: dict, workdir: Path, seeds: int, progress: bool,
                      fresh: bool, algorithm: Algorithm, data: Data, trackers=()) -> dict:
    """Seeds one after another, each in workdir/seed_<s>; the algorithm and data are built once
    (a seed is an argument of init, not of make)."""
    import shutil
    import numpy as np
    from dlcore import rundir
    seeds_record = {**record(config), "seeds": [config["seed"] + i for i in range(seeds)]}
    loop.validate(config["loop"])  # as loop.train would, before the directory is made
    new = not workdir.exists()
    try:  # another seed count here is refused before any work
        with rundir.claimed(workdir, seeds_record, fresh):
            runs = []
            for i in range(seeds):
                cfg = {**copy.deepcopy(config), "seed": config["seed"] + i}
                runs.append(_train(cfg, workdir / f"seed_{cfg['seed']}", algorithm, data, 1,
                                   progress, trackers=trackers))
            rundir.write_json(workdir / "config.json", seeds_record)
            named = {k: [r["metrics"][k] for r in runs] for k in runs[0]["metrics"]}
            rates = [r["steps_per_second"] for r in runs if r["steps_per_second"]]
            summary = rundir.summary(config["experiment"], named,
                                     [config["seed"] + i for i in range(seeds)], True, {
                "steps": config["loop"]["steps"], "seconds": sum(r["seconds"] for r in runs),
                "steps_per_second": float(np.mean(rates)) if rates else None,
                "headline": runs[0]["headline"], **_summary_extra(config)})
            summary["seeds_in_one_program"] = False
            if "early_stopping" in runs[0]:
                summary["early_stopping"] = {k: [r["early_stopping"][k] for r in runs]
                                             for k in ("stopped_at_step", "best_step")}
            rundir.write_json(workdir / "summary.json", summary)
    except ConfigError:  # the first seed refused before any work: leave no directory behind
        if new and workdir.is_dir() and {p.name for p in workdir.iterdir()} <= {".lock"}:
            shutil.rmtree(workdir)
        raise
    return summary


# --- a run directory read back ---------------------------------------------------------------------

class Run(NamedTuple):
    config: dict
    algorithm: Algorithm
    data: Data
    init: Any        # the state `init` gave this seed
    final: Any       # the newest checkpoint's state (the best one when early stopping)
    step: int
    metrics: dict    # summary.json's final metrics ({} before the run ended)
    history: Any = None  # () -> [(step, state)] at every kept checkpoint, oldest first

    @property
    def model(self):
        """The dlcore.models.Model of a supervised run (None for algorithms without one)."""
        return (self.algorithm.extras or {}).get("model")


def load_run(workdir: str | Path, seed_index: int = 0) -> Run:
    """Rebuild a finished (or interrupted) run from its directory, without changing anything there.

    Seeds trained in one program are stored stacked; `seed_index` picks one. Seeds trained one
    after another live in workdir/seed_<s>: pass that directory."""
    import jax
    import jax.numpy as jnp
    from dlcore import checkpoint, early_stopping
    from dlcore.core import split_keys
    workdir = Path(workdir)
    if not (workdir / "config.json").exists():
        raise ConfigError(f"{workdir} is not a run directory (no config.json)")
    saved = _read_json(workdir / "config.json")
    if "algorithm" not in saved:
        raise ConfigError(f"{workdir} holds a run made from Python values (loop.train) without a "
                          "config; only its learning curves can be drawn")
    named = [f"{k}.name" for k, v in saved.items() if isinstance(v, dict) and "name" in v]
    for key in ("algorithm", *named):  # model sections (a GAN has two), data, optim
        section, _, sub = key.partition(".")
        node = saved.get(section)
        ref = (node.get(sub) if isinstance(node, dict) else None) if sub else node
        if isinstance(ref, str) and not names.importable(ref):
            raise ConfigError(f"{workdir}: its {key} is {ref}; code defined in a notebook or "
                              "script cannot be imported again (put it in a module)")
    seeds = saved.get("seeds", [saved.get("seed", 0)])
    check(isinstance(seeds, list) and bool(seeds) and all(type(s) is int for s in seeds), "seeds",
          f"{workdir / 'config.json'} records seeds {seeds!r}, not a list of integers")
    check(type(seed_index) is int and 0 <= seed_index < len(seeds), "seed_index",
          f"{workdir} holds {len(seeds)} seed(s); got index {seed_index!r}")
    config = complete({k: v for k, v in saved.items() if k != "seeds"})
    algorithm, data = build(config)
    summary_path = workdir / "summary.json"
    metrics = _read_json(summary_path).get("metrics", {}) if summary_path.exists() else {}
    metrics = metrics if isinstance(metrics, dict) else {}
    keys = jnp.stack([split_keys(jax.random.key(s))["init"] for s in seeds])
    inits = jax.jit(jax.vmap(algorithm.init))(keys)
    one = len(seeds) == 1
    pick = (lambda tree, i: jax.tree.map(lambda a: a[i], tree))
    states = pick(inits, 0) if one else inits
    stopper = (early_stopping.init(states, None if one else len(seeds), config["loop"]["best_mode"])
               if config["loop"]["early_stopping_patience"] else None)
    restored = checkpoint.restore_latest(workdir / "checkpoints", checkpoint.target(states, stopper))
    if restored is None:
        raise ConfigError(f"{workdir} has no checkpoint to report on")
    tree, step = restored
    final = tree["early_stopping"]["state"] if "early_stopping" in tree else tree["state"]
    final = final if one else pick(final, seed_index)

    def history() -> list:
        """[(step, state)] of this seed at every kept checkpoint, oldest first."""
        return [(s, t["state"] if one else pick(t["state"], seed_index)) for t, s in
                checkpoint.restore_all(workdir / "checkpoints", checkpoint.target(states, stopper))]
    return Run(config, algorithm, data, pick(inits, seed_index), final, step, metrics, history)


def classifier_split(workdir: str | Path, split: str, needs: str) -> tuple[Run, Any, Any]:
    """(run, x [n, *shape] float, y [n] int) of split `split` of a supervised classification run
    read back with load_run (dlcore explain and attack); ConfigError saying what `needs` it
    (e.g. 'attacks') for any other run."""
    import numpy as np
    run = load_run(workdir)
    spec = run.data.spec
    arrays = run.data.splits.get(split)
    x = arrays.get("x") if isinstance(arrays, dict) else None
    y = arrays.get("y") if isinstance(arrays, dict) else None
    if (run.model is None or spec.get("task") != "classification" or x is None or y is None
            or not hasattr(x, "dtype") or not np.issubdtype(np.asarray(x).dtype, np.floating)):
        raise ConfigError(f"{workdir}: {needs} need a supervised classification run on arrays of "
                          f"examples with a '{split}' split; this one is algorithm "
                          f"'{run.config['algorithm']}' on task '{spec.get('task')}'"
                          + ("" if split in run.data.splits else
                             f" (its splits: {', '.join(run.data.splits)})"))
    return run, x, y


def _read_json(path: Path) -> dict:
    """A run directory's JSON object; ConfigError naming the file when it is not one (a torn or
    hand-edited file)."""
    try:
        value = json.loads(path.read_bytes().decode("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ConfigError(f"{path} is unreadable ({type(e).__name__}: {e})") from None
    if not isinstance(value, dict):
        raise ConfigError(f"{path} holds a JSON {type(value).__name__}, not an object")
    return value
