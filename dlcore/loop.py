"""The host loop: one linear function that drives any algorithm's pure `init`/`step`/`evaluate`.

    summary = train(algorithm, data, loop_config, workdir, seeds=1)

algorithm and data are values (dlcore.core); the loop knows nothing of any one algorithm, model or
data kind. It

1. checks the loop settings, the data against the devices, the state's size against the device
   memory, and traces the step once (nothing compiled yet), so every mistake surfaces before any
   work; then claims the run directory (a lock; a different run there is refused);
2. resumes from the newest verified checkpoint in `workdir/checkpoints`, or calls `init`;
3. calls the jitted step (carry donated; `steps_per_call` steps per call with `lax.scan`), the batch
   `data.sample(train, t, key)` taken on the device, the step key `fold_in(step_key, t)`: a resumed
   run replays the uninterrupted one exactly;
4. pulls metrics to the host only at log, eval and checkpoint steps; stops naming the first step
   whose metrics were NaN/Inf, before any checkpoint of that step is written;
5. evaluates and checkpoints on a schedule; ends with summary.json and PNG learning curves.
   SIGINT/SIGTERM are noted and looked at between calls: the state is checkpointed there and
   `Interrupted` raised.

Several seeds train as one program, `jax.vmap` over the seed axis of the state; `members=` runs any
list of members (each with its own seed and a `prepare`d fresh state) in one program (dlcore.sweep),
or members carried on from another run's states at a given step (dlcore.search's rungs).

On several devices (`loop.devices`, of which `loop.model_parallel` form a 'model' axis) each batch
is split over the mesh's 'data' axis and the state is placed by `loop.sharding` (dlcore.parallel:
replicate, fsdp, tensor, fsdp+tensor) from the logical axis names the algorithm declares
(`Algorithm.state_axes`); the step keeps those shardings, and checkpoints hold whole host arrays.
"""
from __future__ import annotations

import time
from functools import partial
from pathlib import Path

import chex
import jax
import jax.numpy as jnp
import numpy as np

from dlcore import checkpoint, distributed, early_stopping, feed, parallel, rundir, writers
from dlcore import trackers as _trackers
from dlcore.watch import Hung, Interrupted, Signals, TrainingError, Watch
from dlcore.config import ConfigError, check, one_of
from dlcore.core import Algorithm, Data, split_keys


__all__ = ["train", "defaults", "validate", "TrainingError", "Hung", "Interrupted"]

# where the training split lives (loop.data): 'device' copies every split to every device once and
# cuts each batch inside the jitted step; 'host' keeps the training split on the host and sends
# each call's batches (dlcore.feed); 'auto' is 'device' when the data set fits under
# loop.max_device_data_mb in a run of one process, else 'host'
PLACES = ("auto", "device", "host")


def defaults(**overrides) -> dict:
    """The `loop` section with every key present."""
    cfg = dict(steps=1000, log_every=100, eval_every=500, checkpoint_every=500, keep_checkpoints=2,
               best_metric="", best_mode="max", steps_per_call=1, seeds_in_one_program=True,
               devices=1, sharding="replicate", model_parallel=1, data="auto",
               max_device_data_mb=4096.0,
               plots=True, early_stopping_patience=0, watchdog_seconds=1800)
    unknown = set(overrides) - set(cfg)
    assert not unknown, f"unknown loop keys {unknown}"
    cfg.update(overrides)
    return cfg


