"""dlcore against a minimal hand-written `jax.jit` loop (and PyTorch when installed) on mnist1d/mlp.

    python benchmarks/mnist1d_mlp.py [--repeats 3] [--steps 6000] [--experiment mnist1d/mlp]

Same model (40-100-100-10, ReLU, residual second layer), same data (MNIST-1D, batch 100 in stored
order), same 6000 Adam steps. Each contender runs `--repeats` times, in turn, in this one process;
the median is reported, and the ratios against the hand-written loop measured in the same run:

* train us/step: steady-state time per step after the first (compiling) call. dlcore is timed
  doing the same work as the hand-written loop (loss logged every 100 steps, one evaluation and
  one checkpoint at the end), and once more with its default schedule (evaluation every 250
  steps, asynchronous checkpoints every 1000, whose first calls compile and set up inside the
  timed region);
* whole run: everything from building the data on the host to the final test accuracy, compile
  included (dlcore's includes writing its run directory).

The hand-written loop is written to be fast: data on the device, the batch cut inside the jitted
step with `dynamic_slice`, parameters donated. dlcore's `loop.steps_per_call` variants (several
steps per call with `lax.scan`) are timed too.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from dlcore import config as config_lib, loop, models, optim
from dlcore.data import load as load_data


def dlcore_run(cfg: dict) -> tuple[float, float, float]:
    """(whole-run seconds, train seconds per step, test accuracy) for one dlcore run."""
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        s = loop.run(cfg, d, progress=False)
        return time.perf_counter() - t0, 1.0 / s["steps_per_second"], s["metrics"]["test_accuracy"]


def handwritten_run(cfg: dict) -> tuple[float, float, float]:
    """The same training as a plain jit loop: the baseline every framework is measured against."""
    t0 = time.perf_counter()
    splits, spec = load_data(cfg["data"])
    net = models.build(cfg["model"], spec["num_outputs"])  # the identical Flax module and optax chain
    tx = optim.build(cfg["optim"], cfg["loop"]["steps"])
    x, y = jnp.asarray(splits["train"]["x"]), jnp.asarray(splits["train"]["y"])
    params = net.init(jax.random.key(0), x[:1])["params"]
    opt_state = tx.init(params)
    bs, n, steps = cfg["data"]["batch_size"], len(splits["train"]["x"]), cfg["loop"]["steps"]

    def loss_fn(p, xb, yb):
        return optax.softmax_cross_entropy_with_integer_labels(net.apply({"params": p}, xb),
                                                               yb).mean()

    def step(params, opt_state, i):
        start = (i * bs) % n
        xb = jax.lax.dynamic_slice_in_dim(x, start, bs)
        yb = jax.lax.dynamic_slice_in_dim(y, start, bs)
        loss, g = jax.value_and_grad(loss_fn)(params, xb, yb)
        updates, opt_state = tx.update(g, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    step = jax.jit(step, donate_argnums=(0, 1))
    params, opt_state, loss = step(params, opt_state, 0)
    jax.block_until_ready(params)
    t1 = time.perf_counter()
    for i in range(1, steps):
        params, opt_state, loss = step(params, opt_state, i)
    jax.block_until_ready(params)
    t2 = time.perf_counter()
    logits = net.apply({"params": params}, jnp.asarray(splits["test"]["x"]))
    acc = float((jnp.argmax(logits, -1) == jnp.asarray(splits["test"]["y"])).mean())
    return time.perf_counter() - t0, (t2 - t1) / (steps - 1), acc


def torch_run(cfg: dict) -> tuple[float, float, float] | None:
    """CleanRL-style PyTorch eager loop, the same recipe; None when torch is not installed."""
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(max(1, torch.get_num_threads()))
    t0 = time.perf_counter()
    splits, _ = load_data(cfg["data"])
    x, y = torch.tensor(splits["train"]["x"]), torch.tensor(splits["train"]["y"]).long()

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.l1, self.l2 = torch.nn.Linear(40, 100), torch.nn.Linear(100, 100)
            self.l3 = torch.nn.Linear(100, 10)

        def forward(self, v):
            h = self.l1(v).relu()
            return self.l3(h + self.l2(h).relu())

    net = Net()
    opt = torch.optim.Adam(net.parameters(), cfg["optim"]["learning_rate"])
    bs, n, steps = cfg["data"]["batch_size"], len(x), cfg["loop"]["steps"]
    t1 = time.perf_counter()
    for i in range(steps):
        b = (i * bs) % n
        loss = torch.nn.functional.cross_entropy(net(x[b:b + bs]), y[b:b + bs])
        opt.zero_grad()
        loss.backward()
        opt.step()
    t2 = time.perf_counter()
    with torch.no_grad():
        pred = net(torch.tensor(splits["test"]["x"])).argmax(-1).numpy()
    acc = float((pred == splits["test"]["y"]).mean())
    return time.perf_counter() - t0, (t2 - t1) / steps, acc


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--experiment", default="mnist1d/mlp")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--steps", type=int, default=6000)
    p.add_argument("--steps-per-call", default="1,10", help="dlcore variants to time")
    args = p.parse_args()
    base = config_lib.apply_overrides(config_lib.load(args.experiment),
                                      [f"loop.steps={args.steps}", "loop.plots=false"])
    # Same work as the hand-written loop: train, log the loss every 100 steps, evaluate and
    # checkpoint once at the end. Then what `dlcore run` does by default on top of that.
    same_work = config_lib.apply_overrides(base, [f"loop.eval_every={args.steps}",
                                                  f"loop.checkpoint_every={args.steps}"])
    contenders = {"hand-written jax.jit": lambda: handwritten_run(base)}
    for k in args.steps_per_call.split(","):
        cfg = config_lib.apply_overrides(same_work, [f"loop.steps_per_call={k}"])
        contenders[f"dlcore (steps_per_call={k})"] = lambda cfg=cfg: dlcore_run(cfg)
    contenders["dlcore, default schedule"] = lambda: dlcore_run(base)
    contenders["pytorch eager"] = lambda: torch_run(base)
    results: dict[str, list] = {name: [] for name in contenders}
    for _ in range(args.repeats):  # interleaved, so drift in machine speed hits all alike
        for name, fn in contenders.items():
            r = fn()
            if r is not None:
                results[name].append(r)
    results = {k: v for k, v in results.items() if v}
    base_whole = statistics.median(r[0] for r in results["hand-written jax.jit"])
    base_step = statistics.median(r[1] for r in results["hand-written jax.jit"])
    print(f"{args.experiment}, {args.steps} steps, median of {args.repeats}, "
          f"{jax.default_backend()} backend, jax {jax.__version__}")
    print(f"{'contender':28s} {'whole run s':>11s} {'ratio':>6s} {'train us/step':>13s} "
          f"{'ratio':>6s} {'test acc':>8s}")
    for name, rs in results.items():
        whole = statistics.median(r[0] for r in rs)
        per_step = statistics.median(r[1] for r in rs)
        acc = np.mean([r[2] for r in rs])
        print(f"{name:28s} {whole:11.2f} {whole / base_whole:6.2f} {per_step * 1e6:13.1f} "
              f"{per_step / base_step:6.2f} {acc:8.3f}")


if __name__ == "__main__":
    main()
