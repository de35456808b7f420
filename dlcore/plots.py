"""PNG figures: learning curves from a run's `metrics.jsonl`, and what the trained model does (from
its checkpoint); `dlcore report DIR` redraws them all."""
from __future__ import annotations

import json
from pathlib import Path

import jax

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
    # scalar metrics only: a vector (one value per test-time step, say) is no learning curve
    names = sorted({k for r in rows for k, v in r.items() if "/" in k and not isinstance(v, list)})
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
    if run.spec.get("kind") == "env":
        return rl_pictures(run, workdir)
    if run.spec.get("kind", "examples") != "examples":
        return meta_pictures(run, workdir)
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


# --- reinforcement learning --------------------------------------------------------------------------

def rl_pictures(run, workdir: Path) -> list[Path]:
    """episode.png (frames of one greedy episode of the trained policy, from the evaluation's
    first reset) and trajectory.png (that episode's observations and return against time)."""
    from dlcore import rl
    from dlcore.envs import render
    env, env_params = rl.environment(run.spec)
    key = jax.random.fold_in(jax.random.key(run.spec["eval_seed"]), 0)
    ep = rl.greedy_episode(env, env_params, run.algorithm.act(run.final), key,
                           run.spec["max_steps"])
    out = workdir / "plots"
    title = f"{workdir.name}: greedy episode after {run.step} steps, return {ep['reward'].sum():.1f}"
    paths = [render.filmstrip(out / "episode.png", run.spec["env"], ep["obs"],
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

def meta_pictures(run, workdir: Path) -> list[Path]:
    """fits.png (regression: a few test tasks' fits after 0, 1 and 10 steps) and
    after_steps.png (the test score against the number of test-time steps, 95 % band)."""
    summary = json.loads((workdir / "summary.json").read_text())["metrics"]
    paths = []
    if run.spec["task"] == "regression":
        tasks = jax.tree.map(lambda a: a[:4], run.splits["test"])
        fits = sinusoid_fits(run, tasks, steps=(0, 1, 10))
        paths.append(fits_figure({workdir.name: fits}, tasks, workdir / "plots" / "fits.png"))
    name = "mse" if run.spec["task"] == "regression" else "accuracy"
    if f"test_{name}_after_steps" in summary:
        paths.append(after_steps_figure(
            {workdir.name: (summary[f"test_{name}_after_steps"],
                            summary.get(f"test_{name}_ci95_after_steps"))},
            name, workdir / "plots" / "after_steps.png"))
    return paths


def sinusoid_fits(run, tasks: dict, steps=(0, 1, 10), grid: int = 200) -> dict:
    """{steps: predictions [tasks, grid]} on x = linspace(-5, 5, grid) after adapting each task's
    support set for that many steps with the run's own `adapt`."""
    xs = np.linspace(-5, 5, grid, dtype=np.float32)[:, None]
    apply = lambda p, x: run.model.apply({"params": p}, x, train=False)
    params = run.final.params
    out = {}
    for s in steps:
        def one(support):
            return apply(run.algorithm.adapt(params, support, jax.random.key(0), steps=s), xs)[:, 0]
        out[s] = np.asarray(jax.jit(jax.vmap(one))(tasks["support"]))
    return out


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
