"""PNG figures: learning curves from a run's `metrics.jsonl`, and the drawings that models and
algorithms use for their pictures (filters, activations, gradients through time, episodes, fits);
`dlcore report DIR` redraws them all. Nothing here knows a metric name or a model family."""
from __future__ import annotations

import os
from pathlib import Path

import matplotlib

# files only, never a window; in Jupyter (ipykernel sets MPLBACKEND) its inline figures stay
if "inline" not in os.environ.get("MPLBACKEND", ""):
    matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import numpy as np  # noqa: E402

from dlcore.config import ConfigError  # noqa: E402
from dlcore.writers import read_jsonl  # noqa: E402


def learning_curves(workdir: str | Path, title: str | None = None) -> list[Path]:
    """One panel per metric (loss, accuracy, ...), its splits together: 'train' is the running
    mean over training steps, the others whole-split evaluations.

    Writes workdir/plots/<metric>.png and returns the paths; per-seed curves are drawn faintly
    behind their mean when the run trained several seeds in one program. A metric whose values are
    all positive and span more than a factor of 30 is drawn on a log scale. title: the run's name
    (default: the directory's).
    """
    workdir = Path(workdir)
    rows = read_jsonl(workdir / "metrics.jsonl")
    if not rows:
        raise ConfigError(f"{workdir / 'metrics.jsonl'} holds no metrics to draw")
    # scalar metrics only: a vector (one value per test-time step, say) is no learning curve, and
    # a value that is no number (a hand-edited file) is left out rather than drawn as a category
    names = sorted({k for r in rows for k, v in r.items() if "/" in k and _number(v)})
    kinds = sorted({n.split("/", 1)[1] for n in names})
    out_dir = workdir / "plots"
    out_dir.mkdir(exist_ok=True)
    paths = []
    for kind in kinds:
        fig, ax = plt.subplots(figsize=(5, 3.5), dpi=120)
        for name in (n for n in names if n.split("/", 1)[1] == kind):
            pts = [(r["step"], r[name]) for r in rows if _number(r.get(name))]
            line, = ax.plot(*zip(*pts), label=name.split("/")[0])
            seeds = _per_seed(rows, name)
            if seeds:
                steps, values = zip(*seeds)
                ax.plot(steps, values, color=line.get_color(), alpha=0.25, linewidth=0.8)
        ax.set_xlabel("step")
        ax.set_ylabel(kind)
        values = np.asarray([r[n] for r in rows for n in names
                             if n.split("/", 1)[1] == kind and _number(r.get(n))], np.float64)
        values = values[np.isfinite(values)]
        if values.size and values.min() > 0 and values.max() > 30 * values.min():
            ax.set_yscale("log")
        ax.legend()
        ax.grid(alpha=0.3)
        ax.set_title(f"{title or workdir.name}: {kind}")
        fig.tight_layout()
        path = out_dir / f"{kind}.png"
        fig.savefig(path)
        plt.close(fig)
        paths.append(path)
    return paths


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _per_seed(rows: list[dict], name: str) -> list[tuple[int, list]]:
    """[(step, one value per seed)] of the rows whose per-seed values of `name` are numbers, all
    as many as the first such row's (a ragged row cannot be drawn as lines)."""
    found = [(r["step"], r["per_seed"][name]) for r in rows
             if isinstance(r.get("per_seed"), dict) and isinstance(r["per_seed"].get(name), list)
             and r["per_seed"][name] and all(_number(v) for v in r["per_seed"][name])]
    return [(t, v) for t, v in found if len(v) == len(found[0][1])]


# --- what models and algorithms draw ------------------------------------------------------------

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


# --- reinforcement learning --------------------------------------------------------------------------

