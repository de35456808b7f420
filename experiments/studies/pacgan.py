"""PacGAN's Table 1, measured: a plain GAN and PacGAN2 on the ring and the grid at full length
(400,000 steps), several seeds in one program per row, beside the published means (Lin et al.,
NeurIPS 2018, Table 1, 10 trials).

Command:  python experiments/studies/pacgan.py [--seeds 2] [--only ring/gan,ring/pacgan2]
          [--out runs/pacgan] [--quick]
Runtime:  for 2 seeds on a 2-core CPU, about 90 minutes a row on the ring and 2 to 2.5 hours on
          the grid (about 8 hours for the table). Each row trains in <out>/<ring_gan ...> and
          resumes there from its last checkpoint (every 20,000 steps), so after an interruption
          the same command carries on, and a finished row is re-reported at once.
Writes:   <out>/pacgan.md (the table) and pacgan.json (every seed's figures) of the rows this
          command ran, over what was there; once every row is done, the command without --only
          re-reports them all in one table.

A row is `dlcore run NAME --seeds N --workdir <out>/<name>`: the experiments' docstrings give the
protocol (PacGAN's reference code: simultaneous updates, N(0, 0.02²) weights, 100 packed inputs a
step). Scores are of 2,500 generated samples at the end: modes captured (a mode with a sample
within 3σ), the fraction of high-quality samples (within 3σ of their nearest mode), and the
reverse KL between the modes' histogram and the uniform one.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dlcore import cli, experiment, study

ROWS = ("ring/gan", "ring/pacgan2", "grid/gan", "grid/pacgan2")
PUBLISHED_STD = {"ring/gan": 0.5, "ring/pacgan2": 0.1, "grid/gan": 0.8, "grid/pacgan2": 0.7}
METRICS = (("test_modes", "modes", "{:.1f}", 1), ("test_high_quality", "high quality", "{:.1f} %", 100),
           ("test_reverse_kl", "reverse KL", "{:.2f}", 1))


def cell(summary: dict, key: str, fmt: str, scale: float) -> str:
    """'7.5 (7, 8)': the mean over seeds, then each seed's value."""
    seeds = study.per_seed(summary, key) * scale
    each = ", ".join(fmt.replace(" %", "").format(v) for v in seeds)
    return fmt.format(seeds.mean()) + (f" ({each})" if len(seeds) > 1 else "")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--only", default=",".join(ROWS), help="comma-separated rows to run")
    p.add_argument("--out", default="runs/pacgan")
    p.add_argument("--quick", action="store_true", help="the experiments' smoke-test length")
    args = p.parse_args(argv)
    names = args.only.split(",")
    unknown = sorted(set(names) - set(ROWS))
    if unknown:
        p.error(f"--only: {', '.join(unknown)} is not one of {', '.join(ROWS)}")
    header = ["experiment", "steps", *[f"{label} ({which})" for _, label, _, _ in METRICS
                                       for which in ("published", "measured")], "steps/s"]
    rows, found = [], {}
    for name in names:
        config = experiment.load(name, quick=args.quick)
        summary = experiment.run(config, Path(args.out) / name.replace("/", "_"),
                                 seeds=args.seeds, progress=False)
        published = config.get("published") or {}
        row = [f"`{name}`", f"{summary['steps']:,}"]
        for key, _, fmt, scale in METRICS:
            value = published.get(key, {}).get("PacGAN_table1")
            shown = "—" if value is None else fmt.format(value * scale)
            if key == "test_modes" and value is not None:
                shown += f" ± {PUBLISHED_STD[name]}"
            row += [shown, cell(summary, key, fmt, scale)]
        rows.append(row + [f"{summary['steps_per_second']:.0f}"])
        found[name] = {"per_seed": {k: summary["per_seed"][k] for k, *_ in METRICS},
                       "steps": summary["steps"], "steps_per_second": summary["steps_per_second"],
                       "seeds": args.seeds}
        print(" | ".join(rows[-1]), flush=True)
    table = study.markdown_table(header, rows)
    note = (f"\n\n{args.seeds} seed(s) in one program per row, mean (each seed); published: PacGAN "
            "Table 1, 10 trials. steps/s: the last stretch of training, every seed's step counted "
            "once.")
    study.write(args.out, "pacgan", table + note, {"quick": args.quick, "rows": found})
    print(table + note)
    return 0


if __name__ == "__main__":
    sys.exit(cli.guarded(main))