def validate(cfg: dict) -> dict:
    """The loop section completed with defaults; ConfigError for any impossible setting."""
    unknown = sorted(set(cfg) - set(defaults()))
    check(not unknown, f"loop.{unknown[0] if unknown else ''}", "is not a loop setting")
    cfg = {**defaults(), **cfg}
    for key in ("steps", "log_every", "eval_every", "checkpoint_every", "keep_checkpoints",
                "steps_per_call"):
        check(type(cfg[key]) is int and cfg[key] > 0, f"loop.{key}",
              f"must be a positive integer; got {cfg[key]!r}")
    k = cfg["steps_per_call"]
    for key in ("steps", "log_every", "eval_every", "checkpoint_every"):
        check(cfg[key] % k == 0, f"loop.{key}",
              f"must be a multiple of loop.steps_per_call ({k}); got {cfg[key]}")
    one_of(cfg["best_mode"], "loop.best_mode", ("max", "min"))
    check(type(cfg["devices"]) is int, "loop.devices", f"must be an integer; got {cfg['devices']!r}")
    one_of(cfg["sharding"], "loop.sharding", tuple(parallel.RULES))
    one_of(cfg["data"], "loop.data", PLACES)
    check(isinstance(cfg["max_device_data_mb"], (int, float)) and cfg["max_device_data_mb"] >= 0,
          "loop.max_device_data_mb", f"must be a number of MB >= 0; got {cfg['max_device_data_mb']!r}")
    m = cfg["model_parallel"]
    check(type(m) is int and m >= 1, "loop.model_parallel",
          f"must be a positive integer (the devices of the 'model' axis); got {m!r}")
    tensor = "tensor" in cfg["sharding"]
    check(tensor == (m > 1), "loop.model_parallel",
          f"tensor parallelism needs a 'model' axis of 2 or more devices; got {m}" if tensor else
          f"a 'model' axis of {m} devices is used only by tensor parallelism; set loop.sharding "
          f"to 'tensor' or 'fsdp+tensor', or loop.model_parallel=1")
    for key in ("plots", "seeds_in_one_program"):
        check(isinstance(cfg[key], bool), f"loop.{key}", f"must be true or false; got {cfg[key]!r}")
    check(isinstance(cfg["best_metric"], str), "loop.best_metric",
          f"must be a metric name such as validation/accuracy, or ''; got {cfg['best_metric']!r}")
    wd = cfg["watchdog_seconds"]
    # it catches programs stuck for good (README: 'A deadlock guard'), not slow ones: a limit of
    # seconds would call a long first step (or a busy machine) a deadlock
    check(isinstance(wd, (int, float)) and wd >= 10, "loop.watchdog_seconds",
          f"must be >= 10 (seconds without progress before a run is ended); got {wd}")
    patience = cfg["early_stopping_patience"]
    check(type(patience) is int and patience >= 0, "loop.early_stopping_patience",
          f"must be an integer >= 0 (0 = off); got {patience}")
    if patience:  # choosing the stopping point on the test set would leak it into the result
        check(str(cfg["best_metric"]).startswith("validation/"), "loop.best_metric",
              f"early stopping needs a validation metric (e.g. validation/accuracy, with "
              f"data.validation_fraction > 0); got '{cfg['best_metric']}'")
    return cfg


