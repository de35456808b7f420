"""Semi-supervised classification: a few labeled examples and many unlabeled ones (data.labels).

    state = State(step, params, model_state, opt_state)        # as supervised learning's
    batch = {'x': [B, *shape], 'y': [B] int, 'x_unlabeled': [U, *shape]}   (dlcore.data.few_labels)

Every step minimises  L = L_s + λ(t) L_u:  L_s, the cross-entropy of the weakly augmented labeled
batch; L_u, a consistency loss on the unlabeled batch chosen by `semisupervised.method`:

    'fixmatch'      (Sohn et al. 2020) the prediction p = softmax(f(weak(u))), held constant (no
                    gradient), is a pseudo-label argmax p wherever max p >= threshold; the
                    prediction on a strong augmentation of the same u is trained toward it:
                    L_u = (1/U) sum_u 1[max p >= threshold] CE(f(strong(u)), argmax p).
    'pseudo_label'  (Lee 2013, with FixMatch's confidence threshold) the same, but the pseudo-label
                    and the trained prediction come from one weak view: no strong augmentation.
    'pi_model'      (Laine & Aila 2017; as in FixMatch's reference code) two weak views u1, u2:
                    L_u = (1/U) sum_u mean_c (softmax(f(u1)) - sg(softmax(f(u2))))^2 , no mask.

λ(t) = unlabeled_weight * min(1, t / rampup_steps) (rampup_steps 0: no ramp; FixMatch uses none,
the Π-model a ramp). unlabeled_weight 0 is the labels-only ablation: the same network, weak
augmentation and optimizer on the labeled batch alone (the unlabeled batch is not computed).
As in FixMatch all views go through the network as one batch [labeled; unlabeled views], so
batch-norm statistics are shared and every view sees dropout. The defaults are FixMatch's
(threshold 0.95, λ_u 1; mu = data.unlabeled_batch_size / data.batch_size, 7 unless set).

Augmentations are pure jittable functions of (x [b, *shape], key) for 1-D signals [b, L] (MNIST-1D)
and images [b, H, W, C] (digits): the "spatial" axes are every example axis but a trailing channel
axis (an example of rank 1 is one spatial axis; [b, L, C] shifts along L only).
    weak    a translation by up to `weak_shift` steps along each spatial axis (zero-filled), plus
            N(0, weak_noise^2) noise;
    strong  a translation by up to `strong_shift`, each example scaled by U[1 - strong_scale,
            1 + strong_scale], N(0, strong_noise^2) noise, then cutout: a box of `cutout` steps
            along each spatial axis (its centre uniform over the example, clipped at the edges)
            set to 0.

Sections: `model` (any classifier family, as supervised), `optim`, `semisupervised`:
    method, threshold, unlabeled_weight, rampup_steps, weak_shift, weak_noise, strong_shift,
    strong_noise, strong_scale, cutout, eval_batch_size.
Step metrics: loss, supervised_loss, unlabeled_loss, accuracy (of the labeled batch), mask_rate
(the fraction of unlabeled examples whose pseudo-label passes the threshold; 1 for the Π-model).
evaluate: mean cross-entropy and accuracy on a whole split, as supervised learning's (the training
split's: its N labeled examples); headline test_accuracy. The labels of
the unlabeled examples never reach the step (the data drops them), so no metric can peek at them.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import optax

from dlcore import generative as gen, losses, models, optim
from dlcore.config import check, one_of
from dlcore.core import Algorithm, Data, Snapshot
from dlcore.generative import State

MODELS = ("model",)
METHODS = ("fixmatch", "pseudo_label", "pi_model")


def defaults() -> dict:
    return {"model": {"name": "mlp"}, "optim": optim.defaults(),
            "semisupervised": {"method": "fixmatch", "threshold": 0.95, "unlabeled_weight": 1.0,
                               "rampup_steps": 0, "weak_shift": 1, "weak_noise": 0.0,
                               "strong_shift": 2, "strong_noise": 0.1, "strong_scale": 0.2,
                               "cutout": 3, "eval_batch_size": 4096}}


# --- augmentations --------------------------------------------------------------------------------

def spatial_axes(ndim: int) -> tuple[int, ...]:
    """The axes of a batch [b, *shape] that augmentations move along: (1,) for [b, L], else every
    axis but the batch axis and the trailing channel axis ([b, H, W, C] -> (1, 2))."""
    return (1,) if ndim <= 3 else tuple(range(1, ndim - 1))


def translate(x: jax.Array, key: jax.Array, max_shift: int) -> jax.Array:
    """x [b, *shape] with each example moved by its own integer shift in [-max_shift, max_shift]
    along each spatial axis; what moves in from outside is 0."""
    if max_shift <= 0:
        return x
    for axis, k in zip(spatial_axes(x.ndim), jax.random.split(key, x.ndim)):
        shifts = jax.random.randint(k, (x.shape[0],), -max_shift, max_shift + 1)
        rolled = jax.vmap(lambda xi, s: jnp.roll(xi, s, axis=axis - 1))(x, shifts)
        pos = jnp.arange(x.shape[axis])[None, :] - shifts[:, None]  # source index [b, L]
        inside = (pos >= 0) & (pos < x.shape[axis])
        x = jnp.where(_along(inside, axis, x.ndim), rolled, 0.0)
    return x


def cutout(x: jax.Array, key: jax.Array, size: int) -> jax.Array:
    """x [b, *shape] with a box of `size` steps along each spatial axis set to 0 in each example;
    the box's centre is uniform over the example and the box is clipped at its edges."""
    if size <= 0:
        return x
    keep = jnp.zeros(x.shape[:1] + (1,) * (x.ndim - 1), bool)
    for axis, k in zip(spatial_axes(x.ndim), jax.random.split(key, x.ndim)):
        centre = jax.random.randint(k, (x.shape[0],), 0, x.shape[axis])
        start = centre - size // 2
        pos = jnp.arange(x.shape[axis])[None, :]
        keep = keep | _along((pos < start[:, None]) | (pos >= start[:, None] + size), axis, x.ndim)
    return jnp.where(keep, x, 0.0)


