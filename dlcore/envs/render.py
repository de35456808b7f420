"""Pictures of the classic-control environments, drawn from observations alone (the state is not
needed): `draw` one frame on a matplotlib Axes; `filmstrip` saves a row of frames of an episode.

matplotlib is imported inside the functions, so the environments never need it.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np


def draw(ax, name: str, obs) -> None:
    """One frame of environment `name` from its observation `obs` [obs_dim], with fixed limits."""
    o = np.asarray(obs, dtype=float)
    ax.clear()
    if name == "CartPole-v1":  # obs = [x, x_dot, theta, theta_dot]; theta > 0 leans right
        x, theta = o[0], o[2]
        ax.plot([-2.4, 2.4], [0, 0], color="0.6", lw=1)  # the track, to the termination bounds
        ax.add_patch(_rect((x - 0.25, -0.15), 0.5, 0.3))
        ax.plot([x, x + math.sin(theta)], [0.15, 0.15 + math.cos(theta)], color="tab:orange",
                lw=3, solid_capstyle="round")  # pole length 1 (Gymnasium's length is half)
        ax.set(xlim=(-2.6, 2.6), ylim=(-0.6, 1.4))
    elif name == "Acrobot-v1":  # obs = [cos t1, sin t1, cos t2, sin t2, ...]; hangs down at 0
        c1, s1, c2, s2 = o[:4]
        c12, s12 = c1 * c2 - s1 * s2, s1 * c2 + c1 * s2  # the angle of link 2: t1 + t2
        xs, ys = [0, s1, s1 + s12], [0, -c1, -c1 - c12]
        ax.plot([-2.2, 2.2], [1, 1], color="0.6", lw=1, ls="--")  # the tip must rise above this
        ax.plot(xs, ys, color="tab:blue", lw=3, marker="o", ms=4)
        ax.set(xlim=(-2.2, 2.2), ylim=(-2.2, 2.2))
    elif name == "MountainCar-v0":  # obs = [position, velocity]; the track is sin(3x)
        xs = np.linspace(-1.2, 0.6, 100)
        height = lambda x: np.sin(3 * x) * 0.45 + 0.55  # noqa: E731 (Gymnasium's _height)
        ax.plot(xs, height(xs), color="0.4", lw=1)
        ax.plot([0.5, 0.5], [height(0.5), height(0.5) + 0.15], color="tab:green", lw=2)  # goal
        ax.plot([o[0]], [height(o[0]) + 0.04], "s", color="tab:red", ms=8)
        ax.set(xlim=(-1.2, 0.6), ylim=(0, 1.2))
    elif name == "Pendulum-v1":  # obs = [cos theta, sin theta, theta_dot]; upright at theta = 0
        c, s = o[0], o[1]
        ax.plot([0, -s], [0, c], color="tab:red", lw=4, solid_capstyle="round")
        ax.plot([0], [0], "o", color="k", ms=4)
        ax.set(xlim=(-1.2, 1.2), ylim=(-1.2, 1.2))
    else:
        raise ValueError(f"no drawing for environment '{name}'")
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])


def _rect(xy, w, h):
    from matplotlib.patches import Rectangle
    return Rectangle(xy, w, h, color="tab:blue")


def filmstrip(path, name: str, observations, rewards=None, every: int | None = None,
              max_frames: int = 8) -> Path:
    """Save a PNG of up to `max_frames` frames from one episode's observations [T, obs_dim]:
    every `every`-th step, or (every=None) frames spread evenly from the first step to the last.
    With `rewards` [T] (the reward after each observation's action) each title gives the return
    so far. Returns the path."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure  # no pyplot: no global state, nothing left open

    obs = np.asarray(observations)
    T = len(obs)
    if every is None:
        steps = np.unique(np.linspace(0, T - 1, min(max_frames, T)).round().astype(int))
    else:
        steps = np.arange(0, T, every)[:max_frames]
    fig = Figure(figsize=(1.8 * len(steps), 2.0), dpi=100)
    FigureCanvasAgg(fig)
    axes = np.atleast_1d(fig.subplots(1, len(steps)))
    returns = None if rewards is None else np.concatenate([[0.0], np.cumsum(rewards)])
    for ax, t in zip(axes, steps):
        draw(ax, name, obs[t])
        ax.set_title(f"t={t}" + ("" if returns is None else f"  R={returns[t]:.4g}"), fontsize=8)
    fig.suptitle(name, fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    return Path(path)
