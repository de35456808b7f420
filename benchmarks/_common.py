"""What the MNIST-1D benchmarks share: the contenders' training loops, timing and the tables.

Every contender returns a `Result` (whole-run seconds, train seconds per step, test accuracy):

* `dlcore_run`: one `dlcore.experiment.run`; its train time per step is the loop's own steady-state
  figure (everything after the first, compiling call);
* `jit_train`: the hand-written baseline, a jitted Adam step (or `lax.scan` of several) on data
  kept on the device, the batch cut inside the step with `dynamic_slice`, parameters donated;
* `torch_train`: a PyTorch eager loop, the same recipe.

`interleave` runs the contenders in turn, `repeats` times, so drift in machine speed hits all
alike; `print_table` prints medians and ratios against a baseline measured in the same run.
"""
from __future__ import annotations

import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from dlcore import experiment


class Result(NamedTuple):
    whole: float        # seconds, from building the data on the host to the test accuracy
    per_step: float     # steady-state train seconds per step
    accuracy: float     # final test accuracy
    reported: float | None = None  # dlcore: the loop's own seconds per step (summary.json)


def cpu_threads() -> int:
    """The cores this process may use (what PyTorch's intra-op pool is set to)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def dlcore_run(cfg: dict, seeds: int = 1, from_log: bool = False) -> Result:
    """One `dlcore.experiment.run` of `cfg` (a complete config) in a fresh temporary run directory.

    The train time per step is the loop's own figure (`steps_per_second` in summary.json: from
    the end of the first call to the end of the last, which includes the evaluation and the
    checkpoint at the last step, the evaluation's compile among them) or, with `from_log`, the
    time between the first and the last log rows before the last step (metrics.jsonl): training
    and the periodic work of the schedule only, as the hand-written loop is timed. Falls back to
    the loop's figure when there are fewer than two such rows.
    """
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        s = experiment.run(cfg, d, seeds=seeds, progress=False)
        whole = time.perf_counter() - t0
        rate = s["steps_per_second"]
        per_step = 1.0 / rate if rate else float("nan")
        if from_log:  # rows are written right after a sync (device_get of the summed metrics)
            rows = [json.loads(line) for line in
                    (Path(d) / "metrics.jsonl").read_text().splitlines() if line.strip()]
            rows = [r for r in rows if r["step"] < s["steps"]]
            if len(rows) >= 2 and rows[-1]["step"] > rows[0]["step"]:
                per_step = ((rows[-1]["time"] - rows[0]["time"])
                            / (rows[-1]["step"] - rows[0]["step"]))
        return Result(whole, per_step, s["metrics"]["test_accuracy"], 1.0 / rate if rate else None)


def jit_train(loss_fn: Callable, params, tx, x: jax.Array, y: jax.Array, batch_size: int,
              steps: int, scan_steps: int = 0):
    """Train with a minimal jitted loop; returns (params, train seconds per step).

    loss_fn(params, xb, yb) -> scalar; tx: an optax optimizer; x, y: the training set on the device.
    scan_steps 0: one step per call, the first (compiling) call untimed. scan_steps k > 0: k steps
    per call as one `lax.scan` (k = steps: the whole run is one call), compiled ahead of time so
    that every call is timed; steps must be a multiple of k.
    """
    n = x.shape[0]
    opt_state = tx.init(params)

    def step(params, opt_state, i):
        start = (i * batch_size) % n
        xb = jax.lax.dynamic_slice_in_dim(x, start, batch_size)
        yb = jax.lax.dynamic_slice_in_dim(y, start, batch_size)
        loss, g = jax.value_and_grad(loss_fn)(params, xb, yb)
        updates, opt_state = tx.update(g, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    if not scan_steps:
        step = jax.jit(step, donate_argnums=(0, 1))
        params, opt_state, loss = step(params, opt_state, 0)
        jax.block_until_ready(params)
        t1 = time.perf_counter()
        for i in range(1, steps):
            params, opt_state, loss = step(params, opt_state, i)
        jax.block_until_ready(params)
        return params, (time.perf_counter() - t1) / (steps - 1)

    if steps % scan_steps:
        raise ValueError(f"steps ({steps}) must be a multiple of the scan length ({scan_steps})")

    def steps_from(params, opt_state, first):
        def body(carry, i):
            p, o, _ = step(*carry, i)
            return (p, o), None
        (params, opt_state), _ = jax.lax.scan(body, (params, opt_state),
                                              first + jnp.arange(scan_steps))
        return params, opt_state

    first = jnp.zeros((), jnp.int32)
    scanned = jax.jit(steps_from, donate_argnums=(0, 1)).lower(params, opt_state, first).compile()
    t1 = time.perf_counter()
    for c in range(steps // scan_steps):
        params, opt_state = scanned(params, opt_state, jnp.asarray(c * scan_steps, jnp.int32))
    jax.block_until_ready(params)
    return params, (time.perf_counter() - t1) / steps


def torch_train(torch, net, x, y, batch_size: int, steps: int, lr: float) -> float:
    """Adam on `net` in PyTorch eager, batches in stored order; returns train seconds per step."""
    opt = torch.optim.Adam(net.parameters(), lr)
    n = len(x)
    t1 = time.perf_counter()
    for i in range(steps):
        b = (i * batch_size) % n
        loss = torch.nn.functional.cross_entropy(net(x[b:b + batch_size]), y[b:b + batch_size])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return (time.perf_counter() - t1) / steps


def import_torch(threads: int = 0):
    """torch with `threads` intra-op threads (0: this machine's cores); None if not installed."""
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(threads or cpu_threads())
    return torch


def torch_accuracy(torch, net, x: np.ndarray, y: np.ndarray) -> float:
    with torch.no_grad():
        pred = net(torch.tensor(x)).argmax(-1).numpy()
    return float((pred == y).mean())


def interleave(contenders: dict[str, Callable[[], Result | None]], repeats: int,
               log: Callable[[str], None] | None = None) -> dict[str, list[Result]]:
    """Each contender `repeats` times, in turn; those returning None (not installed) are dropped."""
    results: dict[str, list[Result]] = {name: [] for name in contenders}
    for r in range(repeats):
        for name, fn in contenders.items():
            res = fn()
            if res is not None:
                results[name].append(res)
                if log:
                    log(f"  repeat {r + 1}/{repeats} {name}: {res.whole:.2f} s, "
                        f"{res.per_step * 1e6:.1f} us/step, test acc {res.accuracy:.3f}")
    return {k: v for k, v in results.items() if v}


def medians(results: dict[str, list[Result]], baseline: str) -> list[tuple]:
    """[(name, whole s, ratio, us/step, ratio, mean accuracy)], ratios against `baseline`."""
    base_whole = statistics.median(r.whole for r in results[baseline])
    base_step = statistics.median(r.per_step for r in results[baseline])
    rows = []
    for name, rs in results.items():
        whole = statistics.median(r.whole for r in rs)
        per_step = statistics.median(r.per_step for r in rs)
        rows.append((name, whole, whole / base_whole, per_step * 1e6, per_step / base_step,
                     float(np.mean([r.accuracy for r in rs]))))
    return rows


def print_table(rows: list[tuple], width: int = 28) -> None:
    print(f"{'contender':{width}s} {'whole run s':>11s} {'ratio':>6s} {'train us/step':>13s} "
          f"{'ratio':>6s} {'test acc':>8s}")
    for name, whole, rw, us, rs, acc in rows:
        print(f"{name:{width}s} {whole:11.2f} {rw:6.2f} {us:13.1f} {rs:6.2f} {acc:8.3f}")