def episode_pictures(env_name: str, ep: dict, out: Path, title: str) -> list[Path]:
    """episode.png (frames of one episode, dlcore.envs.render) and trajectory.png (its observations
    and return against time). ep: {'obs': [T+1, ...], 'reward': [T], 'length': T}."""
    from dlcore.envs import render
    title = f"{title}: greedy episode, return {ep['reward'].sum():.1f}"
    paths = [render.filmstrip(out / "episode.png", env_name, ep["obs"],
                              np.concatenate([[0.0], ep["reward"]]))]
    fig, (a, b) = plt.subplots(2, 1, figsize=(6, 4.5), dpi=120, sharex=True)
    for i in range(ep["obs"].shape[1]):
        a.plot(ep["obs"][:, i], label=f"obs[{i}]", linewidth=1)
    a.legend(fontsize=7, ncol=3)
    a.set_ylabel("observation")
    a.set_title(title, fontsize=9)
    b.plot(np.arange(1, ep["length"] + 1), np.cumsum(ep["reward"]))
    b.set_xlabel("environment step")
    b.set_ylabel("return so far")
    for ax in (a, b):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "trajectory.png")
    plt.close(fig)
    return paths + [out / "trajectory.png"]


# --- meta-learning ----------------------------------------------------------------------------------

