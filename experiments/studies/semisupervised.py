"""Semi-supervised learning: FixMatch against the same network on the labels alone and scikit-learn's
LabelSpreading, by number of labels: digits with 20, 40, 100 and 200 labels, MNIST-1D with 100.

Command:  python experiments/studies/semisupervised.py [--quick] [--seeds 1] [--labels 20,40,100,200]
          [--data digits,mnist1d] [--out runs/studies/semisupervised]
Runtime:  about 4 minutes on a 2-core CPU shared with other jobs (15 training runs; measured 3 min
          43 s); --seeds 3 (vmapped) about 19 minutes. A finished run in <out>/<label> is reused,
          so a second call re-reports at once.
Writes:   <out>/semisupervised.md (the table) and semisupervised.json; each run in <out>/<label>.

Every column of a row sees the same split and the same labeled examples (data.labels = N, chosen
stratified with split_seed 0: dlcore.data.few_labels) and is scored on the same held-out test
split (digits: 360 of the fixed stratified split; MNIST-1D: the generator's 1000):

* FixMatch: experiments/digits/fixmatch.py or mnist1d/fixmatch.py with data.labels = N;
* labels only, supervised: the same network, optimizer and number of steps, `algorithm=supervised`
  on the N labeled examples (the batch's x_unlabeled is ignored), no augmentation;
* labels only, weak aug.: `semisupervised.unlabeled_weight=0`: the same, with FixMatch's weak
  augmentation of the labeled batch (what FixMatch's supervised term sees) and no unlabeled term;
* LabelSpreading (scikit-learn): fitted on all n training inputs with the N labels (transductive),
  then `predict` on the test inputs. kernel 'knn' (n_neighbors 7, alpha 0.2, max_iter 1000), and
  for digits also the RBF kernel of scikit-learn's digits example (gamma 0.25 on 0-16 pixels =
  64 on dlcore's [0, 1] pixels, max_iter 20).

The labeled batch is min(N, the experiment's batch_size) examples (a batch cannot be larger than
the labeled set); the unlabeled batch is the experiment's (digits 160, MNIST-1D 350) at every N.
Below the table the study also re-runs scikit-learn's own example protocol (340 random digits, 40
random labels, transductive accuracy on the other 300) to show the published figure reproduces.
"""
from __future__ import annotations

import argparse
import sys
import time
import warnings

import numpy as np

from dlcore import cli, data as data_lib, experiment as experiment_lib, study

EXPERIMENTS = {"digits": "digits/fixmatch", "mnist1d": "mnist1d/fixmatch"}
METHODS = {"fixmatch": [], "supervised": ["algorithm=supervised"],
           "weak_only": ["semisupervised.unlabeled_weight=0.0"]}
HEADER = ["data", "labels", "FixMatch", "labels only: supervised", "labels only: weak aug.",
          "LabelSpreading knn", "LabelSpreading rbf (sklearn example's γ)"]


def overrides(name: str, labels: int, quick: bool) -> list[str]:
    """data.labels = N with the labeled batch cut to N and the unlabeled batch held fixed."""
    cfg = experiment_lib.load(EXPERIMENTS[name], quick=quick)["data"]
    bs = cfg["batch_size"]
    ubs = cfg["unlabeled_batch_size"] or 7 * bs
    return [f"data.labels={labels}", f"data.batch_size={min(bs, labels)}",
            f"data.unlabeled_batch_size={ubs}"]


def label_spreading(data, kernel: str, **params) -> float:
    """Test accuracy of sklearn's LabelSpreading fitted on a few-labels Data's training inputs
    (x_unlabeled: all n, the N of spec['labeled_indices'] labeled) and applied to its test split."""
    from sklearn.semi_supervised import LabelSpreading
    train, test = data.splits["train"], data.splits["test"]
    x = np.asarray(train["x_unlabeled"]).reshape(len(train["x_unlabeled"]), -1).astype(np.float64)
    y = np.full(len(x), -1)
    y[data.spec["labeled_indices"]] = train["y"]
    with warnings.catch_warnings():  # max_iter reached: the example's own setting for rbf
        warnings.simplefilter("ignore")
        model = LabelSpreading(kernel=kernel, **params).fit(x, y)
        pred = model.predict(np.asarray(test["x"]).reshape(len(test["x"]), -1).astype(np.float64))
    return float(np.mean(pred == np.asarray(test["y"])))