def train(algorithm: Algorithm, data: Data, config: dict, workdir: str | Path,
          seeds: int | list[int] = 1, *, seed: int = 0, members: tuple | None = None,
          record: dict | None = None, name: str = "run", progress: bool = True,
          fresh: bool = False, summary_extra: dict | None = None,
          trackers: str | list[str] | tuple[str, ...] = ()) -> dict:
    """Train `algorithm` on `data` in `workdir` (resuming what is there); returns the summary.

    config: the `loop` section (missing keys take `defaults()`). seeds: how many (seed, seed+1, ...)
    or a list of seed values, vmapped in one program when more than one. members: (each member's
    seed, prepare(states) -> states[, start]) to train as one program (dlcore.sweep); start: the
    step the prepared states are at when they carry on from another run (dlcore.search's rungs):
    batches and step keys go on from there, as if never stopped. record: what
    config.json keeps besides the loop section and the seeds (the `dlcore run` config); name: the
    run's name in summaries, plots and the progress bar. fresh: move an existing run directory
    aside (once everything is checked) and start over. summary_extra: more for summary.json.
    trackers: experiment trackers that also get the config, metrics, summary and pictures
    ('wandb', 'mlflow'; dlcore.trackers).

    Raises ConfigError (bad input; nothing written), TrainingError (NaN/Inf, a hung program, a
    run directory that cannot be written, a non-finite final evaluation), Interrupted (SIGINT or
    SIGTERM: the state was checkpointed; run again to resume)."""
    cfg, workdir = validate(config), Path(workdir)
    seed_list = (list(members[0]) if members else list(seeds) if isinstance(seeds, (list, tuple))
                 else list(range(seed, seed + seeds)) if type(seeds) is int and seeds >= 1 else None)
    if not seed_list or not all(type(s) is int and -2**63 <= s < 2**63 for s in seed_list):
        raise ConfigError(f"config key '--seeds': must be a positive count or a list of integer "
                          f"seeds (within int64); got {seeds!r}"
                          + (f" from seed {seed}" if type(seeds) is int else ""))
    vmapped = len(seed_list) > 1 or members is not None

    # 1. check everything on the host before anything compiles or is written.
    mesh = parallel.data_mesh(cfg["devices"], cfg["model_parallel"])
    batch_shape = jax.eval_shape(data.sample, data.splits["train"], 0, jax.random.key(0))
    parallel.check_batch(batch_shape, mesh)
    on_host = _data_on_host(cfg, data)
    names, eval_names, state_bytes = _trace(algorithm, data)
    shardings = _state_shardings(algorithm, cfg, mesh, len(seed_list) if vmapped else None)
    parallel.check_fits(state_bytes * len(seed_list), "the training state (parameters and "
                        f"optimizer state{', for every seed' if vmapped else ''})")
    _check_best_metric(cfg, eval_names, data)
    tracker_names = _trackers.check(trackers)
    record = {**(record or {"experiment": name}), "loop": cfg, "seeds": seed_list}
    distributed.check_same_config(record)  # several processes: all run this same record
    main = distributed.is_main()  # process 0 alone writes the run's files and shows progress
    progress = progress and main
    with distributed.claimed(workdir, record, fresh), Signals() as signals, \
            _trackers.tracking(tracker_names if main else (), workdir, record, name) as tracked:
        try:
            return _train(algorithm, data, cfg, workdir, seed_list, vmapped, members, record,
                          name, progress, mesh, shardings, names, signals, summary_extra or {},
                          tracked, on_host)
        except OSError as e:  # a full disk, a directory made read-only mid-run
            raise TrainingError(f"cannot write to the run directory {workdir} "
                                f"({e.strerror or e}); free space or fix its permissions, then "
                                "run the same command to resume from the last checkpoint") from None


