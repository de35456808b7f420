"""Transfer learning: a run that starts from another run's trained parameters.

    "transfer": {"init_from": "runs/mnist_digits/cnn_0to4",  # the source run directory
                 "init_seed": 0,                             # which of its seeds
                 "reinit": ["head"]}                         # keep these freshly initialised
    dlcore run mnist_digits/transfer_5to9 [--init-from RUN] [--init-seed S]

With it, an algorithm's `init(key)` is wrapped (`wrap`): the fresh state's `params` (and its
`model_state`, e.g. batch-norm statistics) take the source's values leaf by leaf, matched by path
(`graft`); everything else of the state (step, optimizer state, an algorithm's own extras) stays
as `init` made it, so the run trains exactly as a fresh one would from those parameters. Leaves
that `reinit` names (patterns as for `optim.freeze`: dlcore.optim.select) keep their fresh values:
a new head. Any other leaf must exist in the source with the same shape and dtype, or the run is
refused naming the path and both shapes; a new head is never chosen silently. Source leaves the
new model lacks are left out; their paths are recorded (`source.left_out`). Every seed of the new
run starts from the one source seed (vmapped seeds differ in their fresh leaves and data order).

The source is read with dlcore.experiment.load_run, which changes nothing in its directory. A
relative init_from is a path from the current directory (where `dlcore run` writes its runs/),
written absolute into the config by `dlcore run` and experiment.load. The new run's config.json
records the source (`source`: path, seed, step, and a SHA-256 of the grafted arrays), so resuming
or re-running in that directory from another source, or after the source changed, is refused by
the run directory's config check (dlcore.rundir), and a resumed run continues from its own
checkpoint exactly. Reading such a run back (load_run: `dlcore report`, `explain`, `attack`)
rebuilds its init, so its source must still be there.

This module holds the pure parts; experiment.build reads the source and calls `wrap`.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, NamedTuple

import jax
import numpy as np

from dlcore import optim
from dlcore.config import ConfigError, check
from dlcore.core import Algorithm


def defaults() -> dict:
    """The `transfer` section. init_from None or '': no source (a fresh run); source: filled by
    dlcore when the run starts (what config.json records of the source), never by hand."""
    return {"init_from": None, "init_seed": 0, "reinit": None, "source": None}


def enabled(config: dict) -> bool:
    """Whether a complete config starts from another run."""
    return bool((config.get("transfer") or {}).get("init_from"))


def validate(cfg: dict) -> tuple[Path, int, tuple[str, ...]]:
    """(source directory, source seed, reinit patterns) of a `transfer` section; ConfigError for
    a value of the wrong kind or a directory that holds no run."""
    path, seed = cfg["init_from"], cfg["init_seed"]
    check(isinstance(path, (str, Path)), "transfer.init_from",
          f"must be a run directory; got {path!r}")
    check(type(seed) is int, "transfer.init_seed", f"must be an integer seed; got {seed!r}")
    reinit = optim.patterns(cfg["reinit"], "transfer.reinit")
    path = Path(path).expanduser()
    if not (path / "config.json").is_file():
        raise ConfigError(f"config key 'transfer.init_from': {path} is not a run directory (no "
                          "config.json); train the source run first")
    return path, seed, reinit


def locate(path: Path, seed: int) -> tuple[Path, int]:
    """(directory, seed index) for dlcore.experiment.load_run of seed `seed` of the run in
    `path`: seeds trained in one program are stacked in it, seeds trained one after another live
    in path/seed_<s>. ConfigError naming the seeds there are."""
    try:
        saved = json.loads((path / "config.json").read_text())
        seeds = saved.get("seeds", [saved.get("seed", 0)])
    except (OSError, UnicodeDecodeError, ValueError, AttributeError) as e:
        raise ConfigError(f"config key 'transfer.init_from': {path}/config.json is unreadable "
                          f"({type(e).__name__})") from None
    check(isinstance(seeds, list) and seed in seeds, "transfer.init_seed",
          f"the run in {path} has seeds {seeds}; got {seed}")
    own = path / f"seed_{seed}"
    if not (path / "checkpoints").exists() and (own / "config.json").is_file():
        return own, 0
    return path, seeds.index(seed)


class Source(NamedTuple):
    """What a run starts from: one seed's trained `params` and `model_state` ({} when none)
    and where they came from (`record`: path, seed, step, digest)."""
    params: Any
    model_state: Any
    record: dict


def parts(state, what: str) -> tuple[Any, Any]:
    """(params, model_state) of a state with those fields (a NamedTuple such as
    supervised.State); ConfigError when it has no `params`."""
    if not hasattr(state, "params") or not hasattr(state, "_replace"):
        raise ConfigError(f"config key 'transfer.init_from': the {what} state "
                          f"({type(state).__name__}) has no 'params' field to start from")
    return state.params, getattr(state, "model_state", {})


def source(state, path: Path, seed: int, step: int) -> Source:
    """The Source of a restored state of the source run (its `final` state at `step`)."""
    params, model_state = jax.device_get(parts(state, "source run's"))
    return Source(params, model_state, {"path": str(path), "seed": seed, "step": int(step),
                                        "digest": digest((params, model_state))})


def digest(tree) -> str:
    """SHA-256 of a tree's leaf paths, dtypes, shapes and bytes: the same values, the same
    digest."""
    h = hashlib.sha256()
    for p, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        a = np.ascontiguousarray(np.asarray(leaf))
        h.update(f"{optim.path_name(p)}:{a.dtype}:{a.shape};".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def graft(fresh, source_tree, reinit: tuple[str, ...], what: str = "parameter",
          strict: bool = True):
    """`fresh` (a freshly initialised tree) with every leaf taken from `source_tree` at the same
    path, except those `reinit` names, which keep their fresh values. Leaves keep their shapes:
    [*shape] from the source for [*shape] fresh.

    ConfigError for a leaf not named by `reinit` that the source lacks or holds with another
    shape or dtype, and (strict) for a reinit pattern that names no leaf of `fresh`."""
    keep = optim.select(reinit, fresh, "transfer.reinit", strict)
    found = {optim.path_name(p): leaf
             for p, leaf in jax.tree_util.tree_flatten_with_path(source_tree)[0]}

    def take(path, leaf, keep_fresh):
        if keep_fresh:
            return leaf
        name = optim.path_name(path)
        if name not in found:
            raise ConfigError(f"config key 'transfer.init_from': the source run has no {what} "
                              f"'{name}'; name it in transfer.reinit to keep its fresh "
                              f"initialisation (the source has: {_listed(found)})")
        old = found[name]
        if tuple(old.shape) != tuple(leaf.shape) or old.dtype != leaf.dtype:
            raise ConfigError(f"config key 'transfer.init_from': {what} '{name}' is "
                              f"{old.dtype}{list(old.shape)} in the source run but "
                              f"{leaf.dtype}{list(leaf.shape)} here; name it in "
                              "transfer.reinit to keep its fresh initialisation")
        return jax.numpy.asarray(old)
    return jax.tree_util.tree_map_with_path(take, fresh, keep)


def left_out(fresh, source_tree) -> list[str]:
    """Paths of the source's leaves that `fresh` has no place for."""
    own = {optim.path_name(p) for p, _ in jax.tree_util.tree_flatten_with_path(fresh)[0]}
    return [optim.path_name(p) for p, _ in jax.tree_util.tree_flatten_with_path(source_tree)[0]
            if optim.path_name(p) not in own]


