"""dlcore's GCN and GAT against PyTorch Geometric's on the same generated graphs.

    python benchmarks/gnn_vs_pyg.py [--large] [--quick] [--models gcn,gat] [--seeds 5]
                                    [--epochs 200] [--repeats 3] [--timed-epochs 30]

The graph, features, labels and split come from `dlcore.data.sbm.load` (fixed data seed 0) and
PyG gets the very same arrays (edge_index = [senders; receivers], both directions of every
edge). Graphs (a contextual stochastic block model, shaped like a citation graph):

    default  2,708 nodes (Cora's count), 7 classes, average degree 4 (~10,600 directed edges;
             Cora has 10,556), snr 1.5 (about 79 % of the edges inside a class, Cora: 81 %),
             500 gaussian features (PubMed's width), feature_snr 1.5 (the best classifier of
             the features alone scores ~0.61, as an MLP on Cora ~0.59; the GNNs ~0.76, GCN on
             Cora 0.815); Planetoid split: 20 training nodes a class, 500 validation, the rest
             (~2,068) test;
    --large  100,000 nodes and ~1,000,000 directed edges (degree 10), otherwise the same.

Models and training, the same in both frameworks (the papers' citation-graph protocols):

    GCN  Kipf & Welling: 2 layers, hidden 16, ReLU, dropout 0.5 on the input of both layers,
         Adam lr 0.01; PyG's GCNConv with cached=True, as its examples/gcn.py (dlcore's layer
         recomputes the normalisation every step);
    GAT  Velickovic et al.: 8 heads x 8 hidden, ELU, dropout 0.6 on the input of both layers
         and on the attention coefficients, output layer 8 heads averaged (the paper's PubMed
         output layer; dlcore's conv_out averages model.heads heads), Adam lr 0.005.

Both: weight decay 5e-4 as an L2 penalty 0.5 * 5e-4 * ||w||^2 added to the loss (torch Adam's
`weight_decay`, dlcore's `optim.l2`) on every parameter except the biases, in all layers (dlcore's
decay mask leaves biases out, so PyG gets two parameter groups); Glorot weights, zero biases;
mean cross-entropy over the training nodes; full-batch, one step an epoch; the test accuracy of
the final parameters (no early stopping, no model selection).

Two measurements per model:

1. Speed, in this one process, contenders interleaved (`--repeats` rounds of `--timed-epochs`
   epochs each, after an untimed compile / warm-up), so drift in machine load hits all alike:
   * dlcore: `experiment.build(config)`'s algorithm and data driven as `dlcore.loop` drives them
     (generative_speed.dlcore_driver: loop.steps_per_call epochs a jitted call, a lax.scan, the
     state donated, metrics summed on the device);
   * PyG: the standard loop, model.train(); optimizer.zero_grad(); loss.backward();
     optimizer.step(), with torch.set_num_threads = this machine's cores, and again with 1
     thread (on a shared machine 2 OpenMP threads can be far slower than 1).
   Each contender's figure is its fastest round (the least disturbed, as timeit advises), its
   median round in brackets; ratio = dlcore / the faster PyG setting, fastest against fastest
   (medians against medians in brackets).
2. Accuracy, `--seeds` seeds: dlcore through `experiment.run` (seeds one after another, so its
   own `steps_per_second` is a single run's: everything after the first compiled call, the final
   checkpoint included, evaluations excluded; printed as 'loop' epochs/s), PyG with
   torch.manual_seed(seed) and the thread setting of the faster median round; test accuracy
   mean +- std (population std over seeds) of both. They draw different random numbers, so
   they agree within seed noise, not exactly (the layers themselves match PyG's with copied
   weights: tests/test_gnn_layers.py).

Default: 200 epochs, 5 seeds, 3 rounds of 30 timed epochs, loop.steps_per_call 10.
--quick: 20 epochs, 1 seed, 1 round of 10 timed epochs (a check that everything runs).
--large: by default 20 epochs (not 200: an epoch of GAT takes seconds here), 1 seed,
3 rounds of 3 timed epochs, loop.steps_per_call 1; the accuracy is then after 20 epochs.

The script prints a markdown table, with the date, versions, CPU count and the load average
(on a shared machine it matters: a busy second core slows PyG's 2 OpenMP threads up to 20-fold,
dlcore 2- to 2.5-fold).

Measured (2-core Xeon CPU, jax 0.10.2, torch 2.13.0, torch_geometric 2.8.1, one other process
busy on the machine, load average ~1.4; epochs/s the fastest of 3 rounds, ratio against PyG's
faster thread setting, 2 threads here):
  default (104 s)  GCN  acc dlcore 0.752 +- 0.012, PyG 0.746 +- 0.015; 241 vs 53.5 epochs/s, 4.50
                   GAT  acc dlcore 0.764 +- 0.004, PyG 0.770 +- 0.009;  91.9 vs 29.7, 3.09
  --large (290 s)  GCN  3.34 vs 1.17 epochs/s, 2.86 (after 20 epochs acc 0.659 vs 0.668)
                   GAT  0.75 vs 0.34 epochs/s, 2.21 (after 20 epochs: 0.187 vs 0.150)
  --large --epochs 200 (1,223 s, 1 seed): GCN acc 0.699 vs 0.701 (3.06 vs 1.11 epochs/s, 2.76),
                   GAT 0.607 vs 0.652 (0.82 vs 0.37, 2.19); one seed each (seed noise at
                   this size not measured).
  --models gat --seeds 20 --repeats 1: acc 0.762 +- 0.008 vs 0.764 +- 0.009; with the load at
                   ~3 (other jobs) 38.7 vs 23.1 epochs/s (PyG 1 thread; 2 threads: 1.3), 1.67.
Before dlcore.models.gnn drew its dropout masks from 16 bits an entry (flax's nn.Dropout, one
Threefry hash an entry) the default's ratios were 2.14 (GCN, 109 epochs/s) and 1.93 (GAT, 59).
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import sys
import tempfile
import time
from functools import partial

import jax
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import cpu_threads  # noqa: E402
from generative_speed import dlcore_driver  # noqa: E402
from dlcore import experiment  # noqa: E402

DEFAULT_GRAPH = {"nodes": 2708, "classes": 7, "degree": 4.0, "snr": 1.5, "features": "gaussian",
                 "feature_dim": 500, "feature_snr": 1.5, "train_per_class": 20,
                 "validation": 500, "spectral": False, "seed": 0}
LARGE_GRAPH = {**DEFAULT_GRAPH, "nodes": 100_000, "degree": 10.0}

MODELS = {
    "gcn": {"model": {"name": "gnn", "conv": "gcn", "hidden": [16], "activation": "relu",
                      "dropout": 0.5},
            "lr": 0.01},
    "gat": {"model": {"name": "gnn", "conv": "gat", "hidden": [64], "heads": 8,
                      "activation": "elu", "dropout": 0.6, "attention_dropout": 0.6},
            "lr": 0.005},
}
WEIGHT_DECAY = 5e-4


def dlcore_config(model: str, graph: dict, epochs: int, k: int) -> dict:
    return {"algorithm": "graph", "data": {"name": "sbm", **graph},
            "model": MODELS[model]["model"],
            "optim": {"name": "adam", "learning_rate": MODELS[model]["lr"], "l2": WEIGHT_DECAY},
            "loop": {"steps": epochs, "steps_per_call": k, "log_every": epochs,
                     "eval_every": epochs, "checkpoint_every": epochs, "plots": False,
                     "seeds_in_one_program": False}}


# --- PyG ---------------------------------------------------------------------------------------

def pyg_tensors(torch, data) -> dict:
    """The arrays of dlcore's data as torch tensors (the same numbers)."""
    g = data.splits["train"]["graph"]
    edge_index = np.stack([np.asarray(g.senders), np.asarray(g.receivers)]).astype(np.int64)
    return {"x": torch.from_numpy(np.array(g.nodes, np.float32)),
            "edge_index": torch.from_numpy(edge_index),
            "y": torch.from_numpy(np.asarray(data.splits["train"]["y"]).astype(np.int64)),
            "train": torch.from_numpy(np.asarray(data.splits["train"]["mask"])),
            "test": torch.from_numpy(np.asarray(data.splits["test"]["mask"]))}


