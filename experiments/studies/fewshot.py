"""Few-shot classification: Prototypical Networks, MAML and a pretrained-then-fine-tuned classifier
against nearest neighbour on raw pixels, 5-way 1-shot and 5-shot, on digits and on glyphs.

Command:  python experiments/studies/fewshot.py [--quick] [--seeds N] [--data digits,glyphs]
          [--out runs/studies/fewshot]
Runtime:  about 45 minutes on a 2-core CPU (12 runs; a finished run in <out>/<data>/<method>/<K>shot
          is reused).
Writes:   <out>/fewshot.md: test accuracy with its 95 % interval over 600 test episodes (classes
          never seen in training; the same episodes for every method), and fewshot.json.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import jax
import numpy as np

from dlcore import cli, data as data_lib, experiment as experiment_lib, study
from dlcore.data import episodes

METHODS = ("protonet", "maml", "pretrained")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="the experiments' smoke-test length")
    p.add_argument("--seeds", type=int, default=1)
    p.add_argument("--data", default="digits,glyphs")
    p.add_argument("--shots", default="1,5")
    p.add_argument("--out", default="runs/studies/fewshot")
    args = p.parse_args(argv)
    out = Path(args.out)
    rows, data = [], {}
    for name in args.data.split(","):
        for k in (int(s) for s in args.shots.split(",")):
            acc, ci = nearest_neighbour(f"{name}/protonet", k, args.quick)
            rows.append([name, f"5-way {k}-shot", "nearest neighbour, pixels", f"{acc:.3f} ± {ci:.3f}"])
            data[f"{name}/{k}shot/nearest_neighbour"] = {"accuracy": acc, "ci95": ci}
            for method in METHODS:
                sets = [f"data.test_k_shot={k}"]
                if method != "pretrained":  # meta-learners train on episodes of the test shape
                    sets.append(f"data.k_shot={k}")
                s = study.run_variants(f"{name}/{method}", {f"{k}shot": sets}, out / name / method,
                                       args.seeds, args.quick)[f"{k}shot"]
                m = s["metrics"]
                rows.append([name, f"5-way {k}-shot", method,
                             f"{m['test_accuracy']:.3f} ± {m['test_accuracy_ci95']:.3f}"])
                data[f"{name}/{k}shot/{method}"] = {"accuracy": m["test_accuracy"],
                                                   "ci95": m["test_accuracy_ci95"],
                                                   "seeds_std": s["metrics_std"]["test_accuracy"]}
    table = study.markdown_table(["data", "episodes", "method", "test accuracy ± 95 % CI"], rows)
    study.write(out, "fewshot", table, {"quick": args.quick, "seeds": args.seeds, "runs": data})
    print(table)
    return 0


def nearest_neighbour(experiment: str, k: int, quick: bool) -> tuple[float, float]:
    """1-NN on raw pixels over the experiment's own test episodes (same data.eval_seed)."""
    config = experiment_lib.load(experiment, quick=quick,
                                 overrides=[f"data.k_shot={k}", f"data.test_k_shot={k}"])
    data = data_lib.load(config["data"])
    n, chunk, tasks = data.spec["eval_tasks"]
    acc = jax.jit(lambda i: jax.vmap(episodes.nearest_neighbour_accuracy)(
        tasks(data.splits["test"], i)))
    values = np.concatenate([np.asarray(acc(i)) for i in range(-(-n // chunk))])[:n]
    return episodes.mean_ci95(values)


if __name__ == "__main__":
    sys.exit(cli.guarded(main))
