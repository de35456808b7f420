"""Adversarial attacks on a trained classifier: how little must an input change to flip its class.

    loss = cross_entropy(model, variables)          # loss(x [*shape], y) -> scalar, one example
    fgsm(loss, x, y, eps)                           # x + eps * sign(dL/dx)       (Goodfellow 2015)
    pgd(loss, x, y, key, eps, step_size, steps, norm="linf"|"l2", random_start=True, restarts=1)
                                                    # projected gradient ascent   (Madry 2018)
    uniform_noise(x, key, eps)                      # the control: random, in the L-inf ball
    perturb(attack, model, variables, x, y, key, **options)   # [b, *shape]: vmapped over a batch
    robust_accuracy(model, variables, x, y, attack, key, **options) -> float

Every attack is a pure, jittable function of one example x [*shape] and its label y; `perturb`
vmaps it over a batch in one jitted program (chunked). clip_min / clip_max keep the adversarial
example in the data's value range ([0, 1] for images; None for MNIST-1D's unbounded signals).
`dlcore attack RUN --eps ...` prints clean / noise / FGSM / PGD accuracy per eps and writes
RUN/attack.json.
"""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from dlcore.config import ConfigError, check  # noqa: F401 (attack.ConfigError: what it raises)


# --- the loss -------------------------------------------------------------------------------------

def cross_entropy(model, variables: dict) -> Callable:
    """loss(x [*shape], y int) -> scalar: the softmax cross-entropy of one example against its
    label, in evaluation mode; the attacks ascend it."""
    def loss(x, y):
        out, _ = model.apply(variables, x[None], False, None)
        logp = jax.nn.log_softmax(out[0])
        return -logp[y]
    return loss


# --- projections ----------------------------------------------------------------------------------

def _clip(x, clip_min, clip_max):
    if clip_min is None and clip_max is None:
        return x
    return jnp.clip(x, clip_min, clip_max)


def _l2_norm(d):
    return jnp.sqrt(jnp.sum(d * d))


def project(delta, eps, norm: str = "linf"):
    """The perturbation delta pulled back into the eps-ball (L-inf: clipped; L2: rescaled)."""
    if norm == "linf":
        return jnp.clip(delta, -eps, eps)
    n = _l2_norm(delta)
    return delta * jnp.minimum(1.0, eps / jnp.maximum(n, 1e-12))


def _ascent(g, norm: str):
    """The steepest ascent direction of unit size: sign(g) for L-inf, g / ||g|| for L2."""
    if norm == "linf":
        return jnp.sign(g)
    return g / jnp.maximum(_l2_norm(g), 1e-12)


def _check_norm(norm):
    check(norm in ("linf", "l2"), "norm", f"must be 'linf' or 'l2'; got {norm!r}")


# --- the attacks: one example x [*shape] ----------------------------------------------------------

def fgsm(loss: Callable, x: jax.Array, y, eps, clip_min=None, clip_max=None) -> jax.Array:
    """[*shape]: x + eps * sign(dL/dx), the fast gradient sign method (one L-inf step), clipped
    to [clip_min, clip_max] if given."""
    return _clip(x + eps * jnp.sign(jax.grad(loss)(x, y)), clip_min, clip_max)


def pgd(loss: Callable, x: jax.Array, y, key: jax.Array, eps, step_size, steps: int = 40,
        norm: str = "linf", random_start: bool = True, restarts: int = 1, clip_min=None,
        clip_max=None) -> jax.Array:
    """[*shape]: projected gradient ascent on the loss: `steps` steps of `step_size` along sign(g)
    (L-inf) or g/||g|| (L2), each followed by projection onto the eps-ball around x and onto
    [clip_min, clip_max]. random_start: begin at a uniform point of the ball (L-inf) or a random
    direction at a uniform radius (L2). Of `restarts` runs (each its own key), the one with the
    highest final loss is kept."""
    _check_norm(norm)
    grad = jax.grad(loss)

    def one(key):
        if random_start:
            if norm == "linf":
                delta = jax.random.uniform(key, x.shape, x.dtype, -eps, eps)
            else:
                k1, k2 = jax.random.split(key)
                d = jax.random.normal(k1, x.shape, x.dtype)
                r = eps * jax.random.uniform(k2, (), x.dtype) ** (1.0 / x.size)
                delta = d / jnp.maximum(_l2_norm(d), 1e-12) * r
        else:
            delta = jnp.zeros_like(x)
        adv = _clip(x + delta, clip_min, clip_max)

        def step(_, adv):
            adv = adv + step_size * _ascent(grad(adv, y), norm)
            return _clip(x + project(adv - x, eps, norm), clip_min, clip_max)
        adv = jax.lax.fori_loop(0, steps, step, adv)
        return adv, loss(adv, y)
    advs, losses = jax.vmap(one)(jax.random.split(key, restarts))
    return advs[jnp.argmax(losses)]


