"""What every meta-learning algorithm shares: the per-task loss, the inner loop, and the scoring of
a meta-learned model on the fixed evaluation tasks.

A task is {'support': {'x': [K, ...], 'y': ...}, 'query': {'x': [Q, ...], 'y': ...}}; a batch of
tasks has a leading axis [B] on every array. Regression targets are [K, 1] floats, classification
labels [K] integers 0..N-1 (N-way episodes).

The inner loop is plain gradient descent on the support loss, `steps` steps of size `lr` (a scalar,
or a pytree like `params` for Meta-SGD's per-parameter rates). Each step's gradient is clipped to
global norm `clip` (0 = off), so `steps` steps move the parameters by at most steps * lr * clip and
adaptation stays finite. Why: with a fixed rate, plain gradient descent diverges on the few tasks
whose loss is too sharp for it (a reference MAML went to NaN on 0.3 % of sinusoid test tasks after
5 to 10 steps); a clip well above the usual gradient norm leaves every other task untouched. The
evaluation reports the fraction of tasks on which the clip acted.
"""
from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from dlcore import models, optim
from dlcore.config import ConfigError, check, one_of


class State(NamedTuple):
    """The state of every meta-learner here."""
    step: jax.Array  # int32 scalar
    params: Any      # the meta-learned parameters (an initialisation, an embedding network, ...)
    opt_state: Any
    hyper: Any = None  # traced hyperparameters (MAML's inner_lr, inner_steps); None without


def defaults(*keys: str, **overrides) -> dict:
    """The `meta` config section, or the subset of it named by `keys` (each algorithm's section
    holds only the keys it reads).

    inner_lr / inner_steps: the inner loop in training; test_inner_lr / test_steps: at evaluation
    (test_inner_lr 0 = inner_lr); inner_grad_clip: see the module docstring; first_order: MAML
    without second derivatives (FOMAML); embedding_dim: ProtoNets' and zero-shot's embedding;
    task_batching: how MAML's meta-batch and an evaluation chunk run, 'vmap' (one batched program)
    or 'unroll' (the tasks one after another inside the same program). Under vmap a conv layer with per-task adapted
    weights becomes a grouped convolution, which XLA's CPU backend runs slowly: measured with
    benchmarks/meta_tasks.py, glyphs/maml did 3.9 tasks/s vmapped and 21 unrolled.
    """
    cfg = {"inner_lr": 0.01, "inner_steps": 1, "test_inner_lr": 0.0, "test_steps": 10,
           "inner_grad_clip": 100.0, "first_order": False, "embedding_dim": 64,
           "task_batching": "vmap"}
    cfg = {k: cfg[k] for k in keys} if keys else cfg
    unknown = set(overrides) - set(cfg)
    assert not unknown, f"unknown meta keys {unknown}"
    return {**cfg, **overrides}


def validate(cfg: dict) -> dict:
    """ConfigError for impossible meta settings (of the keys present); returns the settings with
    test_inner_lr filled (0 = inner_lr)."""
    for key, positive, what in (("inner_lr", True, "a positive number"),
                                ("test_inner_lr", False, ">= 0 (0 = meta.inner_lr)"),
                                ("inner_grad_clip", False, ">= 0 (0 = off)")):
        v = cfg.get(key, 1.0)
        ok = isinstance(v, (int, float)) and not isinstance(v, bool) and (v > 0 if positive else v >= 0)
        check(ok, f"meta.{key}", f"must be {what}; got {v!r}")
    for key, low in (("inner_steps", 1), ("test_steps", 0), ("embedding_dim", 1)):
        if key in cfg:
            check(type(cfg[key]) is int and cfg[key] >= low, f"meta.{key}",
                  f"must be an integer >= {low}; got {cfg[key]!r}")
    if "task_batching" in cfg:
        one_of(cfg["task_batching"], "meta.task_batching", ("vmap", "unroll"))
    out = dict(cfg)
    if "test_inner_lr" in cfg:
        out["test_inner_lr"] = cfg["test_inner_lr"] or cfg.get("inner_lr", 0.0)
    return out


