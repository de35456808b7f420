"""The README's results table, measured: every experiment that reproduces a published figure, run
with the command of its row, its measured value written beside the published one.

Command:  python experiments/studies/results.py [--only mnist1d/mlp ...] [--out runs/results]
Runtime:  about 140 minutes on a 2-core CPU for every row, half of it mnist_digits/madry (each
          run resumes: a finished row is re-reported at once).
Writes:   <out>/results.md (the table) and <out>/results.json (every summary behind it).

Each row is `dlcore run NAME [--seeds N] [--set ...]`; seed 0 alone is also run for the rows with
several seeds, so the table shows the one-seed figure (the command without --seeds) and the spread
over seeds (the same seeds vmapped in one program, which is equal in distribution but not
bit-equal to the seeds run alone: README "What reproduces").
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from dlcore import cli, experiment
from dlcore.study import markdown_table

# (experiment, seeds, overrides, the metric shown, a label for that metric)
ROWS = [
    ("mnist1d/logreg", 8, [], "test_accuracy", "test accuracy"),
    ("mnist1d/mlp", 8, [], "test_accuracy", "test accuracy"),
    ("mnist1d/cnn", 3, [], "test_accuracy", "test accuracy"),
    ("mnist1d/gru", 3, [], "test_accuracy", "test accuracy"),
    ("digits/mlp", 1, [], "test_accuracy", "test accuracy"),
    ("digits/cnn", 1, [], "test_accuracy", "test accuracy"),
    ("diabetes/mlp", 1, [], "test_mse", "test MSE"),
    ("adding/rnn", 1, [], "test_mse", "test MSE"),
    ("adding/lstm", 1, [], "test_mse", "test MSE"),
    ("adding/gru", 1, [], "test_mse", "test MSE"),
    ("sinusoid/maml", 1, [], "test_mse_after_steps[1]", "MSE after 1 step"),
    ("sinusoid/fomaml", 1, [], "test_mse_after_steps[1]", "MSE after 1 step"),
    ("sinusoid/reptile", 1, [], "test_mse_after_steps[1]", "MSE after 1 step"),
    ("sinusoid/metasgd", 1, [], "test_mse_after_steps[1]", "MSE after 1 step"),
    ("sinusoid/pretrained", 1, [], "test_mse_after_steps[10]", "MSE after 10 steps"),
    ("glyphs/protonet", 1, [], "test_accuracy", "5-way 1-shot accuracy"),
    ("glyphs/protonet", 1, ["data.k_shot=5"], "test_accuracy", "5-way 5-shot accuracy"),
    ("glyphs/zeroshot", 1, [], "test_accuracy", "5-way unseen-class accuracy"),
    ("glyphs/zeroshot_all", 1, [], "test_accuracy", "100-way unseen-class accuracy"),
    ("cartpole/ppo", 4, [], "test_final_return", "final return"),
    ("acrobot/ppo", 4, [], "test_final_return", "final return"),
    ("cartpole/dqn", 4, [], "test_final_return", "final return"),
    ("cartpole/a2c", 4, [], "test_final_return", "final return"),
    ("cartpole/reinforce", 4, [], "test_final_return", "final return"),
    ("mnist_digits/vae", 1, [], "test_nelbo", "test -ELBO (nats)"),
    ("digits/fixmatch", 3, [], "test_accuracy", "test accuracy, 40 labels"),
    ("mnist1d/simclr", 4, [], "test_probe_accuracy", "linear-probe accuracy"),
    ("karate/gcn", 20, [], "test_accuracy", "accuracy, 32 unlabelled members"),
    ("csl/gin", 1, [], "test_accuracy", "test accuracy, no PE"),
    ("csl/gin_pe", 4, [], "test_accuracy", "test accuracy, Laplacian PE, fold 0"),
    ("sbm/gcn", 5, [], "test_accuracy", "test accuracy"),
    ("triangles/gin", 3, [], "test_mse", "test MSE"),
    ("mnist_digits/madry", 1, [], "test_pgd_accuracy", "PGD-40 accuracy at eps 0.3"),
]


def command(name: str, seeds: int, sets: list[str]) -> str:
    return " ".join(["dlcore run", name, *(["--seeds", str(seeds)] if seeds > 1 else []),
                     *[f"--set {s}" for s in sets]])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", help="experiment names to run (default: all)")
    parser.add_argument("--out", default="runs/results")
    args = parser.parse_args(argv)
    out = Path(args.out)
    rows, found = [], {}
    for name, seeds, sets, metric, label in ROWS:
        if args.only and name not in args.only:
            continue
        config = experiment.load(name, overrides=sets)
        runs = {}
        for n in sorted({1, seeds}):
            workdir = out / cli.default_workdir(name, False, n, sets).relative_to("runs")
            runs[n] = experiment.run(config, workdir, seeds=n, progress=False)
        one, many = runs[1], runs[seeds]
        value = cli.measured(one["metrics"], metric)
        spread = ""
        if seeds > 1:
            mean, std = cli.measured(many["metrics"], metric), cli.measured(many["metrics_std"], metric)
            spread = f"{mean:.4g} ± {std:.2g} over {seeds} seeds"
        published = "; ".join(f"{src}: {v}" for src, v in
                              (config.get("published") or {}).get(metric, {}).items()) or "—"
        rows.append([f"`{name}`" + (f" ({', '.join(sets)})" if sets else ""), label, published,
                     f"{value:.4g}", spread, f"`{command(name, seeds, sets)}`"])
        found[f"{name} {' '.join(sets)}".strip()] = {n: r for n, r in runs.items()}
        print(" | ".join(rows[-1]), flush=True)
    table = markdown_table(["experiment", "metric", "published", "measured (seed 0)",
                            "seeds in one program", "command"], rows)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.md").write_text(table + "\n")
    (out / "results.json").write_text(json.dumps(found, indent=1, default=str) + "\n")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(cli.guarded(main))