def fits_figure(fits: dict, tasks: dict, path: Path) -> Path:
    """fits: {label: {steps: [tasks, grid]}}; one row per label, one column per task."""
    xs = np.linspace(-5, 5, next(iter(next(iter(fits.values())).values())).shape[1])
    n_tasks = len(tasks["amplitude"])
    fig, axes = plt.subplots(len(fits), n_tasks, figsize=(3 * n_tasks, 2.3 * len(fits)), dpi=110,
                             squeeze=False, sharex=True)
    for r, (label, by_steps) in enumerate(fits.items()):
        for c in range(n_tasks):
            ax = axes[r, c]
            ax.plot(xs, tasks["amplitude"][c] * np.sin(xs - tasks["phase"][c]), "k", lw=1.2,
                    label="true")
            for s, pred in by_steps.items():
                ax.plot(xs, pred[c], lw=1, label=f"{s} step{'s' if s != 1 else ''}")
            sx, sy = tasks["support"]["x"][c, :, 0], tasks["support"]["y"][c, :, 0]
            ax.scatter(sx, sy, s=12, c="k", marker="^", zorder=3, label="support")
            amp = float(np.abs(tasks["amplitude"][c]))
            ax.set_ylim(-1.8 * amp - 0.5, 1.8 * amp + 0.5)  # a diverged fit must not hide the rest
            if c == 0:
                ax.set_ylabel(label)
            if r == 0 and c == n_tasks - 1:
                ax.legend(fontsize=6, loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def after_steps_figure(curves: dict, name: str, path: Path) -> Path:
    """curves: {label: (mean [S+1], ci95 [S+1] or None)} against test-time steps."""
    fig, ax = plt.subplots(figsize=(5, 3.5), dpi=120)
    for label, (mean, ci) in curves.items():
        steps = np.arange(len(mean))
        line, = ax.plot(steps, mean, marker="o", ms=3, label=label)
        if ci is not None:
            ax.fill_between(steps, np.subtract(mean, ci), np.add(mean, ci),
                            color=line.get_color(), alpha=0.2)
    ax.set_xlabel("test-time gradient steps")
    ax.set_ylabel(f"{name} (mean, 95 % CI)")
    if name == "mse":
        ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def attention_maps(weights: list, labels: list[str], path: Path, title: str) -> Path:
    """A grid of attention weights, a row per layer and a column per head: weights is a list (one
    per layer) of [heads, T, T] arrays (query rows, key columns); labels name the T tokens."""
    layers, heads = len(weights), weights[0].shape[0]
    fig, axes = plt.subplots(layers, heads, figsize=(2.2 * heads + 0.5, 2.2 * layers + 0.6),
                             dpi=120, squeeze=False)
    shown = [repr(t)[1:-1] for t in labels]  # a newline shows as \n, not as a line break
    for i, layer in enumerate(weights):
        for j in range(heads):
            ax = axes[i, j]
            ax.imshow(np.asarray(layer[j]), cmap="viridis", vmin=0.0, vmax=1.0)
            ax.set_xticks([])
            ax.set_yticks([])
            if i == layers - 1 and len(shown) <= 48:
                ax.set_xticks(range(len(shown)), shown, fontsize=4, rotation=90)
            if j == 0:
                ax.set_ylabel(f"layer {i}", fontsize=8)
                if len(shown) <= 48:
                    ax.set_yticks(range(len(shown)), shown, fontsize=4)
            if i == 0:
                ax.set_title(f"head {j}", fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _example(ax, x: np.ndarray) -> None:
    """One example: an image [H, W, 1|3] or [H, W], or a signal [L] / [L, C] as a line."""
    x = np.asarray(x)
    if x.ndim == 1 or (x.ndim == 2 and x.shape[-1] <= 4 and x.shape[0] > 8):
        ax.plot(x, linewidth=1)
    else:
        img = x[..., 0] if x.ndim == 3 and x.shape[-1] == 1 else x
        ax.imshow(np.clip(img, 0, 1) if img.ndim == 3 else img, cmap="gray",
                  interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])


def example_grid(rows: list, path: Path, title: str, labels: list | None = None) -> Path:
    """rows: a list of [n, *shape] arrays, drawn one example per cell, one array per row (inputs
    above reconstructions, samples along an interpolation, ...); labels: a name per row."""
    cols = max(len(r) for r in rows)
    fig, axes = plt.subplots(len(rows), cols, figsize=(0.9 * cols, 0.95 * len(rows) + 0.4),
                             dpi=120, squeeze=False)
    for r, row in enumerate(rows):
        for c in range(cols):
            if c < len(row):
                _example(axes[r, c], row[c])
            else:
                axes[r, c].axis("off")
        if labels:
            axes[r, 0].set_ylabel(labels[r], fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def reconstructions(x, recon, path: Path, title: str) -> Path:
    """x, recon: [n, *shape]: inputs in the top row, their reconstructions below."""
    return example_grid([np.asarray(x), np.asarray(recon)], path, title, ["input", "output"])


def latent_map(codes, labels, path: Path, title: str) -> Path:
    """codes [n, d]: the first two coordinates (d > 2: the first two principal components),
    coloured by label when the data has labels [n]."""
    z = np.asarray(codes, np.float64)
    how = "code"
    if z.shape[1] > 2:
        zc = z - z.mean(0)
        _, _, vt = np.linalg.svd(zc, full_matrices=False)
        z, how = zc @ vt[:2].T, "principal component"
    elif z.shape[1] == 1:
        z = np.concatenate([z, np.zeros_like(z)], 1)
    fig, ax = plt.subplots(figsize=(5, 4.4), dpi=120)
    c = None if labels is None else np.asarray(labels)[:len(z)]
    sc = ax.scatter(z[:, 0], z[:, 1], c=c, s=4, cmap="tab10" if c is not None else None)
    if c is not None and np.issubdtype(c.dtype, np.integer):
        fig.colorbar(sc, ax=ax, label="label")
    ax.set_xlabel(f"{how} 1")
    ax.set_ylabel(f"{how} 2")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def points(panels: list, path: Path, title: str, centres=None) -> Path:
    """2-D point clouds side by side: panels = [(name, [n, 2] points), ...]; centres [m, 2]: the
    modes of the data, marked on every panel."""
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.3), dpi=120,
                             squeeze=False)
    all_pts = np.concatenate([np.asarray(p) for _, p in panels])
    lo, hi = np.percentile(all_pts, 0.5, 0), np.percentile(all_pts, 99.5, 0)
    if centres is not None:
        c = np.asarray(centres)
        lo, hi = np.minimum(lo, c.min(0)), np.maximum(hi, c.max(0))
    pad = 0.1 * (hi - lo) + 1e-3
    for ax, (name, pts) in zip(axes[0], panels):
        pts = np.asarray(pts)
        ax.scatter(pts[:, 0], pts[:, 1], s=2, alpha=0.4, color="tab:blue", linewidths=0)
        if centres is not None:
            ax.scatter(c[:, 0], c[:, 1], s=25, marker="x", color="tab:red")
        ax.set_xlim(lo[0] - pad[0], hi[0] + pad[0])
        ax.set_ylim(lo[1] - pad[1], hi[1] + pad[1])
        ax.set_aspect("equal")
        ax.set_title(name, fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
