"""Adversarial training (Madry et al., ICLR 2018): classification on examples that projected
gradient descent perturbs inside every training step, the saddle-point problem

    min_theta  E_(x,y) [ max_{||delta|| <= eps} L(theta, x + delta, y) ].

    state = State(step, params, model_state, opt_state)     (dlcore.generative.State)
    batch = {'x': [b, *input_shape] float, 'y': [b] int}

Each step first solves the inner maximisation approximately: PGD (dlcore.attack.pgd) from a random
point of the eps-ball, `adversarial.steps` steps of `step_size`, each projected onto the ball and
onto the data's value range (spec['value_range'], [0, 1] for images; unbounded otherwise), against
the current parameters in evaluation mode (dropout off, batch statistics left alone), vmapped over
the batch. Then one optimizer update on

    (1 - clean_weight) * L(x_adv) + clean_weight * L(x)

(Madry et al.: clean_weight 0; Goodfellow et al. 2015 mix half and half). The adversarial examples
are held fixed in the update (stop_gradient): by Danskin's theorem the gradient of the inner max is
the loss's gradient at the maximiser, so nothing flows through the attack's own steps.
`eps_warmup_steps` > 0 grows eps linearly from 0 over that many steps (a small network trained at
the full eps from its first step can settle on a constant prediction).

Metrics: 'loss' (the mixed loss) and 'accuracy' on the adversarial batch. `evaluate` gives the
clean 'loss' and 'accuracy' of the whole split and 'pgd_accuracy' of its first `eval_count`
examples under PGD with `eval_steps` steps of 2.5 * eps / eval_steps and `eval_restarts` random
starts (a fresh attack, not the training one). `dlcore attack RUN` measures the full table.

The state and model are a supervised run's, so `dlcore attack`, `dlcore explain` and
`--init-from` read an adversarially trained run as they read any classifier.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from dlcore import attack, losses, models, optim
from dlcore import generative as gen
from dlcore.config import check, one_of
from dlcore.core import Algorithm, Data
from dlcore.generative import State


def defaults() -> dict:
    """The sections adversarial training reads (Madry et al.'s MNIST attack by default)."""
    return {"model": {"name": "cnn"}, "optim": optim.defaults(),
            "adversarial": {"eps": 0.3, "norm": "linf", "steps": 40, "step_size": 0.01,
                            "random_start": True, "clean_weight": 0.0, "eps_warmup_steps": 0,
                            "eval_steps": 40, "eval_restarts": 1, "eval_count": 1000,
                            "eval_batch_size": 1000}}


def settings(own: dict, steps: int) -> dict:
    """The `adversarial` section checked; ConfigError naming the first bad key."""
    def number(key, low, high=np.inf):
        v = own[key]
        check(isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v)
              and low <= v <= high, f"adversarial.{key}",
              f"must be a number in [{low}, {high}]; got {v!r}")

    def count(key, low=1):
        check(type(own[key]) is int and own[key] >= low, f"adversarial.{key}",
              f"must be an integer >= {low}; got {own[key]!r}")
    number("eps", 0.0)
    number("step_size", 0.0)
    number("clean_weight", 0.0, 1.0)
    one_of(own["norm"], "adversarial.norm", ("linf", "l2"))
    check(isinstance(own["random_start"], bool), "adversarial.random_start",
          f"must be true or false; got {own['random_start']!r}")
    for key in ("steps", "eval_steps", "eval_restarts", "eval_count", "eval_batch_size"):
        count(key)
    count("eps_warmup_steps", 0)
    check(own["eps_warmup_steps"] <= steps, "adversarial.eps_warmup_steps",
          f"must be at most the run's {steps} steps; got {own['eps_warmup_steps']}")
    return own


