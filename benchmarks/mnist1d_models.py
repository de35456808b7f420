"""dlcore against a minimal hand-written `jax.jit` loop and PyTorch eager on mnist1d/cnn and /gru.

    python benchmarks/mnist1d_models.py [--models cnn,gru] [--repeats 3] [--steps 6000]
                                        [--scan-steps 0] [--torch-threads 0] [--seeds-check 0]

The companion of benchmarks/mnist1d_mlp.py for the two other MNIST-1D models. Per model, in this one
process, each contender runs `--repeats` times, in turn; medians are reported, with ratios against
the hand-written loop measured in the same run:

* dlcore: the experiment config through `dlcore.experiment.run`, doing the same work as the hand-written
  loop (loss logged every 100 steps, one evaluation and one checkpoint at the end) with
  `loop.steps_per_call` 1 and 10 (`lax.scan`), and once with the experiment's default schedule;
* hand-written `jax.jit`: written here without dlcore's models: a three-layer
  `lax.conv_general_dilated` net, and a bidirectional GRU as two `lax.scan`s in PyTorch's equations;
  PyTorch-default uniform initialisation, `optax.adam`, data on the device, the batch cut inside the
  step with `dynamic_slice`, parameters donated;
* hand-written `lax.scan`: the same step, all steps as one `lax.scan` in one compiled call
  (`--scan-steps k`: k steps per call instead, for a shorter measurement; the run still trains for
  `--steps`), compiled ahead of time so that its time per step excludes the compile;
* PyTorch eager (when installed), `torch.set_num_threads` = this machine's cores (or
  `--torch-threads`): Conv1d with padding=1, nn.GRU(bidirectional, batch_first), Adam.

Columns: train us/step is the steady state: for the hand-written loops and PyTorch every step
after the first (compiling) call; for dlcore the time between its first and last metrics-log rows
before the last step (metrics.jsonl; a row is written right after the sync that fetches the
metrics), so training, the logging syncs and, with the default schedule, the periodic evaluations
and checkpoints. The loop's own `steps_per_second` also counts the evaluation and checkpoint at the
last step, the evaluation's first compile included; it is printed under each table. Whole run is
everything from building the data on the host to the final test accuracy, compile included
(dlcore's includes writing its run directory). The test accuracies show that every contender
trained; they differ by initialisation draw (expected: CNN about 0.92-0.94, GRU 0.87-0.90).

`--seeds-check N` also times N seeds of each experiment as one vmapped program against N runs one
after another (`loop.seeds_in_one_program` true/false, default schedule, as `dlcore run --seeds N`)
and prints the time per seed-run of both: it is what `loop.seeds_in_one_program` should be.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from _common import (Result, dlcore_run, import_torch, interleave, jit_train, medians,
                     print_table, torch_accuracy, torch_train)
from dlcore import experiment
from dlcore.data import load as load_data

# --- the two architectures, written out (the experiment configs describe the same) ----------------

CNN_LAYERS = ((25, 5, 2), (25, 3, 2), (25, 3, 2))  # (channels, kernel, stride); padding 1, ReLU
GRU_HIDDEN = 6                                       # bidirectional, all 40 outputs -> dense
LENGTH, CLASSES = 40, 10
EXPECTED_MODEL = {  # the config keys the hand-written models hard-code
    "cnn": {"channels": (25, 25, 25), "kernel_sizes": (5, 3, 3), "strides": (2, 2, 2),
            "padding": 1, "activation": "relu", "head": "flatten", "init": "torch", "dense": ()},
    "gru": {"cell": "gru", "hidden_size": GRU_HIDDEN, "bidirectional": True, "layers": 1,
            "head": "flatten", "init": "torch"},
}


def conv_out(n: int, kernel: int, stride: int, padding: int = 1) -> int:
    return (n + 2 * padding - kernel) // stride + 1


def torch_uniform(key, shape, fan_in):
    """PyTorch's default for Linear/Conv1d kernels and biases and all GRU weights."""
    bound = 1.0 / np.sqrt(fan_in)
    return jax.random.uniform(key, shape, jnp.float32, -bound, bound)


def cnn_init(key):
    keys = iter(jax.random.split(key, 2 * len(CNN_LAYERS) + 2))
    params, c_in, n = [], 1, LENGTH
    for c, k, s in CNN_LAYERS:
        fan = c_in * k
        params.append((torch_uniform(next(keys), (k, c_in, c), fan),
                       torch_uniform(next(keys), (c,), fan)))
        c_in, n = c, conv_out(n, k, s)
    fan = n * c_in                                                   # 5 * 25 = 125
    params.append((torch_uniform(next(keys), (fan, CLASSES), fan),
                   torch_uniform(next(keys), (CLASSES,), fan)))
    return params


