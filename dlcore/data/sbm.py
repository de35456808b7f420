"""Node classification on a stochastic block model (SBM), with the spectral-clustering baseline
on the same graph.

The graph: `data.nodes` (n, default 1000) nodes in `data.classes` (k, 2) blocks of sizes n // k
or n // k + 1, the labels in a random node order. Each pair of nodes is joined independently,
with probability p_in = a / n within a block and p_out = b / n between blocks (the sparse
regime), a and b set by the average degree d = `data.degree` (10) and the signal-to-noise ratio
lambda = `data.snr` (1.5):

    (a + (k - 1) b) / k = d,    lambda = (a - b) / sqrt(k (a + (k - 1) b)) = (a - b) / (k sqrt(d)),
    so  a = d + (k - 1) lambda sqrt(d),  b = d - lambda sqrt(d).

lambda^2 = (a - b)^2 / (k (a + (k - 1) b)) is the ratio of Decelle et al. (2011): lambda = 1 is
the Kesten-Stigum threshold: for k = 2 no algorithm of the graph alone beats chance below it
(Mossel, Neeman & Sly), and efficient ones do above it (Massoulie; Bordenave, Lelarge &
Massoulie's non-backtracking spectrum; the Bethe Hessian below, in practice). lambda ranges
over [-sqrt(d) / (k - 1), sqrt(d)]: lambda = sqrt(d) means b = 0 (no edges between blocks);
lambda < 0 is a disassortative (heterophilous) graph. A node's
expected degree is d - a / n (no self-loops). The graph is sampled exactly, fast: for each pair
of blocks the number of edges is drawn from its binomial, and that many distinct node pairs are
drawn uniformly without replacement (NumPy, vectorised): 100,000 nodes and 500,000 edges
(1,000,000 directed) in a fraction of a second. Edges are listed both ways, sorted by receiver.

Node features [n, F] float32, `data.features`:
    "gaussian"  the contextual SBM (Deshpande et al., 2018): x_i = mu_{y_i} + N(0, I_F), F =
                `data.feature_dim` (16, >= k); the k class means are the vertices of a regular
                simplex centred at 0, in a random orientation, each of norm `data.feature_snr`
                (1.0): for k = 2, +-feature_snr along one random unit direction, so the features
                alone classify at best with accuracy Phi(feature_snr) (0.84 at 1.0);
    "constant"  a single 1: the graph alone (the setting of the spectral baseline);
    "identity"  one-hot node identity [n, n] (n <= 20,000).

Splits (Planetoid-style): 'train' is `data.train_per_class` (20) random nodes of each class,
'validation' `data.validation` (500; 0: none) random other nodes, 'test' all remaining nodes.
Everything is drawn from `data.seed` (graph, labels, features, split; NumPy's Generator, so the
same for a given NumPy version).

The spectral baseline (`data.spectral`, true), computed at load from the graph alone: the k
eigenvectors of the smallest eigenvalues of the Bethe Hessian H(r) = (r^2 - 1) I - r A + D
(Saade, Krzakala & Zdeborova, 2014), r = sqrt(sum d_i^2 / sum d_i - 1) (the estimated spectral
radius of the non-backtracking matrix, r = -that for snr < 0), found with scipy's sparse eigsh
(ARPACK, tolerance 1e-3, start vector from the seed), clustered by k-means (sklearn, seeded).
Clusters are unnamed, so each is given the class it best matches on the *training* nodes (the
permutation maximising training agreement, Hungarian algorithm): the labels a GNN trains on, and
nothing more; choosing the permutation that is best on the test nodes would peek at test labels
and, near chance, would report max over k! permutations of noise (>= 1/2 for k = 2 even when
nothing is detected). Its accuracy on each scored split goes into spec 'baselines':
{'test': {'spectral_accuracy'[, 'feature_bayes_accuracy']}, 'validation': {...}};
'feature_bayes_accuracy' (gaussian features) is the nearest-true-mean classifier's accuracy, the
best any model of the features alone can do (it knows the means; a model must estimate them).

The batch (the whole graph, every step): {'graph': Graph, 'y': [n] int32, 'mask': [n] bool};
spec: 'level' 'node', 'task' 'classification', 'num_outputs' k, 'input_shape' (F,), and
'block_model' {'a', 'b', 'p_in', 'p_out', 'degree', 'snr'}.
"""
from __future__ import annotations

