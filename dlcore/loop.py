"""The host loop: one linear function that drives any algorithm's pure `init`/`step`/`evaluate`.

    run(config, workdir, seeds=1) -> summary

1. check the config and the run directory, build data and algorithm (nothing compiled yet);
2. resume from the newest good checkpoint in `workdir/checkpoints`, or `init` fresh;
3. call the jitted step (carry donated; `steps_per_call` steps per call with `lax.scan`), the batch
   taken on the device from the step number, the key `fold_in(step_key, step)`: a resumed run
   replays the uninterrupted one exactly;
4. pull metrics to the host only at log, eval and checkpoint steps; stop naming the first step whose
   metrics were NaN/Inf, before any checkpoint of that step is written;
5. evaluate and checkpoint on a schedule; end with `summary.json` and PNG learning curves.

Several seeds run as one program (`jax.vmap` over the seed axis of the state) or one after another
(`loop.seeds_in_one_program`); which is faster depends on the model and backend: see
benchmarks/seeds.py. `members=` runs any list of members in one program, each with its own seed and
fresh state (dlcore.sweep: grid points x seeds). The loop knows nothing of any one algorithm.
"""
from __future__ import annotations

import json
import os
import platform
import sys
import time
from functools import partial
from pathlib import Path
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from dlcore import algorithms, checkpoint, data as data_lib, parallel, rl, writers
from dlcore.config import ConfigError, check, flatten, one_of


class TrainingError(RuntimeError):
    """Training cannot go on (NaN/Inf metrics); the command line exits with status 1."""


def defaults(**overrides) -> dict:
    """The `loop` section with every key present."""
    cfg = dict(steps=1000, log_every=100, eval_every=500, checkpoint_every=500, keep_checkpoints=2,
               best_metric="test/accuracy", best_mode="max", steps_per_call=1,
               seeds_in_one_program=True, devices=1, eval_batch_size=4096,
               max_device_data_mb=4096, plots=True, early_stopping_patience=0,
               watchdog_seconds=1800)
    unknown = set(overrides) - set(cfg)
    assert not unknown, f"unknown loop keys {unknown}"
    cfg.update(overrides)
    return cfg


def validate(cfg: dict) -> None:
    """ConfigError for any impossible loop setting."""
    for key in ("steps", "log_every", "eval_every", "checkpoint_every", "keep_checkpoints",
                "steps_per_call", "eval_batch_size"):
        check(isinstance(cfg[key], int) and cfg[key] > 0, f"loop.{key}",
              f"must be a positive integer; got {cfg[key]}")
    k = cfg["steps_per_call"]
    for key in ("steps", "log_every", "eval_every", "checkpoint_every"):
        check(cfg[key] % k == 0, f"loop.{key}",
              f"must be a multiple of loop.steps_per_call ({k}); got {cfg[key]}")
    one_of(cfg["best_mode"], "loop.best_mode", ("max", "min"))
    wd = cfg.get("watchdog_seconds", 1800)
    check(isinstance(wd, (int, float)) and wd > 0, "loop.watchdog_seconds",
          f"must be > 0 (seconds without progress before a run is ended); got {wd}")
    patience = cfg.get("early_stopping_patience", 0)
    check(type(patience) is int and patience >= 0, "loop.early_stopping_patience",
          f"must be an integer >= 0 (0 = off); got {patience}")
    if patience:  # choosing the stopping point on the test set would leak it into the result
        check(str(cfg["best_metric"]).startswith("validation/"), "loop.best_metric",
              f"early stopping needs a validation metric (e.g. validation/accuracy, with "
              f"data.validation_fraction > 0); got '{cfg['best_metric']}'")


# --- the run directory ----------------------------------------------------------------------------

def prepare_workdir(workdir: Path, config: dict) -> None:
    """Create the run directory, prove it writable, and refuse to resume a different experiment."""
    try:
        workdir.mkdir(parents=True, exist_ok=True)
        probe = workdir / ".write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as e:
        raise ConfigError(f"run directory {workdir} is not writable ({e.strerror})") from None
    saved = workdir / "config.json"
    if saved.exists():
        old = flatten(json.loads(saved.read_text()))
        new = flatten(json.loads(json.dumps(config)))
        changed = sorted(k for k in set(old) | set(new)
                         if old.get(k) != new.get(k) and not k.startswith("loop."))
        if changed:
            raise ConfigError(
                f"run directory {workdir} holds a run with a different config ({', '.join(changed)});"
                " choose another --workdir, or pass --fresh to start over there")
    _write_json(saved, config)