def sklearn_example() -> float:
    """scikit-learn's 'Label Propagation digits: Demonstrating performance', as published: 340
    digits shuffled with RandomState(2), the first 40 labeled, LabelSpreading(gamma=0.25,
    max_iter=20) on 0-16 pixels; the transductive accuracy on the other 300."""
    from sklearn import datasets
    from sklearn.semi_supervised import LabelSpreading
    digits = datasets.load_digits()
    idx = np.arange(len(digits.data))
    np.random.RandomState(2).shuffle(idx)
    x, y = digits.data[idx[:340]], digits.target[idx[:340]]
    y_train = y.copy()
    y_train[40:] = -1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = LabelSpreading(gamma=0.25, max_iter=20).fit(x, y_train)
    return float(np.mean(model.transduction_[40:] == y[40:]))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="the experiments' smoke-test length")
    p.add_argument("--seeds", type=int, default=1)
    p.add_argument("--labels", default="20,40,100,200", help="digits' label counts")
    p.add_argument("--mnist1d-labels", default="100")
    p.add_argument("--data", default="digits,mnist1d")
    p.add_argument("--out", default="runs/studies/semisupervised")
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    cells = [(name, int(n)) for name in args.data.split(",")
             for n in (args.labels if name == "digits" else args.mnist1d_labels).split(",")]
    rows, found = [], {}
    for name, n in cells:
        sets = overrides(name, n, args.quick)
        variants = {f"{name}-{n}-{m}": sets + extra for m, extra in METHODS.items()}
        summaries = study.run_variants(EXPERIMENTS[name], variants, args.out, args.seeds,
                                       args.quick, progress=False)
        deep = {m: summaries[f"{name}-{n}-{m}"] for m in METHODS}
        config = experiment_lib.load(EXPERIMENTS[name], quick=args.quick, overrides=sets)
        data = data_lib.load(config["data"])
        spread = {"knn": label_spreading(data, "knn", n_neighbors=7, max_iter=1000)}
        if name == "digits":
            spread["rbf"] = label_spreading(data, "rbf", gamma=0.25 * 16 ** 2, max_iter=20)
        cell = lambda s: (study.mean_std(s, "test_accuracy", 1, 3) if args.seeds > 1
                          else f"{s['metrics']['test_accuracy']:.3f}")
        rows.append([name, n, *(cell(deep[m]) for m in METHODS), f"{spread['knn']:.3f}",
                     f"{spread['rbf']:.3f}" if "rbf" in spread else "—"])
        found[f"{name}/{n}"] = {
            **{m: {"test_accuracy": s["metrics"]["test_accuracy"],
                   "per_seed": s["per_seed"]["test_accuracy"], "overrides": variants[f"{name}-{n}-{m}"],
                   "seconds": s["seconds"]} for m, s in deep.items()},
            **{f"label_spreading_{k}": v for k, v in spread.items()}}
    table = study.markdown_table(HEADER, rows)
    example = sklearn_example() if "digits" in args.data.split(",") else None
    note = (f"\n\nTest accuracy{' (mean ± std over %d seeds)' % args.seeds if args.seeds > 1 else ''}"
            f"; {time.perf_counter() - t0:.0f} s." +
            (f" scikit-learn's digits example re-run (LabelSpreading rbf, 40 random labels of 340 "
             f"random digits, transductive accuracy on the other 300; published 0.90): "
             f"{example:.3f}." if example is not None else ""))
    study.write(args.out, "semisupervised", table + note,
                {"quick": args.quick, "seeds": args.seeds, "cells": found,
                 "sklearn_example_transductive_accuracy": example,
                 "seconds": time.perf_counter() - t0})
    print(table + note)
    return 0


if __name__ == "__main__":
    sys.exit(cli.guarded(main))