def _along(mask: jax.Array, axis: int, ndim: int) -> jax.Array:
    """A mask [b, L] broadcast against a batch of rank `ndim`, L on `axis`."""
    shape = [mask.shape[0]] + [1] * (ndim - 1)
    shape[axis] = mask.shape[1]
    return mask.reshape(shape)


def weak_augment(x: jax.Array, key: jax.Array, shift: int, noise: float) -> jax.Array:
    """A translation by up to `shift` and N(0, noise^2) noise: [b, *shape] -> [b, *shape]."""
    k_shift, k_noise = jax.random.split(key)
    x = translate(x, k_shift, shift)
    return x + noise * jax.random.normal(k_noise, x.shape, x.dtype) if noise else x


def strong_augment(x: jax.Array, key: jax.Array, shift: int, noise: float, scale: float,
                   size: int) -> jax.Array:
    """translate (up to `shift`), scale each example by U[1 - scale, 1 + scale], add N(0, noise^2),
    then cut out a box of `size`: [b, *shape] -> [b, *shape]."""
    k_shift, k_scale, k_noise, k_cut = jax.random.split(key, 4)
    x = translate(x, k_shift, shift)
    if scale:
        factor = jax.random.uniform(k_scale, x.shape[:1], x.dtype, 1.0 - scale, 1.0 + scale)
        x = x * factor.reshape((-1,) + (1,) * (x.ndim - 1))
    if noise:
        x = x + noise * jax.random.normal(k_noise, x.shape, x.dtype)
    return cutout(x, k_cut, size)


# --- losses -------------------------------------------------------------------------------------