def require_tasks(spec: dict, algorithm: str, n_way: int | None = None) -> None:
    """ConfigError unless the data gives tasks with fixed evaluation tasks (sinusoid, glyphs,
    digits_classes), and, for a classifier with an `n_way` head, evaluation tasks of at most
    n_way classes."""
    check("eval_tasks" in spec, "data.name",
          f"{algorithm} learns from tasks; choose a task source (sinusoid, glyphs, digits_classes)")
    if n_way is not None and spec.get("test_n_way", n_way) > n_way:
        raise ConfigError(f"config key 'data.test_n_way': {algorithm}'s head has {n_way} outputs "
                          f"(data.n_way), so it cannot score {spec['test_n_way']}-way test tasks")


class Parts(NamedTuple):
    """What a gradient-based meta-learner builds from its config (`parts`)."""
    settings: dict    # the `meta` section, checked (meta.validate)
    model: Any        # dlcore.models.Model
    apply: Callable   # apply(params, x) -> outputs
    loss: Callable    # loss(params, data) -> (loss, score)
    tx: Any           # the optax optimizer of the meta-parameters


def parts(config: dict, data, steps: int, algorithm: str) -> Parts:
    """The pieces MAML, Reptile and Meta-SGD build alike: the task source checked, the model with
    one output per class of an episode (or per regression target), its loss, the optimizer."""
    spec = data.spec
    classify = spec.get("task") == "classification"
    require_tasks(spec, algorithm, spec.get("num_outputs") if classify else None)
    settings = validate(config["meta"])
    model = models.build(config["model"], spec["input_shape"], spec["num_outputs"])
    apply = model_apply(model, spec["input_shape"])
    return Parts(settings, model, apply, task_loss(apply, spec["task"]),
                 optim.build(config["optim"], steps))


def task_loss(apply: Callable, task: str) -> Callable:
    """loss(params, data) -> (loss, score): mean squared error (score = the same) for regression,
    cross-entropy (score = accuracy) for classification. apply(params, x [n, ...]) -> [n, out]."""
    def loss(params, data):
        out = apply(params, data["x"])
        if task == "regression":
            err = jnp.mean((out - data["y"].reshape(out.shape)) ** 2)
            return err, err
        ce = optax.softmax_cross_entropy_with_integer_labels(out, data["y"]).mean()
        return ce, (jnp.argmax(out, -1) == data["y"]).mean()
    return loss


def sgd_step(loss: Callable, params, data: dict, lr, clip: float, first_order: bool = False):
    """One inner step: (params - lr * clipped grad, whether the clip acted). lr: scalar or pytree.

    first_order: the gradient is a constant to the outer derivative (first-order MAML).
    """
    grads = jax.grad(lambda p: loss(p, data)[0])(params)
    if first_order:
        grads = jax.lax.stop_gradient(grads)
    norm = optax.tree.norm(grads)
    clipped = (clip > 0) & (norm > clip)
    scale = jnp.where(clipped, clip / jnp.where(clipped, norm, 1.0), 1.0)
    lrs = lr if jax.tree.structure(lr) == jax.tree.structure(params) else \
        jax.tree.map(lambda _: lr, params)
    return jax.tree.map(lambda p, a, g: p - a * scale * g, params, lrs, grads), clipped


def adapt(loss: Callable, params, support: dict, lr, steps, clip: float,
          first_order: bool = False, max_steps: int | None = None):
    """`steps` inner steps on the support set -> adapted params (differentiable w.r.t. params).

    steps: a Python int (a plain unrolled loop), or, with `max_steps`, a traced integer 0..max_steps:
    the loop runs `max_steps` steps and keeps step i only while i < steps, so different step counts
    (members of a hyperparameter sweep, say) share one program. A kept step is computed as in the
    plain loop; a dropped one leaves the parameters, and their derivative, unchanged.
    """
    if not isinstance(steps, jax.core.Tracer):  # known while tracing: the plain loop
        if max_steps is not None and steps > max_steps:
            raise ValueError(f"steps ({steps}) is more than max_steps ({max_steps})")
        for _ in range(steps):  # unrolled: the training loops take one to a few steps
            params, _ = sgd_step(loss, params, support, lr, clip, first_order)
        return params
    if max_steps is None:
        raise TypeError("a traced step count needs max_steps, the length of the loop that masks it")
    for i in range(max_steps):
        stepped, _ = sgd_step(loss, params, support, lr, clip, first_order)
        params = jax.tree.map(lambda new, old: jnp.where(i < steps, new, old), stepped, params)
    return params