import math

import numpy as np

from dlcore import graphs as G
from dlcore.config import check, one_of
from dlcore.data.graph_data import node_task, settings

FEATURES = ("gaussian", "constant", "identity")
MAX_NODES = 10_000_000
MAX_IDENTITY = 20_000  # an [n, n] float32 identity: 1.6 GB at 20,000 nodes
MAX_CLASSES = 100


def defaults() -> dict:
    return {"nodes": 1000, "classes": 2, "degree": 10.0, "snr": 1.5, "features": "gaussian",
            "feature_dim": 16, "feature_snr": 1.0, "train_per_class": 20, "validation": 500,
            "spectral": True, "seed": 0}


def _settings(cfg: dict) -> dict:
    cfg = settings(cfg, defaults(), "sbm")
    num = lambda v: type(v) in (int, float) and math.isfinite(v)
    n, k = cfg["nodes"], cfg["classes"]
    check(type(k) is int and 2 <= k <= MAX_CLASSES, "data.classes",
          f"must be an integer in [2, {MAX_CLASSES}]; got {k!r}")
    check(type(n) is int and 2 * k <= n <= MAX_NODES, "data.nodes",
          f"must be an integer in [2 * classes, {MAX_NODES:,}]; got {n!r}")
    d, lam = cfg["degree"], cfg["snr"]
    check(num(d) and 0 < d <= n - 1, "data.degree",
          f"must be a number in (0, nodes - 1 = {n - 1}] (the average degree); got {d!r}")
    check(num(lam), "data.snr", f"must be a finite number; got {lam!r}")
    lo, hi = -math.sqrt(d) / (k - 1), math.sqrt(d)
    check(lo <= lam <= hi, "data.snr",
          f"{lam} is outside [{lo:.4g}, {hi:.4g}] = [-sqrt(degree) / (classes - 1), "
          f"sqrt(degree)], where both edge probabilities are >= 0")
    a, b = _ab(d, lam, k)
    check(a <= n and b <= n, "data.degree",
          f"with snr {lam} and degree {d}, a = {a:.4g} and b = {b:.4g} must be <= nodes = {n} "
          "(edge probabilities a / n, b / n); lower the degree or the snr")
    one_of(cfg["features"], "data.features", FEATURES)
    check(type(cfg["feature_dim"]) is int and cfg["feature_dim"] >= 1, "data.feature_dim",
          f"must be a positive integer; got {cfg['feature_dim']!r}")
    if cfg["features"] == "gaussian":
        check(cfg["feature_dim"] >= k, "data.feature_dim",
              f"{cfg['feature_dim']} is fewer than the {k} classes (gaussian features need one "
              "dimension a class mean)")
    check(num(cfg["feature_snr"]) and cfg["feature_snr"] >= 0, "data.feature_snr",
          f"must be a finite number >= 0 (the norm of each class mean); got "
          f"{cfg['feature_snr']!r}")
    if cfg["features"] == "identity":
        check(n <= MAX_IDENTITY, "data.features",
              f"'identity' makes [{n}, {n}] features; at most {MAX_IDENTITY:,} nodes (use "
              "'gaussian' or 'constant')")
    tpc, val = cfg["train_per_class"], cfg["validation"]
    check(type(tpc) is int and 1 <= tpc < n // k, "data.train_per_class",
          f"must be an integer in [1, {n // k - 1}] (the smallest class has {n // k} nodes); got "
          f"{tpc!r}")
    check(type(val) is int and 0 <= val <= n - k * tpc - 1, "data.validation",
          f"must be an integer in [0, {n - k * tpc - 1}] (nodes left after the training nodes, "
          f"one kept for the test split); got {val!r}")
    check(isinstance(cfg["spectral"], bool), "data.spectral",
          f"must be true or false; got {cfg['spectral']!r}")
    check(type(cfg["seed"]) is int and 0 <= cfg["seed"] < 2**32, "data.seed",
          f"must be an integer in [0, 2**32); got {cfg['seed']!r}")
    return cfg