def pseudo_label_loss(logits_target: jax.Array, logits_trained: jax.Array,
                      threshold: float) -> tuple[jax.Array, jax.Array]:
    """FixMatch's unlabeled loss: (L_u, mask [U] float). The target logits [U, C] give, without a
    gradient, p = softmax; an example counts where max p >= threshold, toward argmax p:
    L_u = sum_u mask_u CE(logits_trained_u, argmax p_u) / U (divided by all U, as FixMatch)."""
    p = jax.nn.softmax(jax.lax.stop_gradient(logits_target), -1)
    mask = (jnp.max(p, -1) >= threshold).astype(logits_trained.dtype)
    ce = optax.softmax_cross_entropy_with_integer_labels(logits_trained, jnp.argmax(p, -1))
    return jnp.mean(mask * ce), mask


def consistency_loss(logits_a: jax.Array, logits_b: jax.Array) -> jax.Array:
    """The Π-model's: mean over examples and classes of (softmax(a) - sg(softmax(b)))^2."""
    target = jax.nn.softmax(jax.lax.stop_gradient(logits_b), -1)
    return jnp.mean((jax.nn.softmax(logits_a, -1) - target) ** 2)


# --- the algorithm --------------------------------------------------------------------------------

def settings(own: dict) -> dict:
    """The `semisupervised` section, checked (ConfigError naming the key)."""
    def number(key, high=math.inf):
        v = own[key]
        check(type(v) in (int, float) and math.isfinite(v) and 0 <= v <= high,
              f"semisupervised.{key}", f"must be a number in [0, {high}]; got {v!r}")
        return float(v)

    def integer(key):
        v = own[key]
        check(type(v) is int and 0 <= v < 2**31 - 1, f"semisupervised.{key}",
              f"must be an integer >= 0; got {v!r}")
        return v

    out = {"method": one_of(own["method"], "semisupervised.method", METHODS),
           "threshold": number("threshold", 1.0),
           "unlabeled_weight": number("unlabeled_weight"),
           "weak_noise": number("weak_noise"), "strong_noise": number("strong_noise"),
           "strong_scale": number("strong_scale", 1.0)}
    for key in ("rampup_steps", "weak_shift", "strong_shift", "cutout", "eval_batch_size"):
        out[key] = integer(key)
    check(out["eval_batch_size"] > 0, "semisupervised.eval_batch_size",
          f"must be a positive integer; got {own['eval_batch_size']!r}")
    return out