def _train(algorithm, data, cfg, workdir, seed_list, vmapped, members, record, name, progress,
           mesh, shardings, names, signals, summary_extra, tracked, on_host) -> dict:
    """The run itself, in a claimed run directory."""
    t_start = time.perf_counter()
    roots = [jax.random.key(s) for s in seed_list]
    keys = jax.tree.map(lambda *k: jnp.stack(k), *[split_keys(r) for r in roots]) if vmapped \
        else split_keys(roots[0])
    over_seeds = (lambda f, *a, **kw: jax.vmap(f, *a, **kw)) if vmapped else (lambda f, **kw: f)

    # 2. fresh state, or the newest good checkpoint.
    # one copy from host to the devices; under loop.data=host the training split stays behind
    device_data = parallel.put_replicated(
        {s: v for s, v in data.splits.items() if not (on_host and s == "train")}, mesh)
    states = jax.jit(over_seeds(algorithm.init))(keys["init"])
    if members:  # before the checkpoint target is built: a restored state replaces this one
        states = members[1](states)
    # Everything the step takes is committed to its place, in every call alike: an argument
    # uncommitted in the first call and committed in the next (the step's own output; a batch
    # sent by dlcore.feed) would compile the step a second time, inside the timed loop.
    home = (jax.sharding.SingleDeviceSharding(jax.local_devices()[0]) if mesh is None
            else parallel.replicated(mesh))
    shardings_or_home = home if shardings is None else shardings
    states = jax.device_put(states, shardings_or_home)  # by loop.sharding
    mngr = checkpoint.manager(workdir / "checkpoints", cfg["keep_checkpoints"],
                              cfg["best_metric"] or None, cfg["best_mode"])
    patience = cfg["early_stopping_patience"]
    stopper = (early_stopping.init(states, len(seed_list) if vmapped else None, cfg["best_mode"])
               if patience else None)
    try:
        restored = checkpoint.restore_newest_good(mngr, checkpoint.target(states, stopper))
    except BaseException:
        mngr.close()
        raise
    start = members[2] if members and len(members) > 2 else 0  # carried on from another run
    if restored is not None:
        tree, start = restored
        states = jax.device_put(tree["state"], shardings_or_home)
        if stopper:
            stopper = {**tree["early_stopping"],
                       "state": jax.device_put(tree["early_stopping"]["state"],
                                               shardings_or_home)}
        print(f"resumed from step {start} in {workdir}", flush=True)
    main = distributed.is_main()  # process 0 writes the files; every process, its checkpoint shards
    if main:
        rundir.write_json(workdir / "config.json", record)  # the checkpoints are this run's
        writers.truncate_jsonl(workdir / "metrics.jsonl", start)
    tracked.catch_up(workdir / "metrics.jsonl")  # rows a tracker missed (added since, or down)

    # 3. the compiled step: k updates per call, metrics summed on the device.
    total, k = cfg["steps"], cfg["steps_per_call"]

    def one_update(state, acc, t, batch, key_step):
        batch = parallel.constrain_batch(batch, mesh)
        state, metrics = algorithm.step(state, batch, jax.random.fold_in(key_step, t))
        # Metrics are summed as one vector: on a CPU every extra output buffer of a small step
        # costs measurable time (a dict of sums made mnist1d/mlp ~20 % slower). The first step
        # with a non-finite metric is remembered (their sum is finite only if each is).
        vec = jnp.stack([jnp.asarray(metrics[n], jnp.float32) for n in names])
        bad = (acc["bad"] < 0) & ~jnp.isfinite(jnp.sum(vec))
        return state, {"sum": acc["sum"] + vec, "bad": jnp.where(bad, t, acc["bad"])}

    update = over_seeds(one_update, in_axes=(0, 0, None, 0, 0))
    cut = over_seeds(data.sample, in_axes=(None, None, 0))

    @partial(jax.jit, donate_argnums=0)
    def train_call(carry, source, key_data, key_step):
        """k steps; source: the training split on the devices (each batch cut here), or under
        loop.data=host this call's batches, [k, (seeds,) batch, ...] (dlcore.feed)."""
        def body(carry, batch):
            state, acc, t = carry
            batch = cut(source, t, key_data) if batch is None else batch
            state, acc = update(state, acc, t, batch, key_step)
            return (parallel.constrain(state, shardings), acc, t + 1), None
        if k == 1:
            return body(carry, jax.tree.map(lambda b: b[0], source) if on_host else None)[0]
        return jax.lax.scan(body, carry, source if on_host else None, length=k)[0]
    source = (feed.host_feed(data, data.splits["train"], keys["data"], k,
                             len(seed_list) if vmapped else None, mesh) if on_host
              else lambda t: device_data["train"])

    evaluate = jax.jit(over_seeds(algorithm.evaluate, in_axes=(0, None, 0))) \
        if algorithm.evaluate else None

    lead = (len(seed_list),) if vmapped else ()

    @partial(jax.jit, out_shardings=home)  # made on the devices: no transfer, no check
    def zero_acc():
        return {"sum": jnp.zeros(lead + (len(names),), jnp.float32),
                "bad": jnp.full(lead, -1, jnp.int32)}

    def save(t, states, stopper, metrics=None):
        tree = checkpoint.target(states, stopper)
        tree["step"] = np.asarray(t, np.int64)
        checkpoint.save(mngr, t, tree, metrics)

    # 4./5. the loop itself.
    tb = writers.TensorBoardWriter(workdir / "tensorboard", start=start) if main else None
    bar = writers.Progress(total, start, label=f"{name} ") if progress else None
    carry = (states, zero_acc(), jax.device_put(np.int32(start), home))
    t, t_flushed, last_saved, eval_metrics = start, start, (start if restored else None), {}
    t_loop, steps_timed, eval_seconds = None, 0, 0.0
    stopped = stopper is not None and early_stopping.spent(stopper, patience)
    watch = Watch(cfg["watchdog_seconds"], workdir)
    batches = source(t) if t < total else None
    try:
        while t < total and not stopped:
            carry = train_call(carry, batches, keys["data"], keys["step"])
            t += k
            # the next call's batches, cut and sent while this call runs (a no-op on the device)
            batches = source(t) if t < total else None
            if signals.received:  # between two calls the state is whole: keep it and leave
                if last_saved != t:
                    save(t, carry[0], stopper)
                    last_saved = t
                break
            if t_loop is None:  # the first call compiles; time the rest
                watch.wait(carry, lambda: (t, last_saved))
                t_loop, steps_timed, eval_seconds = time.perf_counter(), t, 0.0
                if bar:
                    bar.start_timing(t)
            is_eval = evaluate is not None and (t % cfg["eval_every"] == 0 or t == total)
            is_ckpt = t % cfg["checkpoint_every"] == 0 or t == total
            if not (t % cfg["log_every"] == 0 or is_eval or is_ckpt):
                continue
            states, acc, t_dev = carry
            watch.wait(acc, lambda: (t, last_saved))  # progress, or a hang, shows here
            acc = jax.device_get(acc)
            row = _train_record(acc, names, t - t_flushed, t, last_saved, workdir, vmapped)
            t_flushed = t
            carry = (states, zero_acc(), t_dev)
            if is_eval:
                t_eval = time.perf_counter()
                eval_metrics = _evaluate(evaluate, states, device_data, keys["eval"], data,
                                         watch, lambda: (t, last_saved))
                spent = time.perf_counter() - t_eval  # not training: out of the rates
                eval_seconds += spent
                if bar:
                    bar.exclude(spent)
                row.update(eval_metrics)
                if stopper:
                    stopper = early_stopping.update(stopper, states, eval_metrics[cfg["best_metric"]],
                                                    t, cfg["best_mode"])
                    stopped = early_stopping.spent(stopper, patience)
                    is_ckpt = is_ckpt or stopped  # a resumed run must know it has stopped
            if main:
                writers.log(workdir, tb, t, row, vmapped, tracked)
            if bar:
                bar.update(t, writers.means(row, vmapped))
            if is_ckpt:
                best = cfg["best_metric"]
                metrics = {best: float(np.mean(eval_metrics[best]))} if (
                    is_eval and best in eval_metrics) else None
                save(t, states, stopper, metrics)
                last_saved = t
                if tb:  # the parameters' histograms: one device_get per checkpoint, process 0
                    tb.histograms(t, states, seed_axis=vmapped)
        watch.wait(carry, lambda: (t, last_saved))
        t_end = time.perf_counter()
    finally:
        if bar:
            bar.close()
        if tb:
            tb.close()
        checkpoint.finish(mngr)
    _leave_if_interrupted(signals, t, last_saved)

    # the end: every split evaluated (the training split too, as `train_eval`), summary, plots.
    states = carry[0] if not stopper else stopper["state"]  # early stopping keeps the best
    if on_host and evaluate and data.evaluate_train and \
            _nbytes(data.splits["train"]) <= cfg["max_device_data_mb"] * 2**20:
        # a streamed training split that fits (a run of several processes) is scored whole too
        device_data = {**device_data, "train": parallel.put_replicated(data.splits["train"], mesh)}
    final = _evaluate(evaluate, states, device_data, keys["eval"], data, watch,
                      lambda: (t, last_saved), final=True) if evaluate else {}
    timed = (t_end - t_loop - eval_seconds, t - steps_timed) if t_loop else None
    rate = (timed[1] / timed[0]) if timed and timed[0] > 0 else None
    if rate is None and t == start and main:  # a finished run re-reported keeps its training's rate
        rate = rundir.earlier_rate(workdir / "summary.json")
    summary = rundir.summary(name, {n.replace("/", "_"): v for n, v in final.items()}, seed_list,
                             vmapped, {
        "steps": total, "start_step": start, "steps_run": t - start,
        "seconds": time.perf_counter() - t_start,
        "steps_per_second": rate,
        "headline": list(algorithm.headline), **summary_extra})
    if stopper:
        summary["early_stopping"] = {"stopped_at_step": t,
                                     "best_step": np.atleast_1d(stopper["best_step"]).tolist()}
    if main:
        rundir.write_json(workdir / "summary.json", summary)
    tracked.summary(summary)
    if summary.get("nonfinite_metrics"):  # the run trained, but its result is no number
        raise TrainingError(f"the final evaluation gave NaN or Inf for "
                            f"{', '.join(summary['nonfinite_metrics'])} (null in "
                            f"{workdir / 'summary.json'}); the model diverged where it is evaluated")
    _leave_if_interrupted(signals, t, last_saved)
    if cfg["plots"] and main:
        from dlcore import plots
        drawn = plots.learning_curves(workdir, title=name)
        tracked.images(drawn)
        writers.write_pictures(workdir / "tensorboard", t, drawn)
    return summary