def cnn_apply(params, x):
    """x [b, 40] -> logits [b, 10]; channels-last (NWC), as Flax lays convolutions out."""
    h = x[..., None]
    for (w, b), (_, _, s) in zip(params[:-1], CNN_LAYERS):
        h = jax.lax.conv_general_dilated(h, w, (s,), [(1, 1)],
                                         dimension_numbers=("NWC", "WIO", "NWC"))
        h = jax.nn.relu(h + b)
    w, b = params[-1]
    return h.reshape(h.shape[0], -1) @ w + b


def gru_init(key):
    H = GRU_HIDDEN
    keys = iter(jax.random.split(key, 10))
    direction = lambda: {"w_i": torch_uniform(next(keys), (1, 3 * H), H),
                         "w_h": torch_uniform(next(keys), (H, 3 * H), H),
                         "b_i": torch_uniform(next(keys), (3 * H,), H),
                         "b_h": torch_uniform(next(keys), (3 * H,), H)}
    fwd, bwd = direction(), direction()
    fan = LENGTH * 2 * H                                             # 40 * 12 = 480
    head = (torch_uniform(next(keys), (fan, CLASSES), fan),
            torch_uniform(next(keys), (CLASSES,), fan))
    return {"fwd": fwd, "bwd": bwd, "head": head}


def gru_direction(p, xs, reverse: bool):
    """xs [T, b, 1] -> outputs [T, b, H]; torch.nn.GRU's equations, gates r, z, n."""
    xp = xs @ p["w_i"] + p["b_i"]                                    # all steps' input part at once

    def cell(h, xp_t):
        # jnp.split, not three slices: the gradient of slices is three pads and adds, of a split
        # one concatenate (measured ~20 % of this step on a 2-core CPU)
        xr, xz, xn = jnp.split(xp_t, 3, axis=-1)
        hr, hz, hn = jnp.split(h @ p["w_h"] + p["b_h"], 3, axis=-1)
        r, z = jax.nn.sigmoid(xr + hr), jax.nn.sigmoid(xz + hz)
        h = (1 - z) * jnp.tanh(xn + r * hn) + z * h
        return h, h

    h0 = jnp.zeros((xs.shape[1], GRU_HIDDEN), xs.dtype)
    return jax.lax.scan(cell, h0, xp, reverse=reverse)[1]


def gru_apply(params, x):
    """x [b, 40] -> logits [b, 10]: both directions' outputs at all steps, flattened, dense."""
    xs = x.T[..., None]                                              # time-major [T, b, 1]
    seq = jnp.concatenate([gru_direction(params["fwd"], xs, False),
                           gru_direction(params["bwd"], xs, True)], -1)
    w, b = params["head"]
    return jnp.swapaxes(seq, 0, 1).reshape(x.shape[0], -1) @ w + b  # [b, T * 2H], batch_first


JAX_MODELS = {"cnn": (cnn_init, cnn_apply), "gru": (gru_init, gru_apply)}


def torch_model(torch, model: str):
    nn = torch.nn
    if model == "cnn":
        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                layers, c_in, n = [], 1, LENGTH
                for c, k, s in CNN_LAYERS:
                    layers += [nn.Conv1d(c_in, c, k, stride=s, padding=1), nn.ReLU()]
                    c_in, n = c, conv_out(n, k, s)
                self.convs, self.head = nn.Sequential(*layers), nn.Linear(n * c_in, CLASSES)

            def forward(self, x):
                return self.head(self.convs(x[:, None, :]).flatten(1))
    else:
        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.gru = nn.GRU(1, GRU_HIDDEN, batch_first=True, bidirectional=True)
                self.head = nn.Linear(LENGTH * 2 * GRU_HIDDEN, CLASSES)

            def forward(self, x):
                return self.head(self.gru(x[..., None])[0].flatten(1))
    return Net()


# --- the contenders -------------------------------------------------------------------------------

