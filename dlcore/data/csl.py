"""CSL: circulant skip-link graphs, ten classes of graphs that message passing alone cannot tell
apart (Murphy et al., ICML 2019, 'Relational Pooling'; Dwivedi et al., 'Benchmarking Graph Neural
Networks', JMLR 2023).

Class c is the graph C_41(1, s) for s = SKIPS[c] = 2, 3, 4, 5, 6, 9, 11, 12, 13, 16: 41 nodes on
a cycle, node i joined to i +- 1 and i +- s (mod 41): 82 edges (164 directed), every node of
degree 4. No two classes are isomorphic (41 is prime, and no s is +- another's inverse mod 41),
yet all are 4-regular, so 1-WL, and every message-passing network with identical node features,
sees the same graph: its accuracy is chance, 10 %, unless the features break the symmetry.
Each class holds 15 copies of its graph, each with its nodes in a random order (one permutation
per graph, drawn from `data.seed` with NumPy's Generator; the edges then sorted by sender and
receiver): 150 graphs, graph i of class i // 15. Built with NumPy alone.

Node features [41, 1 + pe_dim] float32: a constant 1, then, when `data.pe_dim` = k > 0, the
Laplacian positional encodings of Dwivedi et al.: the eigenvectors of the symmetric normalised
Laplacian L = I - D^-1/2 A D^-1/2 (here I - A/4) for the k smallest eigenvalues after the first
(the 0 of the constant vector), unit norm, in ascending order of eigenvalue (numpy.linalg.eigh);
k <= 40. Dwivedi et al. use k = 20 for CSL. An eigenvector's sign is arbitrary, so with
`data.sign_flip` (default true) every training batch multiplies each PE column of each graph by
a random sign (drawn from the data key and the step), as Dwivedi et al. do; evaluation splits see
the encodings unflipped. Beware: C_41(1, s) is circulant, so each nonzero eigenvalue has
multiplicity two (at least): within such a plane the basis, not only the sign, is arbitrary, and
is whatever LAPACK returns for the graph's node order. The sign flips cover the sign ambiguity
only; the encodings still separate the classes (Dwivedi et al. report test accuracies near
100 % with them, 10 % without).

Splits (Dwivedi et al.'s protocol, after Murphy et al.'s 5-fold cross-validation): the 150 graphs
fall into 5 stratified folds (sklearn StratifiedKFold, shuffled with `data.split_seed`); fold
`data.fold` (0..4) is 'test' (30 graphs, 3 a class); of the other 120, with `data.validation`
(default true) a stratified quarter is 'validation' (30), the rest 'train' (90); without it all
120 train. Dwivedi et al. report the mean and spread over the 5 folds: run fold = 0..4.
`data.batch_size` 5 (Dwivedi et al.'s), `data.shuffle` true.

The batch: {'graph': Graph of batch_size graphs, 'y': [batch_size] int32 (class), 'mask'};
spec: 'level' 'graph', 'task' 'classification', 'num_outputs' 10, 'input_shape' (1 + pe_dim,),
'skips', 'pe_dim', 'baselines' {'test': {'chance_accuracy': 0.1}} (also what any 1-WL-bounded
model gets without positional encodings).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from dlcore import graphs as G
from dlcore.config import check
from dlcore.data.graph_data import graph_task, settings

SKIPS = (2, 3, 4, 5, 6, 9, 11, 12, 13, 16)
NODES = 41
PER_CLASS = 15
FOLDS = 5


def defaults() -> dict:
    return {"pe_dim": 0, "sign_flip": True, "fold": 0, "validation": True, "batch_size": 5,
            "shuffle": True, "split_seed": 0, "seed": 0}


def _settings(cfg: dict) -> dict:
    cfg = settings(cfg, defaults(), "csl")
    check(type(cfg["pe_dim"]) is int and 0 <= cfg["pe_dim"] <= NODES - 1, "data.pe_dim",
          f"must be an integer in [0, {NODES - 1}] (0: a constant feature only; k: also the k "
          f"Laplacian eigenvectors after the first); got {cfg['pe_dim']!r}")
    for key in ("sign_flip", "validation", "shuffle"):
        check(isinstance(cfg[key], bool), f"data.{key}", f"must be true or false; got "
              f"{cfg[key]!r}")
    check(type(cfg["fold"]) is int and 0 <= cfg["fold"] < FOLDS, "data.fold",
          f"must be an integer in [0, {FOLDS - 1}] (the test fold of the 5-fold protocol); got "
          f"{cfg['fold']!r}")
    for key in ("split_seed", "seed"):
        check(type(cfg[key]) is int and 0 <= cfg[key] < 2**32, f"data.{key}",
              f"must be an integer in [0, 2**32); got {cfg[key]!r}")
    return cfg


def circulant(s: int, n: int = NODES) -> tuple[np.ndarray, np.ndarray]:
    """(senders, receivers) [4n] int64 of C_n(1, s): i -> i +- 1 and i -> i +- s (mod n)."""
    i = np.arange(n)
    ends = np.concatenate([(i + 1) % n, (i + s) % n])
    starts = np.concatenate([i, i])
    return np.concatenate([starts, ends]), np.concatenate([ends, starts])


def laplacian_pe(senders, receivers, n: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(eigenvalues [k], eigenvectors [n, k]) float64 of the symmetric normalised Laplacian of
    the graph, for the k smallest eigenvalues after the first (ascending)."""
    a = np.zeros((n, n))
    np.add.at(a, (receivers, senders), 1.0)
    d = a.sum(1)
    s = np.where(d > 0, 1 / np.sqrt(np.maximum(d, 1e-12)), 0.0)
    lap = np.eye(n) - s[:, None] * a * s[None, :]
    w, v = np.linalg.eigh(lap)
    return w[1:k + 1], v[:, 1:k + 1]