def _write_json(path: Path, obj) -> None:
    tmp = Path(f"{path}.tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=_jsonable) + "\n")
    os.replace(tmp, path)


def _jsonable(x):
    if isinstance(x, (np.generic, jax.Array)):
        return np.asarray(x).tolist()
    if isinstance(x, tuple):
        return list(x)
    raise TypeError(f"{type(x).__name__} is not JSON serialisable")


# --- the loop ----------------------------------------------------------------------------------------

def run(config: dict, workdir: str | Path, seeds: int = 1, progress: bool = True,
        members: tuple[list[int], Callable] | None = None) -> dict:
    """Train `config` in `workdir` (resuming what is there) and return the summary it writes.

    members: (each member's seed, prepare(states) -> states): those members vmapped in one program
    (seed values may repeat), `prepare` applied to their fresh states before training or restoring
    (dlcore.sweep sets each member's `hyper`); summary['per_seed'] is then per member."""
    t_start = time.perf_counter()
    workdir = Path(workdir)
    check(isinstance(seeds, int) and seeds >= 1, "--seeds", f"must be >= 1; got {seeds}")
    cfg = config["loop"]
    validate(cfg)
    if seeds > 1 and not cfg["seeds_in_one_program"] and members is None:
        return _run_sequential_seeds(config, workdir, seeds, progress, t_start)

    if data_lib.is_env(config["data"]) and not rl.guard():  # before JAX starts, if it can
        print("dlcore: warning: JAX started before dlcore could turn off XLA's concurrency-"
              "optimised CPU scheduler, which deadlocks some RL programs; set XLA_FLAGS="
              f"{rl.GUARD_FLAG} before importing jax (README: 'A deadlock guard'). The "
              "watchdog ends the run if it hangs.", file=sys.stderr, flush=True)
    # 1. build everything on the host; every config error surfaces here, before any compile.
    splits, spec = data_lib.load(config["data"])
    algorithm = algorithms.get(config["algorithm"]).make(config, spec)
    mesh = parallel.data_mesh(cfg["devices"])
    if spec["kind"] == "env":  # the environments live inside the step, on one device
        check(cfg["devices"] == 1, "loop.devices", "RL runs on one device (train several seeds "
              f"in one program with --seeds instead); got {cfg['devices']}")
    else:
        parallel.check_divisible(config["data"]["batch_size"], mesh)
    sample = data_lib.sampler(config["data"], spec)
    nbytes = sum(a.nbytes for a in jax.tree.leaves(splits))
    check(nbytes <= cfg["max_device_data_mb"] * 2**20, "loop.max_device_data_mb",
          f"the data set takes {nbytes / 2**20:.0f} MB, above the limit for keeping it on the device")
    _check_best_metric(cfg, algorithm, splits)
    prepare_workdir(workdir, config)

    seed_list = list(members[0]) if members else [config["seed"] + i for i in range(seeds)]
    seeds = len(seed_list)
    vmapped = seeds > 1 or members is not None
    roots = [jax.random.key(s) for s in seed_list]
    keys = jax.tree.map(lambda *k: jnp.stack(k), *[split_keys(r) for r in roots]) if vmapped \
        else split_keys(roots[0])
    over_seeds = (lambda f, *a, **kw: jax.vmap(f, *a, **kw)) if vmapped else (lambda f, **kw: f)

    # 2. fresh state, or the newest good checkpoint.
    device_data = parallel.put_replicated(splits, mesh)  # one copy from host to the devices
    states = jax.jit(over_seeds(algorithm.init))(keys["init"])
    if members:  # before the checkpoint target is built: a restored state replaces this one
        states = members[1](states)
    states = parallel.put_replicated(states, mesh)
    mngr = checkpoint.manager(workdir / "checkpoints", cfg["keep_checkpoints"],
                              cfg["best_metric"] or None, cfg["best_mode"])
    patience = cfg["early_stopping_patience"]
    target = checkpoint_target(states, cfg, seeds if vmapped else None)
    stopper = target.get("early_stopping")
    restored = checkpoint.restore_newest_good(mngr, target)
    start = 0
    if restored is not None:
        tree, start = restored
        states = parallel.put_replicated(tree["state"], mesh)
        if stopper:
            stopper = {**tree["early_stopping"],
                       "state": parallel.put_replicated(tree["early_stopping"]["state"], mesh)}
        print(f"resumed from step {start} in {workdir}", flush=True)
    writers.truncate_jsonl(workdir / "metrics.jsonl", start)

    # 3. the compiled step: k updates per call, metrics summed on the device.
    total, k = cfg["steps"], cfg["steps_per_call"]
    def one_update(state, acc, t, data, key_data, key_step):
        batch = sample(data["train"], t, key_data)
        batch = parallel.constrain_batch(batch, mesh)
        state, metrics = algorithm.step(state, batch, jax.random.fold_in(key_step, t))
        # Metrics are summed as one vector: on a CPU every extra output buffer of a small step
        # costs measurable time (a dict of sums made mnist1d/mlp ~20 % slower). The first step
        # with a non-finite metric is remembered (their sum is finite only if each is).
        vec = jnp.stack([metrics[n].astype(jnp.float32) for n in names])
        bad = (acc["bad"] < 0) & ~jnp.isfinite(jnp.sum(vec))
        return state, {"sum": acc["sum"] + vec, "bad": jnp.where(bad, t, acc["bad"])}

    update = over_seeds(one_update, in_axes=(0, 0, None, None, 0, 0))

    @partial(jax.jit, donate_argnums=0)
    def train_call(carry, data, key_data, key_step):
        def body(carry, _):
            state, acc, t = carry
            state, acc = update(state, acc, t, data, key_data, key_step)
            return (state, acc, t + 1), None
        if k == 1:
            return body(carry, None)[0]
        return jax.lax.scan(body, carry, None, length=k)[0]

    evaluate = jax.jit(over_seeds(algorithm.evaluate, in_axes=(0, None, 0)))

    metric_shapes = jax.eval_shape(
        lambda s: algorithm.step(s, sample(splits["train"], 0, jax.random.key(0)),
                                 jax.random.key(0))[1],
        states if not vmapped else jax.tree.map(lambda a: a[0], states))
    names = sorted(metric_shapes)
    check(all(m.shape == () for m in metric_shapes.values()), "algorithm",
          f"step metrics must be scalars; got shapes { {n: m.shape for n, m in metric_shapes.items()} }")

    def zero_acc():
        lead = (seeds,) if vmapped else ()
        return {"sum": jnp.zeros(lead + (len(names),), jnp.float32),
                "bad": jnp.full(lead, -1, jnp.int32)}

    # 4./5. the loop itself.
    tb = writers.TensorBoardWriter(workdir / "tensorboard")
    bar = writers.Progress(total, start, label=f"{config['experiment']} ") if progress else None
    carry = (states, zero_acc(), jnp.asarray(start, jnp.int32))
    t, t_flushed, last_saved, eval_metrics = start, start, (start if restored else None), {}
    t_loop, steps_timed = None, 0
    stopped = bool(stopper) and _patience_spent(stopper, patience)
    watchdog = Watchdog(cfg.get("watchdog_seconds", 1800),
                        partial(_hung, workdir=workdir, saved=lambda: last_saved))
    try:
        while t < total and not stopped:
            carry = train_call(carry, device_data, keys["data"], keys["step"])
            t += k
            if t_loop is None:  # the first call compiles; time the rest
                jax.block_until_ready(carry)
                t_loop, steps_timed = time.perf_counter(), t
                watchdog.beat(t)
            is_eval = t % cfg["eval_every"] == 0 or t == total
            is_ckpt = t % cfg["checkpoint_every"] == 0 or t == total
            if not (t % cfg["log_every"] == 0 or is_eval or is_ckpt):
                continue
            states, acc, t_dev = carry
            acc = jax.device_get(acc)  # waits for the device: progress, or a hang, shows here
            watchdog.beat(t)
            record = _train_record(acc, names, t - t_flushed, t, last_saved, workdir, vmapped)
            t_flushed = t
            carry = (states, zero_acc(), t_dev)
            if is_eval:
                eval_metrics = _evaluate(evaluate, states, device_data, keys["eval"], splits,
                                         with_train=False)
                record.update(eval_metrics)
                watchdog.beat(t)
                if stopper:
                    stopper = _early_stopping_update(stopper, states, eval_metrics[cfg["best_metric"]],
                                                     t, cfg["best_mode"])
                    stopped = _patience_spent(stopper, patience)
                    is_ckpt = is_ckpt or stopped  # a resumed run must know it has stopped
            _log(workdir, tb, t, record, vmapped)
            if bar:
                bar.update(t, _means(record, vmapped))
            if is_ckpt:
                best = cfg["best_metric"]
                metrics = {best: float(np.mean(eval_metrics[best]))} if (
                    is_eval and best in eval_metrics) else None
                tree = {"state": states, "step": np.asarray(t, np.int64)}
                if stopper:
                    tree["early_stopping"] = stopper
                checkpoint.save(mngr, t, tree, metrics)
                last_saved = t
        jax.block_until_ready(carry)
        t_end = time.perf_counter()
    finally:
        watchdog.close()
        if bar:
            bar.close()
        tb.close()
        mngr.wait_until_finished()
        mngr.close()

    # the end: every split evaluated, summary and plots.
    states = carry[0] if not stopper else stopper["state"]  # early stopping keeps the best
    # the training split too (the generalisation gap), except for tasks: there the training
    # classes' episodes cost a second full evaluation and say little
    final = _evaluate(evaluate, states, device_data, keys["eval"], splits,
                      with_train=spec.get("kind", "examples") == "examples")
    summary = _summary(config, summary_metrics(final, algorithm.aliases), seed_list, t_start, total,
                       (t_end - t_loop, t - steps_timed) if t_loop else None, vmapped)
    for alias in algorithm.aliases or {}:  # an alias's spread over seeds sits beside it
        if alias in summary["metrics_std"]:
            summary["metrics"][f"{alias}_std"] = summary["metrics_std"][alias]
    if stopper:
        summary["early_stopping"] = {"stopped_at_step": t,
                                     "best_step": np.atleast_1d(stopper["best_step"]).tolist()}
    _write_json(workdir / "summary.json", summary)
    if cfg["plots"]:
        from dlcore import plots
        plots.learning_curves(workdir)
    return summary


class Watchdog:
    """Ends a run whose device program stops making progress, instead of letting it hang forever.

    XLA's CPU runtime has deadlocked (every thread idle) in some vmapped programs of nested
    scans (README: "A deadlock guard"). A thread checks that the loop `beat`s: when no beat came
    for max(limit_seconds, 10 x the longest gap between beats so far) it calls on_hang(self)
    (the loop: a message naming the step and the last checkpoint, exit status 1; rerunning the
    command resumes). The first gap includes compiling."""

    def __init__(self, limit_seconds: float, on_hang: Callable):
        import threading
        self.limit_seconds, self.on_hang = limit_seconds, on_hang
        self.last, self.longest, self.step = time.monotonic(), 0.0, 0
        self._stop = threading.Event()
        threading.Thread(target=self._watch, daemon=True).start()

    def beat(self, step: int) -> None:
        now = time.monotonic()
        self.longest = max(self.longest, now - self.last)
        self.last, self.step = now, step

    def limit(self) -> float:
        return max(self.limit_seconds, 10 * self.longest)

    def _watch(self) -> None:
        while not self._stop.wait(min(5.0, self.limit_seconds / 4)):
            if time.monotonic() - self.last > self.limit():
                self.on_hang(self)
                return

    def close(self) -> None:
        self._stop.set()


def _hung(watchdog: Watchdog, workdir: Path, saved: Callable) -> None:
    import sys
    where = (f"the last checkpoint is step {saved()}; run the same command again to resume"
             if saved() is not None else "no checkpoint had been written")
    print(f"dlcore: error: no progress for {watchdog.limit():.0f} s after step {watchdog.step} "
          f"in {workdir}: the compiled program appears to be deadlocked (README: 'A deadlock "
          f"guard'); {where}", file=sys.stderr, flush=True)
    os._exit(1)  # the stuck XLA threads cannot be joined; nothing else can end the process


def _check_best_metric(cfg: dict, algorithm, splits: dict) -> None:
    """ConfigError unless loop.best_metric is one the evaluation produces (traced, not compiled)."""
    if not cfg["best_metric"] or algorithm.evaluate is None:
        return
    key = jax.random.key(0)
    state = jax.eval_shape(algorithm.init, key)
    names = jax.eval_shape(algorithm.evaluate, state, splits["test"], key)
    found = sorted(f"{split}/{n}" for split in splits if split != "train" for n in names)
    hint = (" (validation metrics need data.validation_fraction > 0)"
            if str(cfg["best_metric"]).startswith("validation/") and "validation" not in splits
            else "")
    check(cfg["best_metric"] in found, "loop.best_metric",
          f"'{cfg['best_metric']}' is not an evaluation metric of this run; "
          f"choose one of {', '.join(found)}{hint}")


def checkpoint_target(states, cfg: dict, seeds: int | None) -> dict:
    """The tree a checkpoint of this run holds (fresh values): {'state', 'step'} and, with early
    stopping, 'early_stopping' (the best state so far and its bookkeeping). seeds: vmapped count."""
    target = {"state": states, "step": np.zeros((), np.int64)}
    if cfg.get("early_stopping_patience", 0):
        target["early_stopping"] = _early_stopping_init(states, seeds, cfg["best_mode"])
    return target


# --- early stopping: the best state so far, kept on the device, per seed ---------------------------

def _early_stopping_init(states, seeds: int | None, mode: str) -> dict:
    shape = (seeds,) if seeds else ()
    return {"state": jax.tree.map(jnp.copy, states),  # a copy: `states` is donated to the step
            "best": np.full(shape, -np.inf if mode == "max" else np.inf),
            "since": np.zeros(shape, np.int64), "best_step": np.zeros(shape, np.int64)}


@jax.jit
def _select(improved, new, old):
    """Per seed, `new` where it improved, else `old` (improved: [] or [seeds])."""
    def pick(a, b):
        return jnp.where(improved.reshape(improved.shape + (1,) * (a.ndim - improved.ndim)), a, b)
    return jax.tree.map(pick, new, old)


def _early_stopping_update(stopper: dict, states, value, t: int, mode: str) -> dict:
    value = np.asarray(value, np.float64)
    improved = value > stopper["best"] if mode == "max" else value < stopper["best"]
    return {"state": _select(jnp.asarray(improved), states, stopper["state"]),
            "best": np.where(improved, value, stopper["best"]),
            "since": np.where(improved, 0, stopper["since"] + 1),
            "best_step": np.where(improved, t, stopper["best_step"])}


def _patience_spent(stopper: dict, patience: int) -> bool:
    """Stop when every seed has gone `patience` evaluations without improving."""
    return bool(np.all(stopper["since"] >= patience))


def split_keys(root: jax.Array) -> dict:
    """Independent streams for init, data order, per-step randomness and evaluation."""
    init, data, step, evaluation = jax.random.split(root, 4)
    return {"init": init, "data": data, "step": step, "eval": evaluation}


def _train_record(acc: dict, names: list[str], n: int, t: int, last_saved, workdir: Path,
                  vmapped: bool) -> dict:
    """Means over the last `n` steps of the summed train metrics; TrainingError if any was NaN/Inf."""
    bad = np.atleast_1d(acc["bad"])
    sums = {name: acc["sum"][..., i] for i, name in enumerate(names)}
    nonfinite = [name for name, v in sums.items() if not np.all(np.isfinite(v))]
    if (bad >= 0).any() or nonfinite:
        if (bad >= 0).any():  # the usual case: the first bad step is known exactly
            when = f"at step {int(bad[bad >= 0].min()) + 1}"
            if vmapped:
                when += f" for seed index {np.nonzero(bad >= 0)[0].tolist()}"
        else:
            when = f"between steps {t - n + 1} and {t}"
        where = (f"the last good checkpoint is step {last_saved} in {workdir / 'checkpoints'}"
                 if last_saved is not None else "no checkpoint had been written")
        raise TrainingError(
            f"training diverged: {', '.join(nonfinite)} became NaN or Inf {when}; {where}. "
            "Lower optim.learning_rate or set optim.clip_norm.")
    return {f"train/{name}": v / max(n, 1) for name, v in sums.items()}


def _evaluate(evaluate, states, device_data, key, splits, with_train: bool) -> dict:
    out = {}
    for split in splits:
        if (split == "train" and not with_train) or not jax.tree.leaves(splits[split]):
            continue  # an empty split: tasks drawn per step have no fixed training set
        for name, v in jax.device_get(evaluate(states, device_data[split], key)).items():
            out[f"{split}/{name}"] = v
    return out


def _means(record: dict, seed_axis: bool) -> dict:
    """Means over the seed axis; a vector metric (one value per test-time step, say) stays a list."""
    out = {}
    for k, v in record.items():
        m = np.asarray(v, np.float64)
        m = m.mean(0) if seed_axis else m
        out[k] = float(m) if m.ndim == 0 else m.tolist()
    return out


def _log(workdir: Path, tb, t: int, record: dict, vmapped: bool) -> None:
    means = _means(record, vmapped)
    row = {"step": t, "time": time.time(), **means}
    if vmapped:
        row["per_seed"] = {k: np.asarray(v).tolist() for k, v in record.items()}
    writers.append_jsonl(workdir / "metrics.jsonl", row)
    tb.scalars(t, means)


def summary_metrics(final: dict, aliases: dict | None) -> dict:
    """{'test/accuracy': v} -> {'test_accuracy': v}, plus the algorithm's unprefixed aliases."""
    named = {name.replace("/", "_"): v for name, v in final.items()}
    named.update({alias: final[name] for alias, name in (aliases or {}).items() if name in final})
    return named


def _summary(config, named, seed_list, t_start, total, timed, seed_axis) -> dict:
    """summary.json: final metrics (means over seeds), their spread, and how the run went.
    named: summary name -> value, with a leading seed axis when `seed_axis`."""
    metrics, std, per_seed = {}, {}, {}
    for key, v in named.items():
        v = np.asarray(v, np.float64)
        v = v if seed_axis else v[None]
        mean, spread = v.mean(0), v.std(0)
        scalar = mean.ndim == 0
        metrics[key] = float(mean) if scalar else mean.tolist()
        std[key] = float(spread) if scalar else spread.tolist()
        per_seed[key] = v.tolist()
    return {
        "experiment": config["experiment"],
        "metrics": metrics,
        "metrics_std": std,
        "per_seed": per_seed,
        "published": config.get("published", {}),
        "seconds": time.perf_counter() - t_start,
        "steps": total,
        "steps_per_second": (timed[1] / timed[0]) if timed and timed[0] > 0 else None,
        "seeds": len(seed_list),
        "seed_values": seed_list,
        "seeds_in_one_program": seed_axis,
        "versions": {"python": platform.python_version(), "jax": jax.__version__,
                     "backend": jax.default_backend(), "devices": jax.device_count()},
        "config": config,
    }


def _run_sequential_seeds(config, workdir, seeds, progress, t_start) -> dict:
    """Seeds one after another, each in workdir/seed_<s>; the summary aggregates them."""
    runs = []
    for i in range(seeds):
        cfg = json.loads(json.dumps(config, default=_jsonable))
        cfg["seed"] = config["seed"] + i
        runs.append(run(cfg, workdir / f"seed_{cfg['seed']}", 1, progress))
    named = {k: [r["metrics"][k] for r in runs] for k in runs[0]["metrics"]}
    rates = [r["steps_per_second"] for r in runs if r["steps_per_second"]]
    prepare_workdir(workdir, config)
    summary = _summary(config, named, [config["seed"] + i for i in range(seeds)], t_start,
                       config["loop"]["steps"], None, True)
    summary["seeds_in_one_program"] = False
    if "early_stopping" in runs[0]:
        summary["early_stopping"] = {k: [r["early_stopping"][k] for r in runs]
                                     for k in ("stopped_at_step", "best_step")}
    summary["steps_per_second"] = float(np.mean(rates)) if rates else None
    _write_json(workdir / "summary.json", summary)
    return summary