def handwritten_run(cfg: dict, model: str, scan_steps: int | None = None) -> Result:
    """scan_steps None: one jitted step per call; else `lax.scan` of that many steps per call."""
    t0 = time.perf_counter()
    splits = load_data(cfg["data"]).splits
    init, apply = JAX_MODELS[model]
    x, y = jnp.asarray(splits["train"]["x"]), jnp.asarray(splits["train"]["y"])
    # Fresh function objects, so each run compiles its own programs as a dlcore run does.
    params = jax.jit(lambda k: init(k))(jax.random.key(0))

    def loss_fn(p, xb, yb):
        return optax.softmax_cross_entropy_with_integer_labels(apply(p, xb), yb).mean()

    steps = cfg["loop"]["steps"]
    params, per_step = jit_train(loss_fn, params, optax.adam(cfg["optim"]["learning_rate"]),
                                 x, y, cfg["data"]["batch_size"], steps,
                                 scan_steps=0 if scan_steps is None else scan_steps or steps)
    logits = jax.jit(lambda p, v: apply(p, v))(params, jnp.asarray(splits["test"]["x"]))
    acc = float((jnp.argmax(logits, -1) == jnp.asarray(splits["test"]["y"])).mean())
    return Result(time.perf_counter() - t0, per_step, acc)


def torch_run(cfg: dict, model: str, threads: int = 0) -> Result | None:
    torch = import_torch(threads)
    if torch is None:
        return None
    torch.manual_seed(0)
    t0 = time.perf_counter()
    splits = load_data(cfg["data"]).splits
    x, y = torch.tensor(splits["train"]["x"]), torch.tensor(splits["train"]["y"]).long()
    net = torch_model(torch, model)
    per_step = torch_train(torch, net, x, y, cfg["data"]["batch_size"], cfg["loop"]["steps"],
                           cfg["optim"]["learning_rate"])
    acc = torch_accuracy(torch, net, splits["test"]["x"], splits["test"]["y"])
    return Result(time.perf_counter() - t0, per_step, acc)


def check_config(cfg: dict, model: str) -> None:
    """The hand-written models hard-code the architecture: refuse a config that has moved on."""
    differ = {k: (cfg["model"].get(k), v) for k, v in EXPECTED_MODEL[model].items()
              if _norm(cfg["model"].get(k)) != _norm(v)}
    if differ or cfg["optim"]["name"] != "adam" or cfg["optim"]["schedule"] != "constant":
        sys.exit(f"{cfg['experiment']} no longer matches the hand-written {model} "
                 f"(config, hand-written): {differ}, optim {cfg['optim']['name']}/"
                 f"{cfg['optim']['schedule']}; update benchmarks/mnist1d_models.py")


def _norm(v):
    return tuple(v) if isinstance(v, list) else v


def seeds_check(base: dict, n: int, log) -> dict:
    """n seeds as one vmapped program and one after another (default schedule, as `dlcore run`)."""
    out = {}
    for in_one, key in ((True, "vmap"), (False, "sequential")):
        cfg = experiment.apply_overrides(base, [f"loop.seeds_in_one_program={str(in_one).lower()}"])
        log(f"  {n} seeds, seeds_in_one_program={in_one} ...")
        out[key] = dlcore_run(cfg, seeds=n)
    return out