def graphs(cfg: dict | None = None) -> tuple[list, np.ndarray]:
    """([150 Graph], y [150] int32): the data set, class-major (graph i is of class i // 15)."""
    cfg = _settings(cfg or {})
    rng = np.random.default_rng(cfg["seed"])
    out, y = [], []
    for c, s in enumerate(SKIPS):
        u, v = circulant(s)
        for _ in range(PER_CLASS):
            perm = rng.permutation(NODES)  # old node i becomes node perm[i]
            su, sv = perm[u], perm[v]
            order = np.lexsort((sv, su))
            su, sv = su[order], sv[order]
            feats = [np.ones((NODES, 1))]
            if cfg["pe_dim"]:
                feats.append(laplacian_pe(su, sv, NODES, cfg["pe_dim"])[1])
            out.append(G.graph(np.concatenate(feats, axis=1), su, sv, name="data 'csl'"))
            y.append(c)
    return out, np.array(y, np.int32)


def split(y: np.ndarray, cfg: dict) -> dict:
    """{'train', 'test'[, 'validation']}: graph indices of the section's fold (module docstring)."""
    from sklearn.model_selection import StratifiedKFold, train_test_split
    cfg = _settings(cfg)
    folds = StratifiedKFold(FOLDS, shuffle=True, random_state=cfg["split_seed"])
    rest, test = list(folds.split(np.zeros(len(y)), y))[cfg["fold"]]
    out = {"train": np.sort(rest), "test": np.sort(test)}
    if cfg["validation"]:
        train, val = train_test_split(rest, test_size=0.25, random_state=cfg["split_seed"],
                                      stratify=y[rest])
        out.update(train=np.sort(train), validation=np.sort(val))
    return out


def sign_flip(pe_dim: int):
    """transform(batch, key): each graph's PE columns (node feature columns 1..pe_dim) times a
    random sign, one per column and graph; the constant column untouched."""
    def transform(batch, key):
        g = batch["graph"]
        signs = jax.random.rademacher(key, (g.num_graphs, pe_dim), jnp.float32)
        scale = jnp.concatenate([jnp.ones((g.num_graphs, 1), jnp.float32), signs], axis=1)
        return {**batch, "graph": g._replace(nodes=g.nodes * scale[g.node_graph])}
    return transform


def load(cfg: dict):
    """The `Data` of the graph task (module docstring)."""
    cfg = _settings(cfg)
    gs, y = graphs(cfg)
    flip = sign_flip(cfg["pe_dim"]) if cfg["sign_flip"] and cfg["pe_dim"] else None
    data = graph_task(gs, y, split(y, cfg), batch_size=cfg["batch_size"],
                      shuffle=cfg["shuffle"], name="csl", transform=flip,
                      baselines={"test": {"chance_accuracy": 1 / len(SKIPS)}})
    return data._replace(spec={**data.spec, "skips": SKIPS, "pe_dim": cfg["pe_dim"]})
