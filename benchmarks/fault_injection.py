"""Fault injection: damage a checkpoint at random, resume, and count what came of it.

Each trial copies a run that stopped at step 40 (checkpoints at 20 and 40; `mnist1d/mlp`, a
16-16 MLP), damages one file of its newest checkpoint (flip a byte, zero 64 bytes or truncate, at a
random offset; or delete the file), and runs the same experiment on to step 60. The result is
compared with the uninterrupted 60-step run, array for array:

- detected, exact: the damage was caught (checksum, unreadable file), the checkpoint was moved
  aside, the previous one replayed, and the result equals the uninterrupted run;
- harmless: nothing was caught and the result is equal anyway (a byte nobody reads: a timestamp
  in the metadata, say);
- refused: the run stopped with one clear error (dlcore's ConfigError or TrainingError);
- silent difference: nothing was caught and the result differs. The goal is 0;
- crash: any other exception.

    python benchmarks/fault_injection.py [--trials 100] [--seed 0] [--out runs/fault_injection]
"""
from __future__ import annotations

import argparse
import collections
import json
import shutil
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import orbax.checkpoint as ocp

from dlcore import experiment
from dlcore.config import ConfigError
from dlcore.watch import TrainingError

KINDS = ("flip", "zero", "truncate", "delete")


def config(steps: int) -> dict:
    return experiment.load("mnist1d/mlp", overrides=[
        f"loop.steps={steps}", "loop.log_every=10", "loop.eval_every=20",
        "loop.checkpoint_every=20", "loop.keep_checkpoints=5", "model.hidden=16,16",
        "loop.plots=false"])


def final_arrays(workdir: Path) -> list[np.ndarray]:
    with ocp.CheckpointManager(workdir.resolve() / "checkpoints") as m:
        tree = m.restore(m.latest_step())
    import jax
    return [np.asarray(x) for x in jax.tree.leaves(tree)]


def damage(path: Path, kind: str, rng: np.random.Generator) -> str:
    """Damage one file; returns what was done, for the record."""
    data = bytearray(path.read_bytes())
    if kind == "delete" or not data:
        path.unlink()
        return "deleted"
    at = int(rng.integers(len(data)))
    if kind == "flip":
        data[at] ^= 1 << int(rng.integers(8))
    elif kind == "zero":
        data[at:at + 64] = bytes(len(data[at:at + 64]))
    else:
        data = data[:at]
    path.write_bytes(bytes(data))
    return f"{kind} at byte {at} of {path.stat().st_size if path.exists() else 0}"


def trial(base: Path, work: Path, reference: list[np.ndarray], rng) -> tuple[str, str]:
    shutil.copytree(base, work)
    files = sorted(f for f in (work / "checkpoints" / "40").rglob("*") if f.is_file())
    target = files[int(rng.integers(len(files)))]
    what = f"{target.relative_to(work)}: " + damage(target, KINDS[int(rng.integers(len(KINDS)))],
                                                       rng)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            experiment.run(config(60), work, progress=False)
        except (ConfigError, TrainingError) as e:
            return "refused", f"{what} -> {e}"
        except Exception as e:  # noqa: BLE001 - counted, and the goal is none
            return "crash", f"{what} -> {type(e).__name__}: {e}"
    detected = any("could not be restored" in str(w.message) for w in caught)
    same = all(np.array_equal(a, b) for a, b in zip(reference, final_arrays(work)))
    if same:
        return ("detected, exact" if detected else "harmless"), what
    return ("detected, but different" if detected else "silent difference"), what


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--trials", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/fault_injection")
    args = p.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        experiment.run(config(60), tmp / "reference", progress=False)
        reference = final_arrays(tmp / "reference")
        experiment.run(config(40), tmp / "base", progress=False)
        counts, examples = collections.Counter(), collections.defaultdict(list)
        for i in range(args.trials):
            outcome, what = trial(tmp / "base", tmp / f"trial-{i}", reference, rng)
            counts[outcome] += 1
            examples[outcome].append(what)
            shutil.rmtree(tmp / f"trial-{i}")
            print(f"trial {i + 1}/{args.trials}: {outcome}: {what[:160]}", flush=True)
    result = {"trials": args.trials, "seed": args.seed, "counts": dict(counts),
              "examples": {k: v[:5] for k, v in examples.items()}}
    print("\n| outcome | trials |\n|---|---|")
    for outcome in ("detected, exact", "harmless", "refused", "detected, but different",
                    "silent difference", "crash"):
        print(f"| {outcome} | {counts.get(outcome, 0)} |")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "fault_injection.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    result = main()
    sys.exit(1 if result["counts"].get("silent difference") or result["counts"].get("crash") else 0)