def uniform_noise(x: jax.Array, key: jax.Array, eps, clip_min=None, clip_max=None) -> jax.Array:
    """[*shape]: x plus noise uniform in [-eps, eps] per value: the control an attack must beat
    by far (the model is not fragile to any change of that size, only to chosen ones)."""
    return _clip(x + jax.random.uniform(key, x.shape, x.dtype, -eps, eps), clip_min, clip_max)


ATTACKS = {"noise": uniform_noise, "fgsm": fgsm, "pgd": pgd}


# --- over a batch ---------------------------------------------------------------------------------

@functools.lru_cache(maxsize=64)  # one program per (attack, model, settings): eps is traced
def _program(attack: Callable, model, settings: tuple):
    opts = dict(settings)

    def one(variables, x, y, key, eps):
        if attack is uniform_noise:
            return uniform_noise(x, key, eps, **opts)
        loss = cross_entropy(model, variables)
        if attack is fgsm:
            return fgsm(loss, x, y, eps, **opts)
        if "step_size" not in opts:  # Madry et al.'s 2.5 * eps / steps, traced with eps
            return pgd(loss, x, y, key, eps, 2.5 * eps / opts.get("steps", 40), **opts)
        return pgd(loss, x, y, key, eps, **opts)

    @jax.jit
    def run(variables, x, y, key, eps):
        keys = jax.random.split(key, x.shape[0])
        return jax.vmap(one, in_axes=(None, 0, 0, 0, None))(variables, x, y, keys, eps)
    return run


def perturb(attack: Callable, model, variables: dict, x, y, key: jax.Array | None = None,
            eps: float = 0.1, chunk: int = 1024, **options) -> jax.Array:
    """[b, *shape]: `attack` applied to every example of x [b, *shape] with labels y [b], vmapped
    in one jitted program per chunk of `chunk` examples (each example its own key, split from
    `key`, default key 0). eps is traced (a new eps compiles nothing); the other options (steps,
    norm, restarts, step_size, clip range) shape the program."""
    check(eps >= 0, "eps", f"must be >= 0; got {eps}")
    if attack is pgd:
        _check_norm(options.get("norm", "linf"))
    key = jax.random.key(0) if key is None else key
    run = _program(attack, model, tuple(sorted(options.items())))
    x, y = jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.int32)
    eps = jnp.float32(eps)
    out = [run(variables, x[i:i + chunk], y[i:i + chunk], jax.random.fold_in(key, i), eps)
           for i in range(0, len(x), chunk)]
    return jnp.concatenate(out) if out else x


def accuracy(model, variables: dict, x, y, chunk: int = 1024) -> float:
    """The fraction of x [b, *shape] classified as y [b]."""
    apply = jax.jit(lambda v, x: jnp.argmax(model.apply(v, x, False, None)[0], -1))
    hits = sum(int(jnp.sum(apply(variables, jnp.asarray(x[i:i + chunk])) ==
                           jnp.asarray(y[i:i + chunk])))
               for i in range(0, len(x), chunk))
    return hits / max(1, len(x))


def robust_accuracy(model, variables: dict, x, y, attack: Callable | None = None,
                    key: jax.Array | None = None, eps: float = 0.1, chunk: int = 1024,
                    **options) -> float:
    """The accuracy on x [b, *shape] after `attack` (None: clean) with budget eps."""
    if attack is not None:
        x = perturb(attack, model, variables, x, y, key, eps, chunk, **options)
    return accuracy(model, variables, x, y, chunk)


