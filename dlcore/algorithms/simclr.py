"""SimCLR (Chen et al. 2020) on 1-D signals: a trunk and a projector trained so that two random
views of an example have similar projections and views of different examples dissimilar ones
(the NT-Xent / InfoNCE loss), as in the self-supervised notebook of MNIST-1D (Greydanus & Kobak,
ICML 2024). The labels are used only to judge the representation: a linear probe on the trunk's
features and a k-nearest-neighbour classifier on the projections, both fitted on the training
split and scored on the split being evaluated.

    state = State(step, params {'trunk', 'projector'}, model_state {'trunk', 'projector'}, opt_state)
    batch = {'x': [b, L], 'y': [b]}        # the labels of a training batch are ignored

Sections: `trunk` ([b, L] -> [b, d]: the representation h), `projector` ([b, d] -> [b,
projection]: the embedding z the loss sees), `optim`, and `simclr`:
    temperature         tau of the NT-Xent loss (the notebook: 0.5)
    features            the trunk's output layer: its width d, or 0 for none: then h is the
                        trunk's own features (the `cnn` family built with num_outputs 0: its
                        flattened conv features, 125 for the MNIST-1D ConvBase, as the notebook).
                        Any model family takes a width; only a family without an output layer
                        (cnn) takes 0. It matters: with an output layer (a learned linear
                        125 -> 125 map between the ConvBase and the projector, probed instead of
                        the conv features) mnist1d/simclr measured 0.53 probe / 0.35 kNN test
                        accuracy, without it 0.79 / 0.65 (seed 0, 8000 steps)
    projection          the projector's output width (16)
    max_shift           views: a circular shift by an integer drawn uniformly in
                        [-max_shift, max_shift] (10)
    slope, offset       views: after the signal's least-squares line is removed, a new line
                        a * t + c is added, t = linspace(-1, 1, L), a ~ U(-slope, slope),
                        c ~ U(-offset, offset)
    probe_c             the linear probe's inverse L2 strength C, as scikit-learn's
                        LogisticRegression (1.0, its default, as in the notebook)
    probe_steps         the probe's most L-BFGS iterations (it stops earlier once the gradient
                        norm is below 1e-6)
    knn_k, knn_metric   the kNN classifier: k neighbours (10), 'euclidean' (scikit-learn's
                        default, as the notebook) or 'cosine'
    eval_batch_size     examples per chunk of the evaluation's contrastive loss (100: the
                        training batch size, as the loss depends on how many negatives a chunk
                        holds) and of the kNN distance matrices
    baseline            also score the same probe and kNN on the raw inputs (fitted once, in
                        make), as 'raw_probe_accuracy' and 'raw_knn_accuracy'

The views (`augment`): each signal's offset and slope are regressed out, it is rolled by a random
shift, and a random line is added. The linear probe (`fit_probe`) is multinomial logistic
regression on standardised features (scikit-learn's StandardScaler + LogisticRegression(C)),
minimised with optax's L-BFGS, full batch. The kNN classifier (`knn_predict`) is a majority vote
of the k nearest training examples, ties going to the smallest label (as scikit-learn's).

Metrics: training 'loss' (NT-Xent over the batch's 2b views) and 'contrastive_accuracy' (the
fraction of views whose most similar other view is their positive); evaluation 'loss' (the same,
in chunks of eval_batch_size, views drawn from the evaluation key), 'probe_accuracy',
'knn_accuracy' and, with baseline, 'raw_probe_accuracy' and 'raw_knn_accuracy'. On the training
split itself ('train_eval_*' in summary.json) the kNN counts each example among its own
neighbours, as scikit-learn's score on its training data does.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from dlcore import generative as gen, optim
from dlcore.config import ConfigError, check, one_of
from dlcore.core import Algorithm, Data, Snapshot
from dlcore.generative import State

MODELS = ("trunk", "projector")
METRICS = ("euclidean", "cosine")

# The MNIST-1D ConvBase (Greydanus & Kobak): 1-D convs of 25 channels, kernels 5/3/3, stride 2,
# padding 1, ReLU: length 40 -> 19 -> 10 -> 5, flattened 125; PyTorch's initialisation.
# Built with num_outputs 0 (simclr.features 0): no output layer, the flattened features are h.
CONV_BASE = {"name": "cnn", "dims": 1, "channels": (25, 25, 25), "kernel_sizes": (5, 3, 3),
             "strides": (2, 2, 2), "padding": 1, "activation": "relu", "head": "flatten",
             "dense": (), "init": "torch"}


class Probe(NamedTuple):
    """A fitted linear probe: logits = ((h - mean) / scale) @ w + b."""
    mean: jax.Array   # [d]
    scale: jax.Array  # [d]
    w: jax.Array      # [d, C]
    b: jax.Array      # [C]


def defaults() -> dict:
    return {"trunk": dict(CONV_BASE),
            "projector": {"name": "mlp", "hidden": (125,), "activation": "relu", "init": "torch"},
            "optim": {**optim.defaults(), "learning_rate": 1e-2},
            "simclr": {"temperature": 0.5, "features": 0, "projection": 16, "max_shift": 10,
                       "slope": 1.5, "offset": 0.5, "probe_c": 1.0, "probe_steps": 500,
                       "knn_k": 10, "knn_metric": "euclidean", "eval_batch_size": 100,
                       "baseline": True}}


# --- the pieces, as pure functions ------------------------------------------------------------------

def nt_xent(z1: jax.Array, z2: jax.Array, temperature: float) -> jax.Array:
    """The NT-Xent (normalised temperature-scaled cross-entropy, InfoNCE) loss of SimCLR.

    z1, z2: [n, d] embeddings of two views of the same n examples (row i of z1 and row i of z2
    are a positive pair). The 2n rows are L2-normalised; with s_ij = cos(z_i, z_j) / temperature,
    each of the 2n views i is scored by -log(exp(s_ip) / sum_{j != i} exp(s_ij)), p its positive,
    the other 2n - 2 views its negatives. Returns the mean over the 2n views (a scalar)."""
    losses, _ = nt_xent_terms(z1, z2, temperature)
    return jnp.mean(losses)


def nt_xent_terms(z1: jax.Array, z2: jax.Array, temperature: float,
                  valid: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
    """(loss [2n], correct [2n]) per view, views of z1 first: the NT-Xent term of each view and
    whether its most similar other view is its positive. valid [n] bool: examples to use; the
    others are neither anchors nor negatives (their terms are 0)."""
    n = z1.shape[0]
    z = jnp.concatenate([z1, z2]).astype(jnp.float32)
    z = z * jax.lax.rsqrt(jnp.maximum(jnp.sum(z * z, -1, keepdims=True), 1e-24))
    logits = z @ z.T / temperature
    idx = jnp.arange(2 * n)
    keep = idx[:, None] != idx[None, :]
    if valid is not None:
        v2 = jnp.concatenate([valid, valid])
        keep = keep & v2[None, :]
    logits = jnp.where(keep, logits, -jnp.inf)
    positive = (idx + n) % (2 * n)
    log_p = jax.nn.log_softmax(logits, axis=-1)
    losses = -log_p[idx, positive]
    correct = (jnp.argmax(logits, -1) == positive).astype(jnp.float32)
    if valid is not None:
        losses, correct = jnp.where(v2, losses, 0.0), jnp.where(v2, correct, 0.0)
    return losses, correct


def remove_line(x: jax.Array) -> jax.Array:
    """[b, L] -> [b, L]: each signal minus its least-squares line c + a * t, t = linspace(-1, 1, L)
    (the result has zero mean and zero slope)."""
    t = jnp.linspace(-1.0, 1.0, x.shape[-1], dtype=x.dtype)
    slope = jnp.sum(x * t, -1, keepdims=True) / jnp.sum(t * t)  # t is centred: the fit decouples
    return x - jnp.mean(x, -1, keepdims=True) - slope * t


def augment(x: jax.Array, key: jax.Array, max_shift: int, slope: float,
            offset: float) -> jax.Array:
    """A random view of each signal, x: [b, L] -> [b, L]: its offset and slope regressed out
    (`remove_line`), rolled circularly by its own integer shift in [-max_shift, max_shift], then a
    line a * t + c added, t = linspace(-1, 1, L), a ~ U(-slope, slope), c ~ U(-offset, offset)."""
    k_shift, k_slope, k_offset = jax.random.split(key, 3)
    b, length = x.shape
    x = remove_line(x)
    if max_shift > 0:
        shifts = jax.random.randint(k_shift, (b,), -max_shift, max_shift + 1)
        x = jax.vmap(lambda xi, s: jnp.roll(xi, s))(x, shifts)
    t = jnp.linspace(-1.0, 1.0, length, dtype=x.dtype)
    a = jax.random.uniform(k_slope, (b, 1), x.dtype, -slope, slope)
    c = jax.random.uniform(k_offset, (b, 1), x.dtype, -offset, offset)
    return x + a * t + c


def fit_probe(h: jax.Array, y: jax.Array, num_classes: int, c: float = 1.0,
              steps: int = 500) -> Probe:
    """Multinomial logistic regression on standardised features, as scikit-learn's
    make_pipeline(StandardScaler(), LogisticRegression(C=c)): minimises
    mean_i CE(softmax(W h_i + b), y_i) + ||W||^2 / (2 c n) (the same minimiser as scikit-learn's
    C * sum CE + ||W||^2 / 2; the intercept is not penalised) by full-batch L-BFGS, at most
    `steps` iterations. h: [n, d] features, y: [n] int labels in 0..num_classes-1. Jittable."""
    h, y = jnp.asarray(h, jnp.float32), jnp.asarray(y)
    mean = jnp.mean(h, 0)
    std = jnp.std(h, 0)
    scale = jnp.where(std > 1e-12 * jnp.maximum(1.0, jnp.abs(mean)), std, 1.0)  # as StandardScaler
    hs = (h - mean) / scale
    n, d = h.shape
    onehot = jax.nn.one_hot(y, num_classes)
    penalty = 1.0 / (2.0 * c * n)

    def objective(p):
        logits = hs @ p["w"] + p["b"]
        ce = -jnp.mean(jnp.sum(onehot * jax.nn.log_softmax(logits), -1))
        return ce + penalty * jnp.sum(p["w"] ** 2)

    solver = optax.lbfgs()
    value_and_grad = optax.value_and_grad_from_state(objective)
    p0 = {"w": jnp.zeros((d, num_classes), jnp.float32), "b": jnp.zeros((num_classes,), jnp.float32)}

    def body(carry):
        p, s, i, _ = carry
        value, grad = value_and_grad(p, state=s)
        updates, s = solver.update(grad, s, p, value=value, grad=grad, value_fn=objective)
        p = optax.apply_updates(p, updates)
        return p, s, i + 1, optax.tree.norm(grad)

    def cond(carry):
        _, _, i, gnorm = carry
        return (i < steps) & (gnorm > 1e-6)

    p, *_ = jax.lax.while_loop(cond, body, (p0, solver.init(p0), jnp.zeros((), jnp.int32),
                                            jnp.asarray(jnp.inf, jnp.float32)))
    return Probe(mean, scale, p["w"], p["b"])


def probe_predict(probe: Probe, h: jax.Array) -> jax.Array:
    """[n, d] features -> [n] predicted labels."""
    return jnp.argmax(((h - probe.mean) / probe.scale) @ probe.w + probe.b, -1)


def knn_predict(ref: jax.Array, ref_y: jax.Array, query: jax.Array, k: int, num_classes: int,
                metric: str = "euclidean", chunk: int = 1000) -> jax.Array:
    """The labels [m] a k-nearest-neighbour vote gives the query points [m, d] among the reference
    points ref [n, d] with labels ref_y [n]: the most frequent label of the k nearest (Euclidean
    distance, or cosine distance for metric 'cosine'), ties going to the smallest label (as
    scikit-learn's KNeighborsClassifier with uniform weights). Queries are scored `chunk` at a
    time (a [chunk, n] distance matrix in memory). Jittable."""
    ref, query = jnp.asarray(ref, jnp.float32), jnp.asarray(query, jnp.float32)
    ref_y = jnp.asarray(ref_y)
    if metric == "cosine":
        unit = lambda a: a * jax.lax.rsqrt(jnp.maximum(jnp.sum(a * a, -1, keepdims=True), 1e-24))
        ref, query = unit(ref), unit(query)
    ref_sq = jnp.sum(ref * ref, -1)

    def vote(q):
        d2 = jnp.sum(q * q, -1, keepdims=True) - 2.0 * q @ ref.T + ref_sq  # squared distances
        _, nearest = jax.lax.top_k(-d2, k)
        counts = jnp.sum(jax.nn.one_hot(ref_y[nearest], num_classes), 1)
        return jnp.argmax(counts, -1)  # the first (smallest) label among the most frequent

    m = query.shape[0]
    c = min(m, chunk)
    pad = (-m) % c
    qs = jnp.concatenate([query, jnp.zeros((pad, query.shape[1]), query.dtype)])
    return jax.lax.map(vote, qs.reshape(-1, c, query.shape[1])).reshape(-1)[:m]


# --- the algorithm -----------------------------------------------------------------------------------

def _number(value, key: str, what: str, positive: bool = False) -> float:
    ok = (type(value) in (int, float) and math.isfinite(value)
          and (value > 0 if positive else value >= 0))
    check(ok, key, f"must be a finite number {'> 0' if positive else '>= 0'} ({what}); "
          f"got {value!r}")
    return float(value)


def make(config: dict, data: Data, steps: int) -> Algorithm:
    shape = gen.require_examples(data.spec, "simclr")
    check(len(shape) == 1, "data.name",
          f"simclr's views (shift, slope, offset) are made for 1-D signals [b, L]; this data "
          f"gives examples of shape {shape}; choose a source of 1-D signals (mnist1d, ...)")
    length = shape[0]
    train = data.splits["train"]
    check(data.spec.get("task") == "classification" and isinstance(train, dict) and "y" in train,
          "data.name", "simclr's linear probe and kNN read class labels ('y'): choose a "
          "labelled classification source (mnist1d, ...)")
    own = config["simclr"]
    tau = _number(own["temperature"], "simclr.temperature", "the NT-Xent temperature",
                  positive=True)
    features = own["features"]
    check(type(features) is int and 0 <= features < 2**31, "simclr.features",
          f"must be the width of the trunk's output layer, or 0 for none (the trunk's own "
          f"features); got {features!r}")
    projection = gen.positive_int(own["projection"], "simclr.projection",
                                  "the projector's output width")
    max_shift = own["max_shift"]
    check(type(max_shift) is int and 0 <= max_shift < length, "simclr.max_shift",
          f"must be an integer in [0, {length}) (the largest circular shift); got {max_shift!r}")
    slope = _number(own["slope"], "simclr.slope", "the largest added slope")
    offset = _number(own["offset"], "simclr.offset", "the largest added offset")
    probe_c = _number(own["probe_c"], "simclr.probe_c", "the probe's inverse L2 strength C",
                      positive=True)
    probe_steps = gen.positive_int(own["probe_steps"], "simclr.probe_steps",
                                   "the probe's most L-BFGS iterations")
    n_train = int(np.shape(train["x"])[0])
    k = own["knn_k"]
    check(type(k) is int and 1 <= k <= n_train, "simclr.knn_k",
          f"must be an integer in [1, {n_train}] (the training examples); got {k!r}")
    metric = one_of(own["knn_metric"], "simclr.knn_metric", METRICS)
    chunk = gen.eval_chunk(own["eval_batch_size"], "simclr.eval_batch_size")
    baseline = own["baseline"]
    check(isinstance(baseline, bool), "simclr.baseline", f"must be true or false; got {baseline!r}")
    batch = jax.eval_shape(data.sample, train, 0, jax.random.key(0))
    b = batch["x"].shape[0] if isinstance(batch, dict) and "x" in batch else 0
    check(b >= 2, "data.batch_size", f"NT-Xent contrasts the examples of a batch: it needs at "
          f"least 2; got {b}")

    def out_shape(model, inp):
        return jax.eval_shape(lambda: gen.apply(model, *gen.init(model, jax.random.key(0), inp),
                                                jnp.zeros((2, *inp), jnp.float32), False)[0]).shape

    no_output = ("simclr.features", f"0 asks the trunk ('{config['trunk']['name']}') for no "
                 "output layer, which only the cnn family offers; give the width of its output "
                 "layer instead")
    try:
        trunk = gen.network(config["trunk"], "trunk", shape, features)
        got = out_shape(trunk, shape)
    except ConfigError:  # the trunk's own section is wrong: its message names the key
        raise
    except (ArithmeticError, ValueError, TypeError):  # e.g. an initialiser of a 0-wide layer
        if features:
            raise
        check(False, *no_output)
    if features == 0:
        check(len(got) == 2 and got[1] > 0, *no_output)
    check(len(got) == 2 and got[1] == (features or got[1]), "trunk.name",
          f"the trunk maps [b, {length}] to {tuple(got)[1:]}, not the [b, {features}] that "
          "simclr.features asks of it")
    width = int(got[1])  # d: the representation's width
    projector = gen.network(config["projector"], "projector", (width,), projection)
    got = out_shape(projector, (width,))
    check(got == (2, projection), "projector.name",
          f"the projector maps [b, {width}] to {tuple(got)[1:]}, not [b, {projection}]")
    tx = optim.build(config["optim"], steps)
    num_classes = int(data.spec["num_outputs"])
    train_x = jnp.asarray(train["x"], jnp.float32)
    train_y = jnp.asarray(train["y"], jnp.int32)
    views = lambda x, key: augment(x, key, max_shift, slope, offset)

    def init(key: jax.Array) -> State:
        k_trunk, k_proj = jax.random.split(key)
        (pt, st), (pp, sp) = gen.init(trunk, k_trunk, shape), gen.init(projector, k_proj, (width,))
        params = {"trunk": pt, "projector": pp}
        return State(jnp.zeros((), jnp.int32), params, {"trunk": st, "projector": sp},
                     tx.init(params))

    def forward(params, model_state, x, train=False, key=None):
        """(h [b, d], z [b, projection], new model state)."""
        k_t, k_p = (None, None) if key is None else jax.random.split(key)
        h, st = gen.apply(trunk, params["trunk"], model_state["trunk"], x, train, k_t)
        z, sp = gen.apply(projector, params["projector"], model_state["projector"], h, train, k_p)
        return h, z, {"trunk": st, "projector": sp}

    def loss_fn(params, model_state, x, key):
        k1, k2, k_net = jax.random.split(key, 3)
        both = jnp.concatenate([views(x, k1), views(x, k2)])  # one pass over the 2b views
        _, z, new_state = forward(params, model_state, both, True, k_net)
        losses, correct = nt_xent_terms(z[:x.shape[0]], z[x.shape[0]:], tau)
        return jnp.mean(losses), ({"contrastive_accuracy": jnp.mean(correct)}, new_state)

    step = gen.gradient_step(loss_fn, tx)

    def contrastive_loss(state: State, x: jax.Array, key: jax.Array) -> jax.Array:
        """The NT-Xent loss over a whole split, chunk examples (and their 2 views) at a time."""
        n = x.shape[0]
        c = min(n, chunk)
        pad = (-n) % c
        xs = jnp.concatenate([x, jnp.zeros((pad, length), x.dtype)]).reshape(-1, c, length)
        valid = (jnp.arange(n + pad) < n).reshape(-1, c)
        keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.arange(xs.shape[0]))

        def one(args):
            xc, vc, kc = args
            k1, k2 = jax.random.split(kc)
            _, z, _ = forward(state.params, state.model_state,
                              jnp.concatenate([views(xc, k1), views(xc, k2)]))
            return jnp.sum(nt_xent_terms(z[:c], z[c:], tau, vc)[0])
        return jnp.sum(jax.lax.map(one, (xs, valid, keys))) / (2 * n)

    if baseline:  # the raw inputs' probe, fitted once; scored on each split by evaluate
        raw_probe = jax.jit(lambda h, y: fit_probe(h, y, num_classes, probe_c, probe_steps))(
            train_x, train_y)

    def evaluate(state: State, split: dict, key: jax.Array) -> dict:
        x, y = split["x"], split["y"]
        h_train, z_train, _ = forward(state.params, state.model_state, train_x)
        h, z, _ = forward(state.params, state.model_state, x)
        probe = fit_probe(h_train, train_y, num_classes, probe_c, probe_steps)
        acc = lambda pred: jnp.mean((pred == y).astype(jnp.float32))
        out = {"loss": contrastive_loss(state, x, key),
               "probe_accuracy": acc(probe_predict(probe, h)),
               "knn_accuracy": acc(knn_predict(z_train, train_y, z, k, num_classes, metric,
                                               chunk))}
        if baseline:
            out["raw_probe_accuracy"] = acc(probe_predict(raw_probe, x))
            out["raw_knn_accuracy"] = acc(knn_predict(train_x, train_y, x, k, num_classes, metric,
                                                      chunk))
        return out

    def represent(state: State, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        """[b, L] -> (trunk features h [b, d], projections z [b, projection])."""
        h, z, _ = forward(state.params, state.model_state, x)
        return h, z

    def pictures(s: Snapshot) -> list:
        from dlcore import plots
        test = s.data.splits["test"]
        x = jnp.asarray(test["x"][:8])
        k1, k2 = jax.random.split(jax.random.key(0))
        paths = [plots.example_grid([x, views(x, k1), views(x, k2)], s.out_dir / "views.png",
                                    f"{s.title}: test signals and two random views of each",
                                    ["signal", "view 1", "view 2"])]
        h, z = jax.jit(represent)(s.state, jnp.asarray(test["x"][:2000]))
        paths.append(plots.latent_map(h, test.get("y"), s.out_dir / "features.png",
                                      f"{s.title}: trunk features of test signals"))
        paths.append(plots.latent_map(z, test.get("y"), s.out_dir / "projections.png",
                                      f"{s.title}: projections of test signals"))
        return paths

    return Algorithm(init, step, evaluate, headline=("test_probe_accuracy", "test_knn_accuracy"),
                     pictures=pictures,
                     extras={"trunk": trunk, "projector": projector, "represent": represent,
                             "augment": views})
