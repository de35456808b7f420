"""Meta-training throughput in tasks per second: dlcore's vmapped meta-update against a per-task
Python loop over the same jitted inner step, in one process.

    python benchmarks/meta_tasks.py [--repeats 5] [--steps 200] [--no-glyphs] [--json out.json]

Per variant (sinusoid/maml, sinusoid/fomaml and, where its config exists, glyphs/maml in its quick
data size), both contenders train from the same initial state on the same meta-batches, drawn on
the device beforehand and cycled (their drawing is not timed):

* `dlcore step`: one jitted `algorithm.step` of dlcore.algorithms.maml per meta-batch (state
  donated): every task adapted on its support set, the query losses averaged and differentiated
  through the inner loop in one `vmap`-ped program, then the optimizer update;
* `per-task loop`: what a learn2learn-style loop does: for each task of the meta-batch, one call of
  a jitted function of (params, task) built from the same pieces (dlcore.meta.adapt on the support
  set, dlcore.meta.task_loss on the query set, its gradient w.r.t. the initial params); the
  gradients summed and averaged as JAX arrays on the host side; then the same optax update, jitted;
* `unrolled`: for reference, one jitted program per meta-batch whose tasks are a Python loop inside
  it (the per-task function unrolled, no `vmap`), gradients averaged and the update applied in it.

Before timing, one update of each from the same state and meta-batch is compared (the largest
parameter difference is printed: the two compute the same meta-gradient). The first calls
(compiles) are not timed; contenders run in turn `--repeats` times so drift in machine speed hits
all alike; the table gives medians and the ratios dlcore step / per-task loop and unrolled /
per-task loop.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from functools import partial

import jax
import jax.numpy as jnp
import optax

from dlcore import config as config_lib, data as data_lib, experiment, meta, models, optim
from dlcore.algorithms import maml
from dlcore.config import ConfigError

VARIANTS = ("sinusoid/maml", "sinusoid/fomaml")
GLYPHS = "glyphs/maml"


def setup(name: str, n_batches: int):
    """The variant's config, algorithm, meta-batches and the per-task baseline's pieces."""
    # quick: the small glyph set. The dlcore step is measured vmapped (the experiment may unroll
    # its tasks: that form is the `unrolled` contender)
    config = experiment.load(name, quick=name.startswith("glyphs/"),
                             overrides=["meta.task_batching=vmap"])
    data = data_lib.load(config["data"])
    splits, spec, sample = data.splits, data.spec, data.sample
    algorithm = maml.make(config, data, config["loop"]["steps"])
    key = jax.random.key(1)
    batches = [jax.jit(sample)(splits["train"], t, key) for t in range(n_batches)]
    batches = [{"support": b["support"], "query": b["query"]} for b in batches]
    tasks = [[jax.tree.map(lambda a, i=i: a[i], b) for i in range(len(b["query"]["y"]))]
             for b in batches]  # pre-cut: the loop baseline is handed its tasks one by one
    m = meta.validate(config["meta"])
    model = models.build(config["model"], spec["input_shape"], spec["num_outputs"])
    loss = meta.task_loss(meta.model_apply(model, spec["input_shape"]), spec["task"])
    tx = optim.build(config["optim"], config["loop"]["steps"])

    def one_task_grad(params, task):  # one task: adapt on the support set, query loss, its gradient
        def outer(p):
            adapted = meta.adapt(loss, p, task["support"], m["inner_lr"], m["inner_steps"],
                                 m["inner_grad_clip"], m["first_order"])
            return loss(adapted, task["query"])[0]
        return jax.value_and_grad(outer)(params)

    task_grad = jax.jit(one_task_grad)

    @partial(jax.jit, donate_argnums=(0, 1))
    def apply_update(params, opt_state, grads):
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    def loop_step(params, opt_state, batch_tasks):
        grads = None
        for task in batch_tasks:
            _, g = task_grad(params, task)
            grads = g if grads is None else jax.tree.map(jnp.add, grads, g)
        grads = jax.tree.map(lambda g: g / len(batch_tasks), grads)
        return apply_update(params, opt_state, grads)

    @partial(jax.jit, donate_argnums=(0, 1))
    def unrolled_step(params, opt_state, batch):  # one program, a Python loop over the tasks in it
        n = len(batch["query"]["y"])
        grads = [one_task_grad(params, jax.tree.map(lambda a, i=i: a[i], batch))[1] for i in range(n)]
        grads = jax.tree.map(lambda *g: sum(g) / n, *grads)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    return config, algorithm, batches, tasks, loop_step, unrolled_step


def copy_tree(tree):
    return jax.tree.map(jnp.copy, tree)


def bench_variant(name: str, steps: int, repeats: int, n_batches: int, log) -> dict:
    config, algorithm, batches, tasks, loop_step, unrolled_step = setup(name, n_batches)
    state0 = jax.jit(algorithm.init)(jax.random.key(0))
    step = jax.jit(algorithm.step, donate_argnums=0)
    key = jax.random.key(2)

    # the same update from the same state: the two compute one meta-gradient
    a, _ = step(copy_tree(state0), batches[0], key)
    p, _ = loop_step(copy_tree(state0.params), copy_tree(state0.opt_state), tasks[0])
    diff = max(float(jnp.abs(x - y).max()) for x, y in zip(jax.tree.leaves(a.params),
                                                            jax.tree.leaves(p)))
    log(f"{name}: {len(tasks[0])} tasks per meta-batch; one update, dlcore step vs per-task loop: "
        f"largest parameter difference {diff:.1e}")

    state = copy_tree(state0)
    params, opt_state = copy_tree(state0.params), copy_tree(state0.opt_state)
    params_u, opt_state_u = copy_tree(state0.params), copy_tree(state0.opt_state)

    def run_dlcore(n):
        nonlocal state
        for i in range(n):
            state, _ = step(state, batches[i % n_batches], jax.random.fold_in(key, i))
        jax.block_until_ready(state)

    def run_loop(n):
        nonlocal params, opt_state
        for i in range(n):
            params, opt_state = loop_step(params, opt_state, tasks[i % n_batches])
        jax.block_until_ready(params)

    def run_unrolled(n):
        nonlocal params_u, opt_state_u
        for i in range(n):
            params_u, opt_state_u = unrolled_step(params_u, opt_state_u, batches[i % n_batches])
        jax.block_until_ready(params_u)

    contenders = {"dlcore step": run_dlcore, "per-task loop": run_loop, "unrolled": run_unrolled}
    for fn in contenders.values():
        fn(1)  # compile
    n_tasks = len(tasks[0])
    rates = {c: [] for c in contenders}
    for r in range(repeats):
        for c, fn in contenders.items():
            t0 = time.perf_counter()
            fn(steps)
            rates[c].append(steps * n_tasks / (time.perf_counter() - t0))
            log(f"  repeat {r + 1}/{repeats} {c}: {_rate(rates[c][-1])} tasks/s")
    med = {c: statistics.median(v) for c, v in rates.items()}
    return {"meta_batch": n_tasks, "steps": steps, "max_param_difference": diff,
            "inner_steps": config["meta"]["inner_steps"], "first_order": config["meta"]["first_order"],
            "tasks_per_second": {c: {"median": med[c], "all": rates[c]} for c in contenders},
            "ratio": med["dlcore step"] / med["per-task loop"],
            "unrolled_ratio": med["unrolled"] / med["per-task loop"]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--steps", type=int, default=200, help="meta-updates per repeat (sinusoid)")
    p.add_argument("--glyph-steps", type=int, default=20, help="meta-updates per repeat (glyphs)")
    p.add_argument("--no-glyphs", action="store_true", help="skip glyphs/maml")
    p.add_argument("--batches", type=int, default=10, help="distinct meta-batches, cycled")
    p.add_argument("--json", default="", help="also write the results to this file")
    p.add_argument("--quiet", action="store_true", help="only the table")
    args = p.parse_args(argv)
    log = (lambda s: None) if args.quiet else (lambda s: print(s, flush=True))
    print(f"{jax.default_backend()} backend, jax {jax.__version__}, {args.repeats} repeats")
    variants = {name: args.steps for name in VARIANTS}
    if not args.no_glyphs:
        try:
            config_lib.resolve(GLYPHS)
            variants[GLYPHS] = args.glyph_steps
        except ConfigError:
            log(f"{GLYPHS}: no such experiment; skipped")
    results = {name: bench_variant(name, steps, args.repeats, args.batches, log)
               for name, steps in variants.items()}

    print("tasks per second, medians; ratio = dlcore step / per-task loop")
    print(f"{'variant':16s} {'meta-batch':>10s} {'dlcore step':>12s} {'per-task loop':>14s} "
          f"{'ratio':>6s} {'unrolled':>9s} {'ratio':>6s}")
    for name, r in results.items():
        tps = {c: v["median"] for c, v in r["tasks_per_second"].items()}
        print(f"{name:16s} {r['meta_batch']:10d} {_rate(tps['dlcore step']):>12s} "
              f"{_rate(tps['per-task loop']):>14s} {r['ratio']:6.2f} {_rate(tps['unrolled']):>9s} "
              f"{r['unrolled_ratio']:6.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"backend": jax.default_backend(), "jax": jax.__version__,
                       "repeats": args.repeats, "variants": results}, f, indent=2)
            f.write("\n")
    return 0


def _rate(x: float) -> str:
    return f"{x:,.0f}" if x >= 100 else f"{x:.1f}"


if __name__ == "__main__":
    raise SystemExit(main())