def _leave_if_interrupted(signals: Signals, t: int, saved) -> None:
    if signals.received:
        raise Interrupted(f"interrupted at step {t}"
                          + (f" (checkpoint at step {saved})" if saved is not None else "")
                          + "; run the same command to resume", signals.received)


# --- before anything compiles ------------------------------------------------------------------------

def _trace(algorithm: Algorithm, data: Data) -> tuple[list[str], list[str], int]:
    """The step's metric names, the evaluation's, and the bytes of one seed's state, from
    abstract traces (nothing compiles). ConfigError for a step that does not return
    (state, {name: scalar})."""
    key = jax.random.key(0)
    try:
        state = jax.eval_shape(algorithm.init, key)
        batch = jax.eval_shape(data.sample, data.splits["train"], 0, key)
        out = jax.eval_shape(algorithm.step, state, batch, key)
    except ConfigError:  # a setting found wrong while tracing (optim.freeze): its own message
        raise
    except (KeyError, TypeError, ValueError, IndexError) as e:  # this algorithm, not this data
        from dlcore.names import where
        raise ConfigError(f"algorithm: its step cannot take this data's batches: "
                          f"{where(e)}") from None
    if not (isinstance(out, tuple) and len(out) == 2 and isinstance(out[1], dict)):
        raise ConfigError("algorithm: step(state, batch, key) must return (state, metrics), "
                          f"metrics a dict of scalars; got {type(out).__name__}")
    bad = {n: tuple(getattr(m, "shape", ())) for n, m in out[1].items()
           if tuple(getattr(m, "shape", ())) != ()}
    check(not bad, "algorithm", f"step metrics must be scalars; got shapes {bad}")
    _check_same_state(state, out[0])
    evals = []
    if algorithm.evaluate is not None:
        for split in (s for s in data.splits if s != "train"):
            found = jax.eval_shape(algorithm.evaluate, state, data.splits[split], key)
            evals += [f"{split}/{n}" for n in found]
    state_bytes = sum(np.dtype(x.dtype).itemsize * int(np.prod(x.shape))
                      for x in jax.tree.leaves(state) if hasattr(x, "shape"))
    return sorted(out[1]), evals, state_bytes


