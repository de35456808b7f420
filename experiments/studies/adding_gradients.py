"""Why the vanilla RNN fails the adding problem: gradient norms through time, RNN vs LSTM vs GRU.

Command:  python experiments/studies/adding_gradients.py [--quick] [--out runs/studies/adding]
Runtime:  about 8 minutes on a 2-core CPU (trains adding/rnn, adding/lstm, adding/gru; a finished
          run in <out>/<cell> is reused).
Writes:   <out>/adding.md (test MSE against the 1/6 baseline), .json, and grad_through_time.png:
          the mean ||dL/dh_t|| over 256 test sequences against t, at initialisation and after
          training (dlcore.analysis.grad_through_time).

The loss depends on the two marked steps, one in each half of the sequence; a network can only
learn that dependence if dL/dh_t stays non-negligible back to t = 0.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from dlcore import analysis, cli, experiment, models, study

CELLS = ("rnn", "lstm", "gru")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="the experiments' smoke-test length")
    p.add_argument("--out", default="runs/studies/adding")
    args = p.parse_args(argv)
    out = Path(args.out)
    summaries, curves, rows, data = {}, {}, [], {}
    for cell in CELLS:
        summaries[cell] = study.run_variants(f"adding/{cell}", {cell: []}, out, 1, args.quick)[cell]
        run = experiment.load_run(out / cell)
        batch = {k: v[:256] for k, v in run.data.splits["test"].items()}
        for when, state in (("init", run.init), ("trained", run.final)):
            curves[cell, when] = analysis.grad_through_time(run.model, models.variables_of(state),
                                                            batch, "regression")
        g = curves[cell, "trained"]
        mse = summaries[cell]["metrics"]["test_mse"]
        rows.append([cell, f"{mse:.4f}", f"{mse / (1 / 6):.3f}",
                     f"{curves[cell, 'init'][0] / curves[cell, 'init'][-1]:.1e}",
                     f"{g[0] / g[-1]:.1e}"])
        data[cell] = {"test_mse": mse, "grad_init": curves[cell, "init"].tolist(),
                      "grad_trained": g.tolist()}
    table = study.markdown_table(
        ["cell", "test MSE", "MSE / baseline (1/6)", "‖dL/dh_0‖ / ‖dL/dh_T‖, init",
         "same, trained"], rows)
    study.write(out, "adding", table, {"quick": args.quick, "cells": data})
    figure(curves, out / "grad_through_time.png")
    print(table)
    return 0


def figure(curves: dict, path: Path) -> None:
    from dlcore.plots import plt
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5), dpi=120, sharey=True)
    for ax, when in zip(axes, ("init", "trained")):
        for cell in CELLS:
            g = curves[cell, when]
            ax.semilogy(np.arange(len(g)), np.maximum(g, 1e-30), label=cell)
        ax.set_title("at initialisation" if when == "init" else "after training", fontsize=9)
        ax.set_xlabel("time step t")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("mean ||dL/dh_t||")
    axes[0].legend(fontsize=8)
    fig.suptitle("Adding problem: gradient of the loss with respect to the hidden state", fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(cli.guarded(main))
