"""Transfer learning against training from scratch on digits 5-9 of the 5,000 real MNIST digits,
with 10, 50 and all (400) labels per class: the table of Keras's MNIST transfer example's shape.

Command:  python experiments/studies/transfer.py [--seeds 3] [--steps 400] [--labels 10,50,all]
          [--quick] [--out runs/studies/transfer]
Runtime:  about 6 minutes on a 2-core CPU (334 s measured, shared with other jobs): one source
          run, then six runs of 3 seeds each, seeds vmapped. A finished run in <out>/<label> is
          reused, so a second call re-reports at once.
Writes:   <out>/transfer.md (the table) and transfer.json; each run in <out>/<label>.

1. The source: experiments/mnist_digits/cnn_0to4.py (digits 0-4, all 2,000 training digits),
   trained once in <out>/cnn_0to4.
2. Each cell trains experiments/mnist_digits/transfer_5to9.py on digits 5-9 for --steps steps of
   batches of min(32, labels) with data.labels = 5 x labels per class (chosen stratified with
   split_seed 0: exactly that many of each digit; dlcore.data.few_labels) and is scored on the
   same 500 test digits 5-9:
   * transfer: every parameter from the source's seed 0 except a fresh output layer
     (transfer.reinit ['head']); the convolutions frozen (optim.freeze ['conv_*']), so only
     dense_0 and head train;
   * scratch: the same network, optimizer, batches and steps from a fresh initialisation, every
     layer trained (transfer.init_from '', optim.freeze []).
Each cell is `dlcore run mnist_digits/transfer_5to9 --seeds N --set ...` with the overrides
printed in transfer.json.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from dlcore import cli, experiment as experiment_lib, study

SOURCE, TARGET = "mnist_digits/cnn_0to4", "mnist_digits/transfer_5to9"
PER_CLASS = 400  # training digits of each class in the fixed split (2,000 of digits 5-9)
HEADER = ["labels per class", "training digits", "transfer (frozen convs, new head)",
          "from scratch", "difference"]


def overrides(per_class: int | None, method: str, source: Path, steps: int) -> list[str]:
    """The --set overrides of one cell (per_class None: every label)."""
    n = 5 * (per_class or PER_CLASS)
    sets = [f"data.batch_size={min(32, n)}", f"loop.steps={steps}",
            f"loop.eval_every={steps}", f"loop.checkpoint_every={steps}",
            f"loop.log_every={min(100, steps)}"]
    if per_class is not None:
        sets.append(f"data.labels={n}")
    if method == "transfer":
        return sets + [f"transfer.init_from={source}"]
    return sets + ["transfer.init_from=", "optim.freeze=[]"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--steps", type=int, default=400, help="training steps of every 5-9 run")
    p.add_argument("--labels", default="10,50,all", help="labels per class ('all': 400)")
    p.add_argument("--quick", action="store_true", help="the experiments' smoke-test length")
    p.add_argument("--out", default="runs/studies/transfer")
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    out = Path(args.out)
    source_config = experiment_lib.load(SOURCE, quick=args.quick)
    source = experiment_lib.run(source_config, out / "cnn_0to4", progress=False)
    per_class = [None if v.strip() == "all" else int(v) for v in args.labels.split(",")]
    steps = 10 if args.quick else args.steps
    variants = {f"{k or 'all'}-{m}": overrides(k, m, (out / "cnn_0to4").absolute(), steps)
                for k in per_class for m in ("transfer", "scratch")}
    summaries = study.run_variants(TARGET, variants, out, args.seeds, args.quick, progress=False)
    rows, cells = [], {}
    for k in per_class:
        got = {m: summaries[f"{k or 'all'}-{m}"] for m in ("transfer", "scratch")}
        acc = {m: study.per_seed(s, "test_accuracy") for m, s in got.items()}
        show = (lambda s: study.mean_std(s, "test_accuracy", 100, 1)) if args.seeds > 1 else \
            (lambda s: f"{100 * s['metrics']['test_accuracy']:.1f}")
        rows.append([k or f"all ({PER_CLASS})", 5 * (k or PER_CLASS), show(got["transfer"]),
                     show(got["scratch"]),
                     f"{100 * (acc['transfer'].mean() - acc['scratch'].mean()):+.1f}"])
        cells[str(k or "all")] = {m: {"test_accuracy": s["metrics"]["test_accuracy"],
                                      "per_seed": s["per_seed"]["test_accuracy"],
                                      "overrides": variants[f"{k or 'all'}-{m}"],
                                      "seconds": s["seconds"]} for m, s in got.items()}
    table = study.markdown_table(HEADER, rows)
    note = (f"\n\nTest accuracy on the 500 test digits 5-9, %"
            f"{f' (mean ± std over {args.seeds} seeds)' if args.seeds > 1 else ''}; {steps} "
            f"steps each. Source ({SOURCE}, digits 0-4): "
            f"{100 * source['metrics']['test_accuracy']:.1f} % on its 500 test digits 0-4. "
            f"{time.perf_counter() - t0:.0f} s.")
    study.write(out, "transfer", table + note,
                {"quick": args.quick, "seeds": args.seeds, "steps": steps, "cells": cells,
                 "source_test_accuracy": source["metrics"]["test_accuracy"],
                 "seconds": time.perf_counter() - t0})
    print(table + note)
    return 0


if __name__ == "__main__":
    sys.exit(cli.guarded(main))