def make(config: dict, data: Data, steps: int) -> Algorithm:
    """From config['model'], config['optim'] and config['adversarial'], for `steps` steps."""
    spec = data.spec
    check(spec.get("task") == "classification" and "eval_tasks" not in spec
          and "input_shape" in spec, "data.name",
          "adversarial training classifies batches of examples {'x', 'y'}; choose a "
          "classification source of examples (mnist_digits, mnist1d, digits, npz, ...)")
    losses.check_labels(data)
    own = settings(config["adversarial"], steps)
    shape = tuple(spec["input_shape"])
    model = models.build(config["model"], shape, spec["num_outputs"])
    tx = optim.build(config["optim"], steps)
    lo, hi = spec.get("value_range") or (None, None)
    clip = {"clip_min": lo, "clip_max": hi}
    warmup, clean_weight = own["eps_warmup_steps"], own["clean_weight"]

    def ramp(step):
        """The fraction of eps (and of the step size) at `step`: 1 without a warm-up."""
        return 1.0 if warmup == 0 else jnp.minimum(1.0, (step + 1) / warmup)

    def adversarial_examples(variables, x, y, key, eps, steps_, step_size, restarts):
        """x [b, *shape] -> [b, *shape]: PGD against `variables`, one key per example."""
        loss = attack.cross_entropy(model, variables)
        one = lambda x, y, k: attack.pgd(loss, x, y, k, eps, step_size, steps_, own["norm"],
                                         own["random_start"], restarts, **clip)
        return jax.vmap(one)(x, y, jax.random.split(key, x.shape[0]))

    def init(key: jax.Array) -> State:
        params, model_state = gen.init(model, key, shape)
        return State(jnp.zeros((), jnp.int32), params, model_state, tx.init(params))

    def loss_fn(params, model_state, x, x_adv, y, key):
        both = jnp.concatenate([x_adv, x]) if clean_weight > 0 else x_adv
        out, new_state = gen.apply(model, params, model_state, both, True, key)
        ce = optax.softmax_cross_entropy_with_integer_labels(out, jnp.tile(y, len(out) // len(y)))
        loss = ce[:len(y)].mean()
        if clean_weight > 0:
            loss = (1 - clean_weight) * loss + clean_weight * ce[len(y):].mean()
        return loss, (out[:len(y)], new_state)

    def step(state: State, batch: dict, key: jax.Array) -> tuple[State, dict]:
        k_attack, k_model = jax.random.split(key)
        x, y = batch["x"], batch["y"]
        r = ramp(state.step)
        x_adv = jax.lax.stop_gradient(adversarial_examples(
            models.variables_of(state), x, y, k_attack, own["eps"] * r, own["steps"],
            own["step_size"] * r, 1))
        (loss, (out, model_state)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            state.params, state.model_state, x, x_adv, y, k_model)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        return (State(state.step + 1, params, model_state, opt_state),
                {"loss": loss, "accuracy": losses.accuracy(out, y)})

    def evaluate(state: State, split: dict, key: jax.Array) -> dict:
        """Clean loss and accuracy of the whole split; PGD accuracy of its first eval_count."""
        variables = models.variables_of(state)
        x_all, y_all = split["x"], split["y"]

        def clean(idx, _):
            out, _ = model.apply(variables, x_all[idx], False, None)
            y = y_all[idx]
            return {"loss": optax.softmax_cross_entropy_with_integer_labels(out, y),
                    "accuracy": (jnp.argmax(out, -1) == y).astype(jnp.float32)}

        def robust(idx, k):
            x, y = x_all[idx], y_all[idx]
            x_adv = adversarial_examples(variables, x, y, k, jnp.float32(own["eps"]),
                                         own["eval_steps"], 2.5 * own["eps"] / own["eval_steps"],
                                         own["eval_restarts"])
            out, _ = model.apply(variables, x_adv, False, None)
            return {"pgd_accuracy": (jnp.argmax(out, -1) == y).astype(jnp.float32)}

        n = x_all.shape[0]
        chunk = own["eval_batch_size"]
        metrics = gen.chunked_mean(clean, jnp.arange(n), chunk, key)
        m = min(n, own["eval_count"])
        return {**metrics, **gen.chunked_mean(robust, jnp.arange(m), chunk, key)}

    def pictures(snap) -> list:
        """adversarial.png: ten test examples, their PGD examples at eps against the trained
        state, and the difference (scaled so that +-eps spans the grey range)."""
        from dlcore import plots
        test = snap.data.splits["test"]
        x, y = jnp.asarray(test["x"][:10]), jnp.asarray(test["y"][:10])
        variables = models.variables_of(snap.state)
        eps = own["eps"]
        x_adv = adversarial_examples(variables, x, y, jax.random.key(0), jnp.float32(eps),
                                     own["eval_steps"], 2.5 * eps / own["eval_steps"], 1)
        right = [int(jnp.sum(jnp.argmax(model.apply(variables, v, False, None)[0], -1) == y))
                 for v in (x, x_adv)]
        diff = 0.5 + (x_adv - x) / (2 * eps) if eps > 0 else x_adv - x
        return [plots.example_grid(
            [np.asarray(x), np.asarray(x_adv), np.asarray(diff)],
            snap.out_dir / "adversarial.png",
            f"{snap.title}: PGD-{own['eval_steps']} at eps {eps:g} ({own['norm']}); classified "
            f"right: clean {right[0]}/10, attacked {right[1]}/10",
            ["clean", "attacked", "difference"])]

    return Algorithm(init, step, evaluate, headline=("test_accuracy", "test_pgd_accuracy"),
                     pictures=pictures, extras={"model": model})