def pyg_model(torch, model: str, features: int, classes: int):
    """PyG's two-layer GCN or GAT as in its examples (gcn.py, gat.py), settings above."""
    import torch.nn.functional as F
    from torch_geometric.nn import GATConv, GCNConv

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            if model == "gcn":
                self.p, self.act = 0.5, F.relu
                self.conv1 = GCNConv(features, 16, cached=True)
                self.conv2 = GCNConv(16, classes, cached=True)
            else:
                self.p, self.act = 0.6, F.elu
                self.conv1 = GATConv(features, 8, heads=8, dropout=0.6)
                self.conv2 = GATConv(64, classes, heads=8, concat=False, dropout=0.6)

        def forward(self, x, edge_index):
            x = F.dropout(x, self.p, training=self.training)
            x = self.act(self.conv1(x, edge_index))
            x = F.dropout(x, self.p, training=self.training)
            return self.conv2(x, edge_index)
    return Net()


class PygRun:
    """One PyG model and its Adam, trained epoch by epoch; L2 on every non-bias parameter."""

    def __init__(self, torch, model: str, t: dict, classes: int, lr: float, seed: int):
        self.torch, self.t = torch, t
        torch.manual_seed(seed)
        self.net = pyg_model(torch, model, t["x"].shape[1], classes)
        named = list(self.net.named_parameters())
        self.opt = torch.optim.Adam([
            {"params": [p for n, p in named if not n.endswith("bias")],
             "weight_decay": WEIGHT_DECAY},
            {"params": [p for n, p in named if n.endswith("bias")], "weight_decay": 0.0}], lr=lr)

    def epochs(self, n: int) -> float:
        """n training epochs; returns their seconds."""
        F, t = self.torch.nn.functional, self.t
        t0 = time.perf_counter()
        for _ in range(n):
            self.net.train()
            self.opt.zero_grad()
            out = self.net(t["x"], t["edge_index"])
            loss = F.cross_entropy(out[t["train"]], t["y"][t["train"]])
            loss.backward()
            self.opt.step()
        return time.perf_counter() - t0

    def test_accuracy(self) -> float:
        t = self.t
        self.net.eval()
        with self.torch.no_grad():
            pred = self.net(t["x"], t["edge_index"]).argmax(-1)
        return float((pred[t["test"]] == t["y"][t["test"]]).float().mean())


