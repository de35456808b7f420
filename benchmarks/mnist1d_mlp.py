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
import time

import jax
import jax.numpy as jnp
import optax

from _common import (Result, dlcore_run, import_torch, interleave, jit_train, medians,
                     print_table, torch_accuracy, torch_train)
from dlcore import experiment, models, optim
from dlcore.data import load as load_data


def handwritten_run(cfg: dict) -> Result:
    """The same training as a plain jit loop: the baseline every framework is measured against."""
    t0 = time.perf_counter()
    data = load_data(cfg["data"])
    splits, spec = data.splits, data.spec
    # the identical Flax module and optax chain
    net = models.build(cfg["model"], spec["input_shape"], spec["num_outputs"]).module
    tx = optim.build(cfg["optim"], cfg["loop"]["steps"])
    x, y = jnp.asarray(splits["train"]["x"]), jnp.asarray(splits["train"]["y"])
    # jitted, as mnist1d_models.py's: op by op, a Transformer's init took 5 s on a 2-core CPU
    params = jax.jit(lambda k: net.init(k, x[:1])["params"])(jax.random.key(0))

    def loss_fn(p, xb, yb):
        return optax.softmax_cross_entropy_with_integer_labels(net.apply({"params": p}, xb),
                                                               yb).mean()

    params, per_step = jit_train(loss_fn, params, tx, x, y, cfg["data"]["batch_size"],
                                 cfg["loop"]["steps"])
    logits = jax.jit(lambda p, v: net.apply({"params": p}, v))(params,
                                                                jnp.asarray(splits["test"]["x"]))
    acc = float((jnp.argmax(logits, -1) == jnp.asarray(splits["test"]["y"])).mean())
    return Result(time.perf_counter() - t0, per_step, acc)


def torch_run(cfg: dict) -> Result | None:
    """CleanRL-style PyTorch eager loop, the same recipe; None when torch is not installed."""
    torch = import_torch()
    if torch is None:
        return None
    t0 = time.perf_counter()
    splits = load_data(cfg["data"]).splits
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
    per_step = torch_train(torch, net, x, y, cfg["data"]["batch_size"], cfg["loop"]["steps"],
                           cfg["optim"]["learning_rate"])
    acc = torch_accuracy(torch, net, splits["test"]["x"], splits["test"]["y"])
    return Result(time.perf_counter() - t0, per_step, acc)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--experiment", default="mnist1d/mlp")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--steps", type=int, default=6000)
    p.add_argument("--steps-per-call", default="1,10", help="dlcore variants to time")
    args = p.parse_args()
    base = experiment.load(args.experiment, overrides=[f"loop.steps={args.steps}",
                                                       "loop.plots=false"])
    # Same work as the hand-written loop: train, log the loss every 100 steps, evaluate and
    # checkpoint once at the end. Then what `dlcore run` does by default on top of that.
    same_work = experiment.apply_overrides(base, [f"loop.eval_every={args.steps}",
                                                  f"loop.checkpoint_every={args.steps}"])
    contenders = {"hand-written jax.jit": lambda: handwritten_run(base)}
    for k in args.steps_per_call.split(","):
        cfg = experiment.apply_overrides(same_work, [f"loop.steps_per_call={k}"])
        contenders[f"dlcore (steps_per_call={k})"] = lambda cfg=cfg: dlcore_run(cfg)
    contenders["dlcore, default schedule"] = lambda: dlcore_run(base)
    contenders["pytorch eager"] = lambda: torch_run(base)
    results = interleave(contenders, args.repeats)
    print(f"{args.experiment}, {args.steps} steps, median of {args.repeats}, "
          f"{jax.default_backend()} backend, jax {jax.__version__}")
    print_table(medians(results, "hand-written jax.jit"))


if __name__ == "__main__":
    main()