def _seed_verdict(r: dict):
    """(vmapped, sequential, sequential/vmapped time, '1.75× faster' or '1.24× slower')."""
    v, s = r["vmap"], r["sequential"]
    ratio = s.whole / v.whole
    return v, s, ratio, (f"{ratio:.2f}× faster" if ratio >= 1 else f"{1 / ratio:.2f}× slower")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", default="cnn,gru", help="comma-separated: cnn, gru")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--steps", type=int, default=6000)
    p.add_argument("--steps-per-call", default="1,10", help="dlcore variants to time")
    p.add_argument("--scan-steps", type=int, default=0,
                   help="steps per call of the hand-written lax.scan variant (0: all in one call)")
    p.add_argument("--torch-threads", type=int, default=0,
                   help="torch.set_num_threads (0: this machine's cores)")
    p.add_argument("--seeds-check", type=int, default=0, metavar="N",
                   help="also time N seeds vmapped against N sequential runs (slow; 0: off)")
    args = p.parse_args()
    models = args.models.split(",")
    for m in models:
        if m not in JAX_MODELS:
            p.error(f"unknown model {m!r}; choose from {', '.join(JAX_MODELS)}")
    if args.scan_steps and args.steps % args.scan_steps:
        p.error(f"--steps ({args.steps}) must be a multiple of --scan-steps ({args.scan_steps})")
    log = lambda msg: print(msg, file=sys.stderr, flush=True)
    one_scan = not args.scan_steps or args.scan_steps == args.steps
    scan_name = ("hand-written, one lax.scan" if one_scan
                 else f"hand-written, lax.scan x{args.scan_steps}")

    tables, seed_rows = {}, {}
    for model in models:
        name = f"mnist1d/{model}"
        base = experiment.load(name, overrides=[f"loop.steps={args.steps}", "loop.plots=false"])
        check_config(base, model)
        same_work = experiment.apply_overrides(base, [f"loop.eval_every={args.steps}",
                                                      f"loop.checkpoint_every={args.steps}"])
        contenders = {
            "hand-written jax.jit": lambda: handwritten_run(base, model),
            scan_name: lambda: handwritten_run(base, model, args.scan_steps),
        }
        for k in args.steps_per_call.split(","):
            cfg = experiment.apply_overrides(same_work, [f"loop.steps_per_call={k}"])
            contenders[f"dlcore (steps_per_call={k})"] = \
                lambda cfg=cfg: dlcore_run(cfg, from_log=True)
        spc = base["loop"]["steps_per_call"]
        contenders[f"dlcore, default schedule ({spc})"] = lambda: dlcore_run(base, from_log=True)
        contenders["pytorch eager"] = lambda: torch_run(base, model, args.torch_threads)
        if not tables:  # first-use costs of the process (imports, thread pools, first compile)
            log("warming up (untimed)")
            warm = experiment.apply_overrides(same_work, ["loop.steps=10", "loop.log_every=10",
                                                          "loop.eval_every=10",
                                                          "loop.checkpoint_every=10"])
            handwritten_run(warm, model)
            dlcore_run(warm)
            torch_run(warm, model, args.torch_threads)
        log(f"{name}: {len(contenders)} contenders x {args.repeats} repeats")
        results = interleave(contenders, args.repeats, log)
        tables[name] = medians(results, "hand-written jax.jit")
        torch = import_torch(args.torch_threads)
        torch_note = (f", torch {torch.__version__} ({torch.get_num_threads()} threads)"
                      if torch else "")
        print(f"\n{name}, {args.steps} steps, median of {args.repeats}, "
              f"{jax.default_backend()} backend, jax {jax.__version__}{torch_note}", flush=True)
        print_table(tables[name], width=32)
        for contender, rs in results.items():
            reported = [r.reported for r in rs if r.reported]
            if reported:
                print(f"  {contender}: the loop's own figure (summary.json steps_per_second, "
                      f"with the last step's evaluation compile and checkpoint) "
                      f"{statistics.median(reported) * 1e6:.1f} us/step")
        if args.seeds_check:
            seed_rows[name] = seeds_check(base, args.seeds_check, log)

    if seed_rows:
        n = args.seeds_check
        print(f"\n{n} seeds x {args.steps} steps (default schedule): per seed-run, the whole run "
              f"and the loop's own train time per step (summary.json)")
        print(f"{'experiment':14s} {'vmap s/seed':>11s} {'seq s/seed':>10s} {'seq/vmap':>8s} "
              f"{'vmap us/step/seed':>17s} {'seq us/step':>11s} {'acc vmap':>8s} {'acc seq':>7s}  "
              "verdict")
        for name, r in seed_rows.items():
            v, s, ratio, verdict = _seed_verdict(r)
            print(f"{name:14s} {v.whole / n:11.2f} {s.whole / n:10.2f} {ratio:8.2f} "
                  f"{v.per_step / n * 1e6:17.1f} {s.per_step * 1e6:11.1f} {v.accuracy:8.3f} "
                  f"{s.accuracy:7.3f}  vmapped {verdict}")

    print("\nMarkdown (README):\n")
    print(f"{args.steps} steps, median of {args.repeats}, {jax.default_backend()} backend, "
          f"jax {jax.__version__}{torch_note}:\n")
    print("| model | contender | whole run s | ratio | train µs/step | ratio | test acc |")
    print("|---|---|---|---|---|---|---|")
    for name, rows in tables.items():
        for contender, whole, rw, us, rs, acc in rows:
            print(f"| `{name}` | {contender} | {whole:.2f} | {rw:.2f} | {us:.1f} | {rs:.2f} | "
                  f"{acc:.3f} |")
    if seed_rows:
        n = args.seeds_check
        print(f"\n| experiment | {n} seeds vmapped, s/seed | one after another, s/seed | ratio "
              f"| test accuracy ({n} seeds, vmapped) |")
        print("|---|---|---|---|---|")
        for name, r in seed_rows.items():
            v, s, _, verdict = _seed_verdict(r)
            print(f"| `{name}` | {v.whole / n:.2f} | {s.whole / n:.2f} | {verdict} vmapped | "
                  f"{v.accuracy:.3f} |")


if __name__ == "__main__":
    main()