def _data_on_host(cfg: dict, data: Data) -> bool:
    """Whether the training split stays on the host (loop.data); ConfigError when what must be
    on the devices exceeds loop.max_device_data_mb."""
    limit = cfg["max_device_data_mb"] * 2**20
    size = {s: _nbytes(v) for s, v in data.splits.items()}
    rest = sum(size.values()) - size["train"]
    place = cfg["data"]
    if place == "auto":
        place = "host" if sum(size.values()) > limit or distributed.processes() > 1 else "device"
    if place == "device":
        check(sum(size.values()) <= limit, "loop.max_device_data_mb",
              f"the data set takes {sum(size.values()) / 2**20:.3g} MB, above the limit for keeping "
              "it on the device; raise the limit, or set loop.data=host (or auto) to stream the "
              "training batches from the host")
    check(rest <= limit, "loop.max_device_data_mb",
          f"the evaluation splits take {rest / 2**20:.3g} MB, above the limit for keeping them on "
          "the device (only the training split is streamed from the host); raise the limit or "
          "evaluate on a smaller split")
    return place == "host"


def _nbytes(tree) -> int:
    return sum(np.asarray(a).nbytes for a in jax.tree.leaves(tree))


def _check_same_state(state, new) -> None:
    """ConfigError unless step's state has init's structure and every leaf its shape and dtype:
    the loop carries the state through lax.scan (which refuses any change with a message about
    the scan's carry) and compiles the step once (a dtype that drifts, a float64 step count or
    bfloat16 parameters after one update, would otherwise surface far from its cause)."""
    try:
        chex.assert_trees_all_equal_structs(new, state)
    except AssertionError:
        raise ConfigError("algorithm: step returns a state of another structure than init's "
                          f"({jax.tree.structure(new)} vs {jax.tree.structure(state)})") from None
    try:
        chex.assert_trees_all_equal_shapes_and_dtypes(new, state)
    except AssertionError:
        changed = [f"{jax.tree_util.keystr(p)} {_spec(a)} -> {_spec(b)}" for (p, a), b in zip(
            jax.tree_util.tree_flatten_with_path(state)[0], jax.tree.leaves(new))
            if _spec(a) != _spec(b)]
        raise ConfigError("algorithm: step must return every state leaf with init's shape and "
                          f"dtype; it changes {'; '.join(changed[:5])}"
                          + (f" and {len(changed) - 5} more" if len(changed) > 5 else "")) from None