def adaptation_curve(loss: Callable, params, task: dict, lr, steps: int, clip: float) -> dict:
    """The query loss and score after 0, 1, ..., steps inner steps on the support set.

    Returns {'loss': [steps + 1], 'score': [steps + 1], 'clipped': bool (the clip ever acted)}.
    """
    def body(carry, _):
        p, clipped = carry
        p, c = sgd_step(loss, p, task["support"], lr, clip)
        return (p, clipped | c), loss(p, task["query"])

    first = loss(params, task["query"])
    (_, clipped), rest = jax.lax.scan(body, (params, jnp.zeros((), bool)), None, length=steps)
    curve = [jnp.concatenate([jnp.atleast_1d(a), b]) for a, b in zip(first, rest)]
    return {"loss": curve[0], "score": curve[1], "clipped": clipped}


def evaluate_tasks(per_task: Callable, split: dict, eval_tasks: tuple, task: str,
                   unroll: bool = False) -> dict:
    """Score every evaluation task: per_task(task) -> {'loss': [S+1], 'score': [S+1], 'clipped'}
    with S test-time steps (S = 0 for methods that do not adapt by gradient steps).

    Regression: 'mse' (after S steps), 'mse_ci95', and per step 'mse_after_steps',
    'median_mse_after_steps', 'mse_ci95_after_steps'. Classification: 'accuracy', 'accuracy_ci95'
    (1.96 standard errors over tasks), 'accuracy_after_steps'. Both: 'loss', 'clipped_fraction'.
    unroll: a chunk's tasks one after another instead of vmapped (meta.task_batching 'unroll').
    """
    n, chunk, tasks = eval_tasks
    n_chunks = -(-n // chunk)

    def one_chunk(i):
        batch = tasks(split, i)
        if not unroll:
            return jax.vmap(per_task)(batch)
        outs = [per_task(jax.tree.map(lambda a: a[j], batch)) for j in range(chunk)]
        return jax.tree.map(lambda *a: jnp.stack(a), *outs)
    out = jax.lax.map(one_chunk, jnp.arange(n_chunks))
    out = jax.tree.map(lambda a: a.reshape(n_chunks * chunk, *a.shape[2:])[:n], out)
    score = out["score"]  # [n, S + 1]
    half = 1.96 * jnp.std(score, axis=0, ddof=1) / math.sqrt(n) if n > 1 else jnp.zeros_like(score[0])
    name = "mse" if task == "regression" else "accuracy"
    metrics = {"loss": out["loss"][:, -1].mean(), name: score[:, -1].mean(),
               f"{name}_ci95": half[-1], f"{name}_after_steps": score.mean(0),
               "clipped_fraction": out["clipped"].astype(jnp.float32).mean()}
    if task == "regression":
        metrics["median_mse_after_steps"] = jnp.median(score, axis=0)
        metrics["mse_ci95_after_steps"] = half
    return metrics


# what `dlcore run` prints first: the score after the test-time steps, on the test tasks
HEADLINE = {"regression": ("test_mse",), "classification": ("test_accuracy",)}


def pictures(task: str, adapt: Callable | None = None, apply: Callable | None = None) -> Callable:
    """A meta-learner's pictures(snapshot): after_steps.png (the test score against the number of
    test-time steps, 95 % band, from the run's summary) and, for regression with `adapt(params,
    support, key, steps=s)` and `apply(params, x)`, fits.png (four test tasks' fits after 0, 1
    and 10 steps)."""
    def draw(s):
        from dlcore import plots
        out = []
        if task == "regression" and adapt is not None:
            tasks = jax.tree.map(lambda a: a[:4], s.data.splits["test"])
            xs = jnp.linspace(-5, 5, 200, dtype=jnp.float32)[:, None]
            fits = {}
            for steps in (0, 1, 10):
                def one(support):
                    return apply(adapt(s.state.params, support, jax.random.key(0), steps=steps),
                                 xs)[:, 0]
                fits[steps] = jax.device_get(jax.jit(jax.vmap(one))(tasks["support"]))
            out.append(plots.fits_figure({s.title: fits}, tasks, s.out_dir / "fits.png"))
        name = "mse" if task == "regression" else "accuracy"
        if f"test_{name}_after_steps" in s.metrics:
            out.append(plots.after_steps_figure(
                {s.title: (s.metrics[f"test_{name}_after_steps"],
                           s.metrics.get(f"test_{name}_ci95_after_steps"))},
                name, s.out_dir / "after_steps.png"))
        return out
    return draw


def check_support(support: dict, input_shape: tuple, task: str, n_way: int | None = None) -> None:
    """ValueError naming the problem when a support set {'x': [K, *input_shape], 'y'} does not fit
    the model: wrong example shape, mismatched counts, labels outside 0..n_way-1 (checked on
    concrete arrays only)."""
    x, y = support.get("x"), support.get("y")
    if x is None or y is None:
        raise ValueError(f"a support set is a dict with 'x' and 'y'; got keys {sorted(support)}")
    if tuple(x.shape[1:]) != tuple(input_shape):
        raise ValueError(f"support x has examples of shape {tuple(x.shape[1:])}, the model takes "
                         f"{tuple(input_shape)} (support x must be [K, {', '.join(map(str, input_shape))}])")
    if len(y) != len(x):
        raise ValueError(f"support has {len(x)} inputs but {len(y)} targets")
    if task == "classification":
        if not jnp.issubdtype(y.dtype, jnp.integer) or y.ndim != 1:
            raise ValueError(f"support y must be integer labels [K]; got {y.dtype} {tuple(y.shape)}")
        if n_way and not isinstance(y, jax.core.Tracer) and (int(y.max()) >= n_way or int(y.min()) < 0):
            raise ValueError(f"support labels must lie in 0..{n_way - 1} for {n_way}-way tasks; "
                             f"got {int(y.min())}..{int(y.max())}")
    elif y.ndim != 2 or y.shape[1] != 1:
        raise ValueError(f"support y must be [K, 1] regression targets; got {tuple(y.shape)}")


def model_apply(model, input_shape: tuple) -> Callable:
    """apply(params, x [n, ...]) -> [n, out] of a dlcore.models.Model whose state is its parameters
    alone (no batch statistics): the inner loop adapts `params`. Evaluation mode (no dropout).
    ConfigError for a model with batch norm or dropout."""
    module = model.module
    for attr, bad in (("batch_norm", True), ("dropout", 0.0)):
        if hasattr(module, attr) and (getattr(module, attr) == bad if attr == "batch_norm"
                                      else getattr(module, attr) > 0):
            raise ConfigError(f"config key 'model.{attr}': meta-learning here adapts plain "
                              f"parameters; set model.{attr}={'False' if attr == 'batch_norm' else 0.0}")
    shapes = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, *input_shape)))
    if set(shapes) - {"params"} and any(jax.tree.leaves(shapes[k]) for k in set(shapes) - {"params"}):
        raise ConfigError(f"config key 'model.name': meta-learning here adapts plain parameters; "
                          f"this model also keeps {sorted(set(shapes) - {'params'})}")
    return lambda params, x: model.apply({"params": params}, x, False, None)[0]


def init_params(model, input_shape: tuple, key: jax.Array):
    """The model's initial parameters."""
    return model.init(key, jnp.zeros((1, *input_shape)))["params"]
