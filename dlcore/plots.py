"""PNG figures drawn from a run's `metrics.jsonl` (so `dlcore report DIR` can redraw them)."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never open a window
import matplotlib.pyplot as plt  # noqa: E402

from dlcore.writers import read_jsonl  # noqa: E402


def learning_curves(workdir: str | Path) -> list[Path]:
    """One panel per metric kind (loss, accuracy, ...), train and evaluation splits together.

    Writes workdir/plots/<kind>.png and returns the paths; per-seed curves are drawn faintly
    behind their mean when the run trained several seeds in one program.
    """
    workdir = Path(workdir)
    rows = read_jsonl(workdir / "metrics.jsonl")
    if not rows:
        raise FileNotFoundError(f"no metrics in {workdir / 'metrics.jsonl'}")
    names = sorted({k for r in rows for k in r if "/" in k})
    kinds = sorted({n.split("/", 1)[1] for n in names})
    out_dir = workdir / "plots"
    out_dir.mkdir(exist_ok=True)
    paths = []
    for kind in kinds:
        fig, ax = plt.subplots(figsize=(5, 3.5), dpi=120)
        for name in (n for n in names if n.split("/", 1)[1] == kind):
            pts = [(r["step"], r[name]) for r in rows if name in r]
            line, = ax.plot(*zip(*pts), label=name.split("/")[0])
            seeds = [(r["step"], r["per_seed"][name]) for r in rows if name in r.get("per_seed", {})]
            if seeds:
                steps, values = zip(*seeds)
                ax.plot(steps, values, color=line.get_color(), alpha=0.25, linewidth=0.8)
        ax.set_xlabel("step")
        ax.set_ylabel(kind)
        if kind in ("loss", "grad_norm", "mse"):
            ax.set_yscale("log")
        ax.legend()
        ax.grid(alpha=0.3)
        ax.set_title(f"{workdir.name}: {kind}")
        fig.tight_layout()
        path = out_dir / f"{kind}.png"
        fig.savefig(path)
        plt.close(fig)
        paths.append(path)
    return paths