def make(config: dict, data: Data, steps: int) -> Algorithm:
    spec = data.spec
    check(spec.get("task") == "classification" and "eval_tasks" not in spec, "data.name",
          "semi-supervised classification learns from class labels {'x', 'y'}: choose a "
          "classification source of examples (digits, mnist1d, mnist_digits, npz, ...)")
    check(spec.get("labels") is not None, "data.labels",
          "semisupervised learns from a few labels and the unlabeled rest: set data.labels, the "
          "number of training examples that keep their labels (e.g. 40)")
    s = settings(config["semisupervised"])
    shape = tuple(spec["input_shape"])
    model = models.build(config["model"], shape, spec["num_outputs"])
    tx = optim.build(config["optim"], steps)
    method = s["method"]
    labels_only = s["unlabeled_weight"] == 0  # the labels-only ablation: no unlabeled forward pass
    weak = lambda x, k: weak_augment(x, k, s["weak_shift"], s["weak_noise"])
    strong = lambda x, k: strong_augment(x, k, s["strong_shift"], s["strong_noise"],
                                         s["strong_scale"], s["cutout"])

    def weight_at(step):
        if s["rampup_steps"] == 0:
            return jnp.asarray(s["unlabeled_weight"], jnp.float32)
        return s["unlabeled_weight"] * jnp.minimum(1.0, step / s["rampup_steps"])

    def views(batch, key):
        """[labeled weak, unlabeled views...]; the labeled view alone when λ_u = 0."""
        k_l, k_1, k_2 = jax.random.split(key, 3)
        u = batch["x_unlabeled"]
        x_l = weak(batch["x"], k_l)
        if labels_only:
            return [x_l]
        if method == "fixmatch":
            return [x_l, weak(u, k_1), strong(u, k_2)]
        if method == "pseudo_label":
            return [x_l, weak(u, k_1)]
        return [x_l, weak(u, k_1), weak(u, k_2)]

    def loss_fn(params, model_state, batch, key, weight):
        k_aug, k_net = jax.random.split(key)
        parts = views(batch, k_aug)
        out, new_model_state = model.apply({"params": params, **model_state},
                                           jnp.concatenate(parts), True, k_net)
        cuts = [len(p) for p in parts]
        logits = jnp.split(out, _offsets(cuts))
        sup = losses.cross_entropy(logits[0], batch["y"])
        if labels_only:
            unl, mask = jnp.zeros(()), jnp.zeros(())
        elif method == "fixmatch":
            unl, mask = pseudo_label_loss(logits[1], logits[2], s["threshold"])
        elif method == "pseudo_label":
            unl, mask = pseudo_label_loss(logits[1], logits[1], s["threshold"])
        else:
            unl, mask = consistency_loss(logits[1], logits[2]), jnp.ones(cuts[1])
        loss = sup + weight * unl
        return loss, {"loss": loss, "supervised_loss": sup, "unlabeled_loss": unl,
                      "accuracy": losses.accuracy(logits[0], batch["y"]),
                      "mask_rate": jnp.mean(mask), "model_state": new_model_state}

    def init(key: jax.Array) -> State:
        params, model_state = gen.init(model, key, shape)
        return State(jnp.zeros((), jnp.int32), params, model_state, tx.init(params))

    def step(state: State, batch: dict, key: jax.Array):
        grads, aux = jax.grad(loss_fn, has_aux=True)(state.params, state.model_state, batch, key,
                                                     weight_at(state.step))
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        model_state = aux.pop("model_state")
        return State(state.step + 1, params, model_state, opt_state), aux

    def evaluate(state: State, split: dict, key: jax.Array) -> dict:
        """Mean cross-entropy and accuracy over the whole split {'x', 'y'}, eval_batch_size
        examples at a time (on a training split: its N labeled examples)."""
        x_all, y_all = jnp.asarray(split["x"]), jnp.asarray(split["y"])

        def per_example(i, k):
            out, _ = model.apply(models.variables_of(state), x_all[i], False, None)
            y = y_all[i]
            return {"loss": optax.softmax_cross_entropy_with_integer_labels(out, y),
                    "accuracy": (jnp.argmax(out, -1) == y).astype(jnp.float32)}
        return gen.chunked_mean(per_example, jnp.arange(y_all.shape[0]),
                                s["eval_batch_size"], key)

    def pictures(snap: Snapshot) -> list:
        """activations.png for 4 test inputs and the model family's own pictures, as supervised
        learning draws them."""
        from dlcore import analysis, plots
        test = snap.data.splits["test"]
        variables = models.variables_of(snap.state)
        paths = []
        acts = analysis.intermediates(model, variables, test["x"][:4])
        if acts:
            paths.append(plots.activations(test["x"][:4], test["y"][:4], acts,
                                           snap.out_dir / "activations.png",
                                           f"{snap.title}: activations for 4 test inputs"))
        if hasattr(model.family, "pictures"):
            paths += model.family.pictures(model, variables, models.variables_of(snap.initial),
                                           snap.data, snap.out_dir, snap.title)
        return paths

    return Algorithm(init, step, evaluate, headline=("test_accuracy",), pictures=pictures,
                     extras={"model": model, "weak_augment": weak, "strong_augment": strong})


def _offsets(sizes: list[int]) -> list[int]:
    """Split points of consecutive parts of `sizes`: [40, 280, 280] -> [40, 320]."""
    out, total = [], 0
    for size in sizes[:-1]:
        total += size
        out.append(total)
    return out