def _ab(d: float, lam: float, k: int) -> tuple[float, float]:
    return d + (k - 1) * lam * math.sqrt(d), max(d - lam * math.sqrt(d), 0.0)


def _pairs_within(t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index t of the pairs u < v, ordered (0,1), (0,2), (1,2), (0,3), ...: t = v(v-1)/2 + u."""
    v = ((1 + np.sqrt(1 + 8 * t.astype(np.float64))) // 2).astype(np.int64)
    v -= v * (v - 1) // 2 > t  # float rounding, either way
    v += (v + 1) * v // 2 <= t
    return t - v * (v - 1) // 2, v


def sample(n: int, k: int, p_in: float, p_out: float, rng: np.random.Generator
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(u [m] int64, v [m] int64, y [n] int32): the m undirected edges (u != v, each pair once)
    of an SBM with k near-equal blocks, and each node's block (nodes in random order)."""
    sizes = np.full(k, n // k, np.int64)
    sizes[: n % k] += 1
    start = np.concatenate([[0], np.cumsum(sizes)])
    us, vs = [], []
    for i in range(k):
        for j in range(i, k):
            pairs = sizes[i] * (sizes[i] - 1) // 2 if i == j else sizes[i] * sizes[j]
            m = rng.binomial(pairs, p_in if i == j else p_out)
            t = rng.choice(pairs, size=m, replace=False) if m else np.zeros(0, np.int64)
            if i == j:
                u, v = _pairs_within(t)
            else:
                u, v = t // sizes[j], t % sizes[j]
            us.append(start[i] + u)
            vs.append(start[j] + v)
    perm = rng.permutation(n)  # block-ordered node i becomes node perm[i]
    y = np.empty(n, np.int32)
    y[perm] = np.repeat(np.arange(k, dtype=np.int32), sizes)
    return perm[np.concatenate(us)], perm[np.concatenate(vs)], y


def spectral_clusters(u: np.ndarray, v: np.ndarray, n: int, k: int, seed: int,
                      assortative: bool = True) -> np.ndarray:
    """[n] cluster ids 0..k-1 of the Bethe Hessian's k bottom eigenvectors, by k-means (module
    docstring); u, v: the undirected edges, each once."""
    import scipy.sparse as sp
    from scipy.sparse.linalg import ArpackNoConvergence, eigsh
    from sklearn.cluster import KMeans
    rows, cols = np.concatenate([u, v]), np.concatenate([v, u])
    a = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(n, n))
    deg = np.bincount(rows, minlength=n).astype(np.float64)
    r = math.sqrt(max(float((deg ** 2).sum() / max(deg.sum(), 1.0)) - 1.0, 1.0))
    r = r if assortative else -r
    # the bottom of H = (r^2 - 1) I - r A + D is the top of c I - H, c >= H's largest eigenvalue
    # (Gershgorin): Lanczos finds the top of a spectrum faster than the bottom
    c = r * r - 1 + (1 + abs(r)) * deg.max()
    m = (sp.diags(c - (r * r - 1) - deg) + r * a).tocsr()
    rng = np.random.default_rng(seed)
    try:
        _, vecs = eigsh(m, k=k, which="LA", tol=1e-3, v0=rng.standard_normal(n),
                        maxiter=100 * n)
    except ArpackNoConvergence as e:  # what converged is still a baseline, if a weaker one
        vecs = e.eigenvectors if e.eigenvectors.shape[1] else rng.standard_normal((n, k))
    return KMeans(k, n_init=4, random_state=seed).fit_predict(vecs).astype(np.int32)


def match(clusters: np.ndarray, y: np.ndarray, on: np.ndarray, k: int) -> np.ndarray:
    """clusters renamed to classes: the one-to-one map agreeing most with y on the nodes `on`."""
    from scipy.optimize import linear_sum_assignment
    agree = np.zeros((k, k), np.int64)
    np.add.at(agree, (clusters[on], y[on]), 1)
    rows, cols = linear_sum_assignment(-agree)
    rename = np.empty(k, np.int32)
    rename[rows] = cols
    return rename[clusters]


def _features(kind: str, y: np.ndarray, k: int, dim: int, snr: float, rng) -> tuple:
    """(features [n, F] float32, class means [k, F] or None)."""
    n = len(y)
    if kind == "constant":
        return np.ones((n, 1), np.float32), None
    if kind == "identity":
        return np.eye(n, dtype=np.float32), None
    simplex = np.eye(k) - 1.0 / k  # centred vertices, each of norm sqrt((k - 1) / k)
    simplex /= np.linalg.norm(simplex, axis=1, keepdims=True)
    q, _ = np.linalg.qr(rng.standard_normal((dim, k)))  # a random orthonormal k-frame
    means = snr * simplex @ q.T
    return (means[y] + rng.standard_normal((n, dim))).astype(np.float32), means


def load(cfg: dict):
    """The `Data` of the node task, with the spectral baseline in spec 'baselines' (module
    docstring)."""
    cfg = _settings(cfg)
    n, k, d, lam = cfg["nodes"], cfg["classes"], float(cfg["degree"]), float(cfg["snr"])
    a, b = _ab(d, lam, k)
    graph_rng, feature_rng, split_rng = (np.random.default_rng(s) for s in
                                         np.random.SeedSequence(cfg["seed"]).spawn(3))
    u, v, y = sample(n, k, a / n, b / n, graph_rng)
    x, means = _features(cfg["features"], y, k, cfg["feature_dim"], float(cfg["feature_snr"]),
                         feature_rng)

    masks = {"train": np.zeros(n, bool)}
    for c in range(k):
        masks["train"][split_rng.choice(np.flatnonzero(y == c), cfg["train_per_class"],
                                        replace=False)] = True
    if cfg["validation"]:
        masks["validation"] = np.zeros(n, bool)
        masks["validation"][split_rng.choice(np.flatnonzero(~masks["train"]),
                                             cfg["validation"], replace=False)] = True
    masks["test"] = ~masks["train"] & ~masks.get("validation", np.zeros(n, bool))

    baselines = {s: {} for s in masks if s != "train"}
    if cfg["spectral"]:
        guess = match(spectral_clusters(u, v, n, k, cfg["seed"], assortative=lam >= 0), y,
                      masks["train"], k)
        for s in baselines:
            baselines[s]["spectral_accuracy"] = float(np.mean(guess[masks[s]] == y[masks[s]]))
    if means is not None:
        nearest = np.argmin(np.stack([((x - mu) ** 2).sum(1) for mu in means], 1), axis=1)
        for s in baselines:
            baselines[s]["feature_bayes_accuracy"] = float(np.mean(nearest[masks[s]] ==
                                                                   y[masks[s]]))

    senders, receivers = np.concatenate([u, v]), np.concatenate([v, u])
    order = np.argsort(receivers, kind="stable")
    graph = G.graph(x, senders[order], receivers[order], name="data 'sbm'")
    data = node_task(graph, y, masks, name="sbm", baselines=baselines)
    return data._replace(spec={**data.spec, "block_model": {
        "a": a, "b": b, "p_in": a / n, "p_out": b / n, "degree": d, "snr": lam}})
