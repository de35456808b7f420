"""Studies: one experiment trained under several named variants, each a list of `--set` overrides,
with several seeds in one program; the results become a markdown table.

    summaries = run_variants("mnist1d/mlp", {"none": [], "dropout": ["model.dropout=0.2"]},
                             out_dir, seeds=3, quick=False)

Each variant trains in out_dir/<label> (and resumes there), so a finished study re-reports at
once and every row can be reproduced with `dlcore run NAME --set ... --seeds N`.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from dlcore import experiment as experiment_lib


def run_variants(experiment: str, variants: dict[str, list[str]], out_dir: str | Path,
                 seeds: int = 3, quick: bool = False, progress: bool = True) -> dict[str, dict]:
    """{label: summary} for each variant of `experiment` (overrides are checked before any run)."""
    configs = {label: experiment_lib.load(experiment, quick=quick, overrides=sets)
               for label, sets in variants.items()}
    out = {}
    for label, cfg in configs.items():
        cfg["experiment"] = f"{experiment}[{label}]"
        out[label] = experiment_lib.run(cfg, Path(out_dir) / label, seeds=seeds, progress=progress)
    return out


def mean_std(summary: dict, key: str, scale: float = 1.0, digits: int = 1) -> str:
    """'64.0 ± 1.9' from summary['metrics'][key] and its spread over seeds."""
    m, s = summary["metrics"][key] * scale, summary["metrics_std"][key] * scale
    return f"{m:.{digits}f} ± {s:.{digits}f}"


def per_seed(summary: dict, key: str) -> np.ndarray:
    return np.asarray(summary["per_seed"][key], np.float64)


def markdown_table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def write(out_dir: str | Path, name: str, table: str, data: dict) -> None:
    """out_dir/<name>.md (the table) and out_dir/<name>.json (the numbers behind it)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{name}.md").write_text(table + "\n")
    (out_dir / f"{name}.json").write_text(json.dumps(data, indent=2, default=float) + "\n")