# --- dlcore --------------------------------------------------------------------------------------

class DlcoreRun:
    """dlcore's compiled training call (as the loop's), k epochs a call; compiled on creation."""

    def __init__(self, algorithm, data, k: int, seed: int = 0):
        call, start = dlcore_driver(algorithm, data, k, vmapped=False)
        carry, keys, _ = start([seed])
        split = jax.device_put(data.splits["train"])
        self.k = k
        self.call = partial(call, train_split=split, key_data=keys["data"],
                            key_step=keys["step"])
        t0 = time.perf_counter()
        self.carry = jax.block_until_ready(self.call(carry))
        self.first_call = time.perf_counter() - t0

    def epochs(self, n: int) -> float:
        t0 = time.perf_counter()
        for _ in range(n // self.k):
            self.carry = self.call(self.carry)
        jax.block_until_ready(self.carry)
        return time.perf_counter() - t0


# --- the measurements ----------------------------------------------------------------------------

def speed(model: str, algorithm, data, t: dict, torch, args) -> dict:
    """{contender: (fastest epochs/s, median epochs/s)}, contenders interleaved."""
    classes = data.spec["num_outputs"]
    cores = cpu_threads()
    dl = DlcoreRun(algorithm, data, args.k)
    contenders = {"dlcore": (dl, None)}
    for threads in sorted({cores, 1}, reverse=True):
        torch.set_num_threads(threads)
        run = PygRun(torch, model, t, classes, MODELS[model]["lr"], seed=0)
        run.epochs(args.warmup)  # first calls: allocations, the cached GCN normalisation
        contenders[f"PyG {threads} thread{'s' if threads > 1 else ''}"] = (run, threads)
    rates = {name: [] for name in contenders}
    for _ in range(args.repeats):
        for name, (run, threads) in contenders.items():
            if threads:
                torch.set_num_threads(threads)
            rates[name].append(args.timed_epochs / run.epochs(args.timed_epochs))
    out = {name: (max(r), statistics.median(r)) for name, r in rates.items()}
    print(f"  speed ({args.repeats} rounds of {args.timed_epochs} epochs; dlcore's first call "
          f"{dl.first_call:.1f} s): " + ", ".join(
              f"{n} {best:.2f} epochs/s (median {med:.2f})" for n, (best, med) in out.items()),
          flush=True)
    return out


def accuracy(model: str, config: dict, data, t: dict, torch, threads: int, args) -> dict:
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        s = experiment.run(config, d, seeds=args.seeds, progress=False)
        dl_seconds = time.perf_counter() - t0
    dl_acc = s["per_seed"]["test_accuracy"]
    torch.set_num_threads(threads)
    pyg_acc, pyg_rates = [], []
    t0 = time.perf_counter()
    for seed in range(args.seeds):
        run = PygRun(torch, model, t, data.spec["num_outputs"], MODELS[model]["lr"], seed)
        first = min(args.warmup, args.epochs - 1)
        run.epochs(first)
        pyg_rates.append((args.epochs - first) / run.epochs(args.epochs - first))
        pyg_acc.append(run.test_accuracy())
    pyg_seconds = time.perf_counter() - t0
    out = {"dlcore": dl_acc, "pyg": pyg_acc, "dlcore_loop_rate": s["steps_per_second"],
           "pyg_run_rate": float(np.mean(pyg_rates))}
    print(f"  accuracy ({args.seeds} seed(s), {args.epochs} epochs): dlcore {fmt(dl_acc)} "
          f"({dl_seconds:.1f} s with compiles; loop {out['dlcore_loop_rate'] or float('nan'):.2f}"
          f" epochs/s), PyG {fmt(pyg_acc)} ({pyg_seconds:.1f} s, {threads} thread(s), "
          f"{out['pyg_run_rate']:.2f} epochs/s)", flush=True)
    return out


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f
                        if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def fmt(values) -> str:
    return f"{np.mean(values):.3f} ± {np.std(values):.3f}"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--large", action="store_true", help="100,000 nodes, ~1,000,000 edges")
    p.add_argument("--quick", action="store_true", help="20 epochs, 1 seed, 1 short round")
    p.add_argument("--models", default="gcn,gat")
    p.add_argument("--seeds", type=int, default=None, help="default 5 (--large, --quick: 1)")
    p.add_argument("--epochs", type=int, default=None, help="default 200 (--large, --quick: 20)")
    p.add_argument("--repeats", type=int, default=None, help="timed rounds (default 3)")
    p.add_argument("--timed-epochs", type=int, default=None,
                   help="epochs a timed round (default 30; --large 3, --quick 10)")
    p.add_argument("--steps-per-call", type=int, default=None, dest="k",
                   help="dlcore's loop.steps_per_call (default 10; --large 1)")
    args = p.parse_args()
    small = not args.large
    defaults = dict(seeds=5 if small and not args.quick else 1,
                    epochs=200 if small and not args.quick else 20,
                    repeats=1 if args.quick else 3,
                    timed_epochs=10 if args.quick else (30 if small else 3),
                    k=10 if small else 1)
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.warmup = 5
    models = args.models.split(",")
    bad = [m for m in models if m not in MODELS]
    if bad:
        p.error(f"unknown model(s) {bad}; choose from {sorted(MODELS)}")
    for key in ("epochs", "timed_epochs"):
        if getattr(args, key) % args.k:
            p.error(f"--{key.replace('_', '-')} ({getattr(args, key)}) must be a multiple of "
                    f"--steps-per-call ({args.k})")
    if args.epochs <= args.warmup:
        p.error(f"--epochs must be > {args.warmup}")

    try:
        import torch
        import torch_geometric
    except ImportError as e:  # the comparison needs both; dlcore's side alone is its experiments
        print(f"gnn_vs_pyg: needs torch and torch_geometric ({e}); pip install torch "
              "torch_geometric", file=sys.stderr)
        return 2
    graph = LARGE_GRAPH if args.large else DEFAULT_GRAPH
    started = time.perf_counter()
    print(f"{datetime.date.today()}, {cpu_name()}, "
          f"{os.cpu_count()} CPUs ({cpu_threads()} usable), load average "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}; jax {jax.__version__} "
          f"({jax.default_backend()}), torch {torch.__version__}, torch_geometric "
          f"{torch_geometric.__version__}", flush=True)

    rows = []
    for model in models:
        config = dlcore_config(model, graph, args.epochs, args.k)
        t0 = time.perf_counter()
        algorithm, data = experiment.build(config)
        g = data.splits["train"]["graph"]
        size = f"{g.num_nodes:,} nodes, {g.num_edges:,} edges"
        bayes = data.spec["baselines"]["test"]["feature_bayes_accuracy"]
        print(f"{model.upper()} on the SBM graph of {size}, {g.nodes.shape[1]} features, "
              f"{data.spec['num_outputs']} classes (built in {time.perf_counter() - t0:.1f} s; "
              f"the features alone classify the test nodes at best with accuracy {bayes:.3f})",
              flush=True)
        t = pyg_tensors(torch, data)
        rates = speed(model, algorithm, data, t, torch, args)
        pyg_best = max((n for n in rates if n != "dlcore"), key=lambda n: rates[n][0])
        pyg_typical = max((n for n in rates if n != "dlcore"), key=lambda n: rates[n][1])
        threads = int(pyg_typical.split()[1])
        acc = accuracy(model, config, data, t, torch, threads, args)
        rows.append((model.upper(), size, acc, rates, pyg_best, pyg_typical))

    print(f"\n{args.epochs} epochs, {args.seeds} seed(s); epochs/s: fastest of {args.repeats} "
          f"rounds of {args.timed_epochs} (median); load average at the end "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}; this run took "
          f"{time.perf_counter() - started:.0f} s\n")
    cores = cpu_threads()
    print(f"| model | graph | dlcore test acc | PyG test acc | dlcore epochs/s | PyG epochs/s "
          f"({cores} threads) | PyG epochs/s (1 thread) | ratio dlcore / PyG |")
    print("|---|---|---|---|---|---|---|---|")
    cell = lambda r: f"{r[0]:.2f} ({r[1]:.2f})"  # noqa: E731
    for name, size, acc, rates, best, typical in rows:
        pyg = {n.split()[1]: r for n, r in rates.items() if n != "dlcore"}
        nan = (float("nan"),) * 2
        print(f"| {name} | {size} | {fmt(acc['dlcore'])} | {fmt(acc['pyg'])} | "
              f"{cell(rates['dlcore'])} | {cell(pyg.get(str(cores), nan))} | {cell(pyg['1'])} | "
              f"{rates['dlcore'][0] / rates[best][0]:.2f} "
              f"({rates['dlcore'][1] / rates[typical][1]:.2f}) |")
    print("\nepochs/s: the fastest round (the median round). ratio: dlcore's epochs/s over the "
          "faster PyG setting's. Accuracy: mean ± std over seeds of the final test accuracy. "
          "dlcore's own loop figure (summary steps_per_second, one seed's run): "
          + ", ".join(f"{row[0]} {row[2]['dlcore_loop_rate'] or float('nan'):.2f}"
                      for row in rows) + " epochs/s.")

    return 0


if __name__ == "__main__":
    sys.exit(main())
