"""Zero-shot classification by a learned compatibility between images and class descriptions
(the bilinear family: DeViSE, Frome et al. 2013; ALE, Akata et al. 2013; ESZSL, Romera-Paredes &
Torr 2015): classes never seen in training are recognised from their attribute vectors alone.

    state  = State(step, params, opt_state)     # params = {'image': f's, 'attributes': g's}
    batch  = N-way episodes {'support': {'x': [B, N*K, ...], 'y'}, 'query': {...},
                             'attributes': [B, N, A]}   # label i <-> attributes[:, i]
    score(x, a) = <f(x), g(a)>

f is the image embedding network (`model.*`, num_outputs = `meta.embedding_dim` = D) and g a
linear map of the attribute vector into the same space, or a small MLP
(`zeroshot.attribute_hidden`).
With a linear g, score(x, a) = sum_j a_j <f(x), w_j> (+ <f(x), bias>, the same for every class, so
it leaves the softmax unchanged): f learns one detector per attribute (for the glyphs, one per
stroke) and a class scores the sum of its attributes' detectors, which is what lets a new
combination of known attributes be recognised.

Training: the support and query images of each episode are pooled (zero-shot has no support set at
test, so in training both are plain labelled examples) and classified among the episode's N classes
by their compatibilities, softmax cross-entropy, B episodes per step. Many classes per episode
(data.n_way of 20-50) make the model learn the compatibility rather than a lookup of a few classes.

`zeroshot.attribute_loss` > 0 adds, with that weight, the attribute-detection loss of Lampert et
al.'s direct attribute prediction: the logits s_j(x) = <f(x), g(e_j) - g(0)> of the example's
class's attributes, sigmoid cross-entropy summed over attributes. With a linear g this is the same
model, not a second head: log p(a | x) under independent attributes is sum_j a_j s_j(x) - sum_j
softplus(s_j(x)), the compatibility up to a term that is the same for every class. The class loss
alone lets f learn whatever separates the training classes; the attribute loss asks for each
stroke's detector directly, which is what transfers to new combinations (on the glyphs it raised
100-way unseen-class accuracy from about 0.79 to 0.87 at equal training time).

Evaluation: each query image of each evaluation episode is classified among the episode's
`data.test_n_way` unseen classes from their attribute vectors alone; the support set is ignored.
Reports 'accuracy' and 'accuracy_ci95' over episodes (dlcore.meta.evaluate_tasks) and the chance
level 'chance' = 1 / test_n_way. `adapt(params, support, key)` returns the class embeddings g(a)
[N, D], the zero-shot classifier's weights, from `support` = the task's attribute vectors [N, A]
(or an episode holding them): a zero-shot task's "support set" is its class descriptions, no
images.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from dlcore import meta, models, optim
from dlcore.config import check
from dlcore.core import Algorithm, Data
from dlcore.meta import State
from dlcore.models.mlp import MLP


def defaults() -> dict:
    """The sections zero-shot learning reads. zeroshot.attribute_hidden: hidden widths of g
    (() = linear); zeroshot.attribute_loss: weight of the attribute-detection loss (0 = off; see
    the module docstring)."""
    return {"model": {"name": "cnn"}, "optim": optim.defaults(),
            "meta": meta.defaults("embedding_dim"),
            "zeroshot": {"attribute_hidden": (), "attribute_loss": 0.0}}


def networks(config: dict, spec: dict):
    """(f, g): the image network ([n, *input_shape] -> [n, D], a dlcore.models.Model) and the
    attribute network ([N, A] -> [N, D], a Flax MLP), D = meta.embedding_dim. ConfigError for
    data without attributes."""
    check(spec["task"] == "classification" and spec.get("attribute_dim", 0) > 0, "data.name",
          f"zero-shot learning needs classes described by attribute vectors; "
          f"'{config['data']['name']}' has none (glyphs has them)")
    dim = meta.validate(config["meta"])["embedding_dim"]
    w = config["zeroshot"]["attribute_loss"]
    check(isinstance(w, (int, float)) and w >= 0, "zeroshot.attribute_loss",
          f"must be a number >= 0 (0 = off); got {w!r}")
    hidden = tuple(config["zeroshot"]["attribute_hidden"])
    check(all(type(w) is int and w > 0 for w in hidden), "zeroshot.attribute_hidden",
          f"widths must be positive integers; got {list(hidden)}")
    image_net = models.build(config["model"], spec["input_shape"], dim)
    meta.model_apply(image_net, spec["input_shape"])  # ConfigError for batch norm or dropout
    return image_net, MLP(hidden=hidden, num_outputs=dim)


def compatibilities(image_net, attribute_net, params: dict, x: jax.Array,
                    attributes: jax.Array) -> jax.Array:
    """The logits <f(x), g(a)>: x [n, ...] and attributes [N, A] -> [n, N]."""
    z = image_net.apply({"params": params["image"]}, x, False, None)[0]  # [n, D]
    return z @ attribute_net.apply({"params": params["attributes"]}, attributes).T


def attribute_directions(attribute_net, params: dict, num_attributes: int) -> jax.Array:
    """g(e_j) - g(0) for each attribute j: [A, D]. <f(x), row j> is attribute j's detection logit
    s_j(x); with a linear g, <f(x), g(a)> = sum_j a_j s_j(x) + <f(x), g(0)>, the last term the same
    for every class."""
    basis = jnp.concatenate([jnp.eye(num_attributes), jnp.zeros((1, num_attributes))])
    e = attribute_net.apply({"params": params["attributes"]}, basis)  # [A + 1, D]
    return e[:-1] - e[-1]


def make(config: dict, data: Data, steps: int) -> Algorithm:
    spec = data.spec
    image_net, attribute_net = networks(config, spec)
    attribute_weight = float(config["zeroshot"]["attribute_loss"])
    tx = optim.build(config["optim"], steps)
    eval_tasks = spec["eval_tasks"]
    num_attributes = spec["attribute_dim"]

    def init(key: jax.Array) -> State:
        k_image, k_attr = jax.random.split(key)
        a = jnp.zeros((1, num_attributes))
        params = {"image": meta.init_params(image_net, spec["input_shape"], k_image),
                  "attributes": attribute_net.init(k_attr, a)["params"]}
        return State(jnp.zeros((), jnp.int32), params, tx.init(params))

    def class_embeddings(params, attributes: jax.Array) -> jax.Array:
        """g(a): [N, A] attribute vectors -> [N, D]."""
        return attribute_net.apply({"params": params["attributes"]}, attributes)

    def classify(params, x, y, attributes):
        """(image embeddings [n, D], mean cross-entropy, accuracy) of images x [n, ...] with labels
        y [n] among the N classes described by attributes [N, A]."""
        z = image_net.apply({"params": params["image"]}, x, False, None)[0]
        logits = z @ class_embeddings(params, attributes).T  # [n, N]
        return (z, optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(),
                (jnp.argmax(logits, -1) == y).mean())

    def adapt(params, support, key: jax.Array | None = None) -> jax.Array:
        """The class embeddings g(a) [N, D] of one task's classes: the zero-shot classifier's
        weights (a query x is classified by argmax_i <f(x), g(a_i)>). support: the classes'
        descriptions, attributes [N, A] or a dict holding them under 'attributes' (an episode);
        no images are used. key: unused (kept for the common signature)."""
        attributes = jnp.asarray(support["attributes"] if isinstance(support, dict) else support)
        if attributes.ndim != 2 or attributes.shape[1] != num_attributes:
            raise ValueError(f"a zero-shot task's classes are described by attributes "
                             f"[N, {num_attributes}]; got shape {tuple(attributes.shape)}")
        return class_embeddings(params, attributes)

    def step(state: State, batch: dict, key: jax.Array) -> tuple[State, dict]:
        def one(params, task):
            # support and query are both labelled training examples here
            x = jnp.concatenate([task["support"]["x"], task["query"]["x"]])
            y = jnp.concatenate([task["support"]["y"], task["query"]["y"]])
            z, ce, acc = classify(params, x, y, task["attributes"])
            if not attribute_weight:
                return ce, acc, jnp.zeros(())
            s = z @ attribute_directions(attribute_net, params, num_attributes).T  # [n, A]
            # summed over attributes: the negative log-likelihood of the whole description
            bce = optax.sigmoid_binary_cross_entropy(s, task["attributes"][y]).sum(-1).mean()
            return ce, acc, bce

        def loss(params):
            ce, acc, bce = jax.vmap(lambda t: one(params, t))(batch)
            return ce.mean() + attribute_weight * bce.mean(), (ce.mean(), acc.mean(), bce.mean())
        (_, (ce, acc, bce)), grads = jax.value_and_grad(loss, has_aux=True)(state.params)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        metrics = {"loss": ce, "accuracy": acc}
        if attribute_weight:
            metrics["attribute_loss"] = bce
        return State(state.step + 1, params, opt_state), metrics

    def evaluate(state: State, split: dict, key: jax.Array) -> dict:
        def per_task(task):  # the query images only, among the episode's classes' attributes
            _, l, acc = classify(state.params, task["query"]["x"], task["query"]["y"],
                                 task["attributes"])
            return {"loss": l[None], "score": acc[None], "clipped": jnp.zeros((), bool)}
        metrics = meta.evaluate_tasks(per_task, split, eval_tasks, "classification")
        for name in ("accuracy_after_steps", "clipped_fraction"):  # no test-time steps to report
            metrics.pop(name, None)
        return {**metrics, "chance": jnp.asarray(1.0 / spec["test_n_way"], jnp.float32)}

    return Algorithm(init, step, evaluate, headline=("test_accuracy",), extras={"adapt": adapt})
