"""PNG figures: learning curves from a run's `metrics.jsonl`, and what the trained model does (from
its checkpoint); `dlcore report DIR` redraws them all."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never open a window
import matplotlib.pyplot as plt  # noqa: E402

import numpy as np  # noqa: E402

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


# --- inside the model (dlcore.analysis) ---------------------------------------------------------

def model_pictures(workdir: str | Path, num_inputs: int = 4) -> list[Path]:
    """What the trained model does, from its newest checkpoint (written to workdir/plots):

    filters.png (a CNN's first-layer filters), activations.png (each recorded layer's activations
    for `num_inputs` test inputs), grad_through_time.png (a recurrent model's ||dL/dh_t|| against
    t, at initialisation and after training). Models with nothing to show get nothing.
    """
    from dlcore import analysis
    workdir = Path(workdir)
    run = analysis.load_run(workdir)
    out_dir = workdir / "plots"
    out_dir.mkdir(exist_ok=True)
    test = run.splits["test"]
    x = test["x"][:num_inputs]
    name = run.config["model"]["name"]
    paths = []
    if name == "cnn":
        paths.append(filters(np.asarray(run.final.params["conv_0"]["kernel"]),
                             out_dir / "filters.png", f"{workdir.name}: first-layer filters"))
    acts = analysis.intermediates(run.model, run.final, x)
    if acts:
        paths.append(activations(x, test["y"][:num_inputs], acts, out_dir / "activations.png",
                                 f"{workdir.name}: activations for {len(x)} test inputs"))
    if name == "rnn":
        batch = {"x": test["x"][:256], "y": test["y"][:256]}
        curves = {label: analysis.grad_through_time(run.model, state, batch, run.spec["task"])
                  for label, state in (("at initialisation", run.init),
                                       (f"after {run.step} steps", run.final))}
        paths.append(grad_through_time(curves, out_dir / "grad_through_time.png",
                                       f"{workdir.name}: gradient through time"))
    return paths


def filters(kernel: np.ndarray, path: Path, title: str) -> Path:
    """kernel [k, in, out] (1-D: one small line plot per filter) or [kh, kw, in, out] (2-D: one
    image per filter, channels averaged, shared colour scale centred at zero)."""
    out = kernel.shape[-1]
    cols = int(np.ceil(np.sqrt(out)))
    rows = int(np.ceil(out / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(1.3 * cols, 1.1 * rows), dpi=120, squeeze=False)
    lim = float(np.abs(kernel).max()) or 1.0
    for i, ax in enumerate(axes.flat):
        ax.set_xticks([])
        ax.set_yticks([])
        if i >= out:
            ax.axis("off")
            continue
        f = kernel[..., i]
        if kernel.ndim == 3:  # [k, in]: one line per input channel
            ax.plot(f, marker=".", linewidth=1)
            ax.axhline(0, color="grey", linewidth=0.5)
            ax.set_ylim(-lim, lim)
        else:
            ax.imshow(f.mean(-1), cmap="RdBu_r", vmin=-lim, vmax=lim)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def activations(x: np.ndarray, y: np.ndarray, acts: dict, path: Path, title: str) -> Path:
    """One row per input: the input, then each recorded layer. A 1-D layer [L, C] is drawn as a
    channels-by-position image, a 2-D one [H, W, C] as its first 8 channels side by side, a dense
    layer [width] as a strip."""
    names = list(acts)
    fig, axes = plt.subplots(len(x), 1 + len(names), figsize=(2.2 * (1 + len(names)),
                             1.6 * len(x)), dpi=120, squeeze=False)
    for r in range(len(x)):
        ax = axes[r, 0]
        xi = x[r]
        if xi.ndim == 1 or (xi.ndim == 2 and xi.shape[-1] <= 2 and xi.shape[0] > 8):
            ax.plot(xi)
        else:
            ax.imshow(xi[..., 0] if xi.ndim == 3 else xi, cmap="gray")
        ax.set_title(f"input (label {y[r]})" if y.ndim == 1 else "input", fontsize=7)
        for c, name in enumerate(names, start=1):
            h = acts[name][r]
            if h.ndim == 3:
                h = np.concatenate([h[..., j] for j in range(min(8, h.shape[-1]))], axis=1)
            elif h.ndim == 2:
                h = h.T
            else:
                h = h[None]
            axes[r, c].imshow(h, aspect="auto", cmap="viridis", interpolation="nearest")
            axes[r, c].set_title(name, fontsize=7)
        for ax in axes[r]:
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def grad_through_time(curves: dict[str, np.ndarray], path: Path, title: str) -> Path:
    """{label: [T] norms} on a log scale against the time step."""
    fig, ax = plt.subplots(figsize=(5.5, 3.5), dpi=120)
    for label, g in curves.items():
        ax.semilogy(np.arange(len(g)), np.maximum(g, 1e-30), label=label)
    ax.set_xlabel("time step t")
    ax.set_ylabel("mean ||dL/dh_t||")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
