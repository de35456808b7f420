"""Activations study: a 12-hidden-layer MLP (width 64) on MNIST-1D with sigmoid, tanh and ReLU.

Command:  python experiments/studies/activations.py [--seeds 3] [--quick] [--out runs/studies/activations]
Runtime:  about 3 minutes on a 2-core CPU.
Writes:   <out>/activations.md (the README table), .json, and activations.png (gradient norm of each
          layer's weights at initialisation and after training).

Same data and batches as experiments/mnist1d/mlp.py, no residual connections, LeCun-normal
initialisation for all three, and SGD with momentum (lr 0.05, 6000 steps): Adam rescales each
parameter's update by its own gradient history and so hides exactly the effect studied here.
Gradient norms ||dL/dW_l|| are measured on the first 1000 training examples, averaged over seeds.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from dlcore import analysis, cli, experiment, models, study

DEPTH, WIDTH = 12, 64
COMMON = [f"model.hidden={[WIDTH] * DEPTH}", "model.residual=false", "model.init=lecun_normal",
          "optim.name=momentum", "optim.learning_rate=0.05"]
ACTIVATIONS = ("sigmoid", "tanh", "relu")


def layer_norms(workdir: Path, seeds: int) -> dict[str, np.ndarray]:
    """{'init': [layers], 'trained': [layers]} mean over seeds of ||dL/dW|| per layer."""
    out = {"init": [], "trained": []}
    for i in range(seeds):
        run = experiment.load_run(workdir, seed_index=i)
        batch = {k: v[:1000] for k, v in run.data.splits["train"].items()}
        for when, state in (("init", run.init), ("trained", run.final)):
            out[when].append(list(analysis.layer_grad_norms(
                run.model, models.variables_of(state), batch, run.data.spec["task"]).values()))
    return {k: np.mean(v, axis=0) for k, v in out.items()}


def figure(norms: dict, path: Path) -> None:
    from dlcore.plots import plt
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5), dpi=120, sharey=True)
    for ax, when in zip(axes, ("init", "trained")):
        for act, n in norms.items():
            ax.semilogy(np.arange(1, len(n[when]) + 1), n[when], marker="o", markersize=3,
                        label=act)
        ax.set_title("at initialisation" if when == "init" else "after training", fontsize=9)
        ax.set_xlabel("layer (1 = input side, last = output layer)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("||dL/dW_layer||")
    axes[0].legend(fontsize=8)
    fig.suptitle(f"MNIST-1D, {DEPTH}x{WIDTH} MLP: gradient norm per layer", fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--quick", action="store_true", help="the experiment's smoke-test length")
    p.add_argument("--out", default="runs/studies/activations")
    args = p.parse_args(argv)
    out = Path(args.out)
    variants = {a: COMMON + [f"model.activation={a}"] for a in ACTIVATIONS}
    summaries = study.run_variants("mnist1d/mlp", variants, out, args.seeds, args.quick)
    norms = {a: layer_norms(out / a, args.seeds) for a in ACTIVATIONS}
    rows, data = [], {}
    for a, s in summaries.items():
        n = norms[a]
        rows.append([a, study.mean_std(s, "test_accuracy", 100),
                     study.mean_std(s, "train_eval_accuracy", 100),
                     f"{n['init'][0]:.1e}", f"{n['init'][-1]:.1e}",
                     f"{n['init'][0] / n['init'][-1]:.1e}",
                     f"{n['trained'][0] / n['trained'][-1]:.1e}"])
        data[a] = {"metrics": s["metrics"], "per_seed": s["per_seed"],
                   "grad_norm_init": n["init"].tolist(), "grad_norm_trained": n["trained"].tolist()}
    table = study.markdown_table(
        ["activation", "test acc. %", "train acc. %", "layer-1 grad at init",
         "output-layer grad at init", "layer 1 / output, init", "layer 1 / output, trained"], rows)
    study.write(out, "activations", table, {"seeds": args.seeds, "quick": args.quick,
                                            "overrides": COMMON, "activations": data})
    figure(norms, out / "activations.png")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(cli.guarded(main))