def wrap(algorithm: Algorithm, src: Source, reinit: tuple[str, ...]) -> Algorithm:
    """`algorithm` whose init(key) starts from `src` (module docstring); the rest unchanged.
    Checked at once on an abstract init (nothing computes): a mismatch is a ConfigError here,
    before any run directory is touched. extras['transfer'] is what config.json records."""
    def init(key):
        state = algorithm.init(key)
        params, model_state = parts(state, "new run's")
        grafted = {"params": graft(params, src.params, reinit)}
        if hasattr(state, "model_state"):  # batch-norm statistics travel with their layers
            grafted["model_state"] = graft(model_state, src.model_state, reinit,
                                           "model state entry", strict=False)
        return state._replace(**grafted)

    fresh = jax.eval_shape(algorithm.init, jax.random.key(0))
    jax.eval_shape(init, jax.random.key(0))
    params, model_state = parts(fresh, "new run's")
    record = {**src.record, "left_out": left_out(params, src.params)
              + left_out(model_state, src.model_state)}
    return algorithm._replace(init=init, extras={**(algorithm.extras or {}), "transfer": record})


def pin(config: dict, algorithm: Algorithm) -> dict:
    """`config` with transfer.source set to what `algorithm` (from `wrap`) starts from, for
    config.json; unchanged for a run without a source."""
    record = (algorithm.extras or {}).get("transfer")
    if not enabled(config) or record is None:
        return config
    return {**config, "transfer": {**config["transfer"], "source": record}}


def with_flags(config: dict, init_from: str | None, init_seed: int | None) -> dict:
    """A complete config with `dlcore run --init-from RUN [--init-seed S]` applied: the transfer
    section made or changed (init_from absolute, from the current directory), and the flags
    noted in `changed` (another source is another protocol than the experiment's)."""
    if init_from is None and init_seed is None:
        return config
    own = {**defaults(), **(config.get("transfer") or {})}
    if init_from is not None:
        check(bool(init_from), "--init-from", "needs a run directory")
        own["init_from"] = str(Path(init_from).expanduser().absolute())
    if init_seed is not None:
        own["init_seed"] = init_seed
    check(bool(own["init_from"]), "--init-seed", "needs a source run: --init-from RUN (or the "
          "experiment's transfer.init_from)")
    flags = ([f"--init-from={own['init_from']}"] if init_from is not None else []) + \
        ([f"--init-seed={init_seed}"] if init_seed is not None else [])
    return {**config, "transfer": own, "changed": [*config.get("changed", []), *flags]}


def _listed(found: dict) -> str:
    names = list(found)
    return ", ".join(names[:30]) + (f" and {len(names) - 30} more" if len(names) > 30 else "") \
        or "nothing"