# --- `dlcore attack RUN` --------------------------------------------------------------------------

def attack_run(workdir, eps=(0.1,), norm: str = "linf", steps: int = 40, restarts: int = 1,
               count: int = 1000, split: str = "test", seed: int = 0) -> dict:
    """Clean, uniform-noise, FGSM and PGD accuracy per eps on the first `count` examples of a
    supervised classification run's `split`; writes RUN/attack.json and returns its content.
    FGSM (an L-inf attack) and the noise are measured at every eps whatever the norm; PGD uses
    `norm`, `steps` of 2.5 * eps / steps (Madry et al.), random start and `restarts`.
    ConfigError for a directory that is no such run or bad settings. Nothing else is changed."""
    from dlcore import experiment, models, rundir
    workdir = Path(workdir)
    eps = list(eps)
    check(len(eps) >= 1 and all(isinstance(e, (int, float)) and np.isfinite(e) and e >= 0
                                for e in eps), "--eps", f"must be finite and >= 0; got {eps}")
    _check_norm(norm)
    check(type(steps) is int and steps >= 1, "--steps", f"must be >= 1; got {steps!r}")
    check(type(restarts) is int and restarts >= 1, "--restarts", f"must be >= 1; got {restarts!r}")
    check(type(count) is int and count >= 1, "--count", f"must be >= 1; got {count!r}")
    run, x_all, y_all = experiment.classifier_split(workdir, split, "attacks")
    x = jnp.asarray(np.asarray(x_all)[:count], jnp.float32)
    y = jnp.asarray(np.asarray(y_all)[:count], jnp.int32)
    model, variables = run.model, models.variables_of(run.final)
    key = jax.random.key(seed)
    clip = _value_range(np.asarray(x_all))
    clean = accuracy(model, variables, x, y)
    rows = []
    for e in eps:
        e = float(e)
        rows.append({
            "eps": e,
            "clean": clean,
            "noise": robust_accuracy(model, variables, x, y, uniform_noise, key, e, **clip),
            "fgsm": robust_accuracy(model, variables, x, y, fgsm, key, e, **clip),
            "pgd": robust_accuracy(model, variables, x, y, pgd, key, e, steps=steps, norm=norm,
                                   restarts=restarts, **clip)})
    lo, hi = float(np.min(x_all)), float(np.max(x_all))
    report = {"run": str(workdir), "step": run.step, "split": split, "count": int(len(x)),
              "data_range": [lo, hi], "clip": clip, "norm": norm, "steps": steps,
              "step_size": "2.5 * eps / steps", "restarts": restarts, "random_start": True,
              "seed": seed, "results": rows}
    rundir.write_json(workdir / "attack.json", report)
    return report


def _value_range(x: np.ndarray) -> dict:
    """Images in [0, 1] are kept there; anything else (MNIST-1D's signals, standardised data)
    is left unclipped."""
    lo, hi = float(np.min(x)), float(np.max(x))
    return {"clip_min": 0.0, "clip_max": 1.0} if lo >= 0.0 and hi <= 1.0 else {}


def table(report: dict) -> str:
    """The report as a small markdown table: accuracy (%) per eps."""
    lines = [f"| eps | clean | noise (linf) | FGSM (linf) | PGD-{report['steps']} ({report['norm']}) |",
             "|---|---|---|---|---|"]
    for r in report["results"]:
        lines.append(f"| {r['eps']:g} | {100 * r['clean']:.1f} | {100 * r['noise']:.1f} | "
                     f"{100 * r['fgsm']:.1f} | {100 * r['pgd']:.1f} |")
    return "\n".join(lines)


def main(args) -> int:
    """`dlcore attack RUN --eps E [--eps ...] [--norm] [--steps] [--restarts] [--count]
    [--split]`: the table, then the path of attack.json."""
    report = attack_run(Path(args.workdir), args.eps or [0.1], args.norm, args.steps,
                        args.restarts, args.count, args.split)
    print(table(report))
    print(Path(args.workdir) / "attack.json")
    return 0