def _spec(x) -> str:
    return f"{getattr(x, 'dtype', type(x).__name__)}{list(getattr(x, 'shape', ()))}"


def _state_shardings(algorithm: Algorithm, cfg: dict, mesh, seeds: int | None):
    """The NamedShardings of the state (stacked over `seeds` when vmapped) under loop.sharding;
    None without a mesh. ConfigError when the algorithm names no axes for a strategy that shards
    the state."""
    check(algorithm.state_axes is not None or cfg["sharding"] == "replicate", "loop.sharding",
          f"'{cfg['sharding']}' splits the state by the logical axis names the algorithm declares "
          "(Algorithm.state_axes), and this algorithm declares none; use loop.sharding=replicate")
    if mesh is None:
        return None
    state = jax.eval_shape(algorithm.init, jax.random.key(0))
    axes = algorithm.state_axes if cfg["sharding"] != "replicate" else None  # None: replicated
    axes = axes(state) if callable(axes) else axes
    if seeds is not None:
        state = jax.eval_shape(jax.vmap(algorithm.init), jax.random.split(jax.random.key(0), seeds))
    return parallel.state_shardings(state, mesh, axes, parallel.RULES[cfg["sharding"]],
                                    leading_axes=int(seeds is not None))


def _check_best_metric(cfg: dict, found: list[str], data: Data) -> None:
    """ConfigError unless loop.best_metric is one the evaluation produces."""
    if not cfg["best_metric"]:
        return
    hint = (" (validation metrics need data.validation_fraction > 0)"
            if str(cfg["best_metric"]).startswith("validation/") and "validation" not in data.splits
            else "")
    check(cfg["best_metric"] in found, "loop.best_metric",
          f"'{cfg['best_metric']}' is not an evaluation metric of this run; "
          f"choose one of {', '.join(sorted(found)) or '(none)'}{hint}")


# --- metrics --------------------------------------------------------------------------------------------

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
            f"training diverged: {', '.join(nonfinite) or 'a metric'} became NaN or Inf {when}; "
            f"{where}. Lower optim.learning_rate or set optim.clip_norm.")
    return {f"train/{name}": v / max(n, 1) for name, v in sums.items()}


def _evaluate(evaluate, states, device_data, key, data: Data, watch: Watch, on_hang,
              final: bool = False) -> dict:
    """'<split>/<name>' for each evaluation split; at the end also the training split, as
    'train_eval/<name>' (the running means of the training steps are 'train/<name>')."""
    out = {}
    for split in data.splits:
        if split == "train" and not (final and data.evaluate_train and "train" in device_data):
            continue
        got = evaluate(states, device_data[split], key)
        watch.wait(got, on_hang)
        prefix = "train_eval" if split == "train" else split
        out.update({f"{prefix}/{name}": v for name, v in jax.device_get(got).items()})
    return out
