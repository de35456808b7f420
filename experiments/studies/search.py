"""MNIST-1D MLP: learning rate x weight decay by random search and by successive halving, every
member in one program, against the same members trained one after another.

Command:  python experiments/studies/search.py [--quick] [--members 32] [--steps 2000]
                                               [--rungs 3] [--eta 3] [--out runs/studies/search]
Runtime:  on a 2-core CPU about 3 minutes (32 members of 2000 steps; most of it the members one
          after another); --quick (8 members of 90 steps) about 1 minute.
Writes:   <out>/search.md: the wall time of the random search in one program, of successive halving
          and of the members one after another (and the ratio), the best member of each search with
          its validation and test accuracy, and the random search's table of members;
          <out>/search.json the numbers; <out>/random and <out>/halving the searches' run
          directories (dlcore.search: run again and they resume, so the wall time is then only
          what was left), <out>/sequential/member_<m> the lone runs.

The space: optim.learning_rate log-uniform on [1e-4, 1e-1], optim.weight_decay (decoupled, AdamW)
log-uniform on [1e-4, 1]; --search-seed 0; 20 % of the training examples held out for
validation (data.validation_fraction=0.2), on which every choice is made; the test accuracy is
reported only. The recipe is mnist1d/mlp's (Adam, batch 100 in stored order) at --steps steps.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from dlcore import cli, experiment, search, study, sweep

SPACE = ["optim.learning_rate=log:1e-4:1e-1", "optim.weight_decay=log:1e-4:1"]
METRIC = "validation_accuracy"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="8 members of 90 steps: a smoke run")
    p.add_argument("--members", type=int, help="members drawn (default 32; --quick 8)")
    p.add_argument("--steps", type=int, help="the budget (default 2000; --quick 90)")
    p.add_argument("--rungs", type=int, default=3, help="successive halving's rungs")
    p.add_argument("--eta", type=int, default=3, help="the best 1/eta go on at each rung")
    p.add_argument("--search-seed", type=int, default=0)
    p.add_argument("--out", default="runs/studies/search")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="a config override for every member, as in `dlcore run`")
    args = p.parse_args(argv)
    members = args.members or (8 if args.quick else 32)
    steps = args.steps or (90 if args.quick else 2000)
    out = Path(args.out)
    config = experiment.load("mnist1d/mlp", overrides=[
        "data.validation_fraction=0.2", f"loop.steps={steps}", f"loop.eval_every={steps}",
        f"loop.checkpoint_every={steps}", "loop.log_every=100", "loop.plots=false", *args.set])
    points = search.draw(search.parse_space(SPACE), members, args.search_seed)
    kw = dict(metric=METRIC, space=SPACE, search_seed=args.search_seed, progress=False)

    timing = {"members": members, "steps": steps}
    t0 = time.perf_counter()
    random = search.run_search(config, points, out / "random", rungs=1, **kw)
    timing["random_seconds"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    halving = search.run_search(config, points, out / "halving", rungs=args.rungs, eta=args.eta, **kw)
    timing["halving_seconds"] = time.perf_counter() - t0
    timing.update(sequential(config, points, random, out / "sequential"))

    text = _text(args, timing, random, halving)
    study.write(out, "search", text, {"space": SPACE, "search_seed": args.search_seed,
                                      "timing": timing, "random": random, "halving": halving})
    print(text)
    return 0


def sequential(config: dict, points: list[dict], random: dict, out: Path) -> dict:
    """Every member trained alone (`dlcore run` with its values and seed), one after another: the
    wall time, and how far each member's validation accuracy and loss are from its values in the
    one program (the largest absolute and relative differences)."""
    t0 = time.perf_counter()
    acc, loss = [], []
    for m, point in enumerate(points):
        cfg = {**sweep.point_config(config, point), "seed": config["seed"] + m}
        alone = experiment.run(cfg, out / f"member_{m}", progress=False)["metrics"]
        together = random["members"][m]["validation"][-1]
        acc.append(abs(alone[METRIC] - together[METRIC]))
        loss.append(abs(alone["validation_loss"] - together["validation_loss"])
                    / abs(together["validation_loss"]))
    return {"sequential_seconds": time.perf_counter() - t0,
            "largest_validation_difference": float(np.max(acc)),
            "median_validation_difference": float(np.median(acc)),
            "largest_relative_validation_loss_difference": float(np.max(loss))}


def _best(report: dict) -> str:
    b = report["best"]
    return (f"member {b['member']} (learning rate {b['hyper']['optim.learning_rate']:.4g}, weight "
            f"decay {b['hyper']['optim.weight_decay']:.4g}): validation accuracy "
            f"{b['validation'][-1][METRIC]:.3f}, test accuracy {b['test']['test_accuracy']:.3f} "
            "(reported, not used to choose)")


def _text(args, timing: dict, random: dict, halving: dict) -> str:
    n, steps = timing["members"], timing["steps"]
    rungs = ", ".join(f"{len(r['members'])} to step {r['steps']}" for r in halving["rungs"])
    return (
        f"mnist1d/mlp{' (quick)' if args.quick else ''}: {n} members (learning rate x weight decay, "
        f"search seed {args.search_seed}), budget {steps} steps, chosen on validation accuracy\n\n"
        f"- random search, {n} members in one program: {timing['random_seconds']:.1f} s wall; "
        f"best {_best(random)}\n"
        f"- successive halving (eta {args.eta}: {rungs}), one program per rung: "
        f"{timing['halving_seconds']:.1f} s wall, {halving['member_steps']} member-steps against "
        f"{random['member_steps']}; best {_best(halving)}\n"
        f"- the same {n} members one after another: {timing['sequential_seconds']:.1f} s wall "
        f"({timing['sequential_seconds'] / timing['random_seconds']:.2f}x the random search in one "
        f"program); a member's validation accuracy alone against in the one program: largest "
        f"difference {timing['largest_validation_difference']:.4f}, median "
        f"{timing['median_validation_difference']:.4f}; validation loss: largest relative "
        f"difference {timing['largest_relative_validation_loss_difference']:.1e} (the one "
        f"program rounds differently from a lone run, and training amplifies it over the "
        f"steps)\n\n"
        f"Random search, the best members by validation accuracy:\n\n{search.table(random)}")


if __name__ == "__main__":
    sys.exit(cli.guarded(main))
