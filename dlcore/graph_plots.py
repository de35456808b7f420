"""What a trained graph model does, drawn (`dlcore report` of a graph run):

* node tasks: graph.png, the graph (up to 300 nodes: a breadth-first piece of a larger one)
  coloured by predicted class, training nodes ringed in black and wrong predictions crossed;
  embeddings.png, the nodes' learned representations (the model's recorded 'embedding', else its
  outputs) in two principal components, coloured by true class;
* graph tasks: embeddings.png for the test graphs' pooled representations; graphs.png, a test
  graph of each class with its true and predicted label (classification) or predictions.png, predicted
  against true targets (regression).
"""
from __future__ import annotations

import os
from pathlib import Path

import jax
import matplotlib

# files only, never a window; in Jupyter (ipykernel sets MPLBACKEND) its inline figures stay
if "inline" not in os.environ.get("MPLBACKEND", ""):
    matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from dlcore import graphs as G  # noqa: E402
from dlcore.data import graph_data  # noqa: E402

MAX_DRAWN = 300


def pictures(model, variables: dict, data, out_dir: Path, title: str) -> list[Path]:
    spec, test = data.spec, data.splits["test"]
    if spec["level"] == "node":
        graph, mask = test["graph"], np.asarray(test["mask"])
        y, train_mask = np.asarray(test["y"]), np.asarray(data.splits["train"]["mask"])
    else:
        rows = {k: np.asarray(test[k])[:512] for k in (*G.SLOT_KEYS, "y")}
        batch = graph_data.as_batch(rows)
        graph, y, mask, train_mask = batch["graph"], rows["y"], np.ones(len(rows["y"]), bool), None
    out, emb = _outputs(model, variables, graph)
    classify = spec["task"] == "classification"
    paths = [_embeddings(emb[mask], y[mask] if classify else None, out_dir / "embeddings.png",
                         f"{title}: learned {'node' if spec['level'] == 'node' else 'graph'} "
                         "representations (test)")]
    if spec["level"] == "node":
        pred = out.argmax(-1) if classify else out[:, 0]
        paths.append(draw_node_graph(jax.tree.map(np.asarray, graph), pred, y, train_mask,
                                     out_dir / "graph.png", f"{title}: predicted classes",
                                     classify))
    elif classify:
        paths.append(_graph_grid(graph, y, out.argmax(-1), out_dir / "graphs.png",
                                 f"{title}: test graphs, true / predicted class"))
    else:
        paths.append(_scatter(y[:, 0] if y.ndim > 1 else y, out[:, 0], out_dir / "predictions.png",
                              f"{title}: predicted against true (test graphs)"))
    return paths


def _outputs(model, variables, graph) -> tuple[np.ndarray, np.ndarray]:
    """(outputs, representations): the 'embedding' a model records with sow, else its outputs."""
    from dlcore import analysis
    out = np.asarray(jax.jit(lambda v, g: model.apply(v, g, False, None)[0])(variables, graph))
    found = {k: v for k, v in analysis.intermediates(model, variables, graph).items()
             if k.split("/")[-1].startswith("embedding")}
    return out, (next(iter(found.values())) if found else out)


def _embeddings(z: np.ndarray, labels, path: Path, title: str) -> Path:
    from dlcore import plots
    return plots.latent_map(z.reshape(len(z), -1), labels, path, title)


def _nx(graph, keep: np.ndarray | None = None):
    import networkx as nx
    real = np.flatnonzero(np.asarray(graph.node_mask))
    keep = real if keep is None else keep
    g = nx.Graph()
    g.add_nodes_from(keep.tolist())
    s, r, m = (np.asarray(a) for a in (graph.senders, graph.receivers, graph.edge_mask))
    inside = np.zeros(graph.num_nodes, bool)
    inside[keep] = True
    sel = m & inside[s] & inside[r] & (s != r)
    g.add_edges_from(zip(s[sel].tolist(), r[sel].tolist()))
    return g


def _piece(graph, limit: int) -> np.ndarray:
    """Up to `limit` real nodes reached breadth-first from node 0 (then any others)."""
    real = np.flatnonzero(np.asarray(graph.node_mask))
    if len(real) <= limit:
        return real
    import scipy.sparse as sp
    from scipy.sparse.csgraph import breadth_first_order
    m = np.asarray(graph.edge_mask)
    n = graph.num_nodes
    a = sp.coo_matrix((np.ones(m.sum()), (np.asarray(graph.senders)[m],
                                          np.asarray(graph.receivers)[m])), shape=(n, n)).tocsr()
    order = breadth_first_order(a, int(real[0]), directed=False, return_predecessors=False)
    rest = np.setdiff1d(real, order, assume_unique=False)
    return np.concatenate([order, rest])[:limit]


def draw_node_graph(graph, pred, y, train_mask, path: Path, title: str, classify: bool) -> Path:
    """The graph (a piece of it when large) coloured by prediction; training nodes ringed."""
    import networkx as nx
    keep = _piece(graph, MAX_DRAWN)
    g = _nx(graph, keep)
    pos = nx.spring_layout(g, seed=0)
    fig, ax = plt.subplots(figsize=(6, 5.4), dpi=120)
    nx.draw_networkx_edges(g, pos, ax=ax, alpha=0.25, width=0.6)
    nodes = np.array(list(g.nodes))
    colours = pred[nodes]
    ring = (["black" if train_mask[v] else "none" for v in nodes] if train_mask is not None
            else "none")
    sc = ax.scatter([pos[v][0] for v in nodes], [pos[v][1] for v in nodes], c=colours,
                    cmap="tab10" if classify else "viridis", s=40 if len(nodes) < 100 else 12,
                    edgecolors=ring, linewidths=1.5, zorder=2)
    if classify:
        wrong = nodes[pred[nodes] != y[nodes]]
        ax.scatter([pos[v][0] for v in wrong], [pos[v][1] for v in wrong], marker="x", c="red",
                   s=20, zorder=3, label=f"wrong ({len(wrong)})")
        if len(wrong):
            ax.legend(loc="lower right", fontsize=7)
    else:
        fig.colorbar(sc, ax=ax, label="prediction")
    shown = "" if len(nodes) == int(np.asarray(graph.node_mask).sum()) else f" ({len(nodes)} nodes shown)"
    ax.set_title(title + shown + "; ringed: training nodes", fontsize=8)
    ax.set_axis_off()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _graph_grid(graph, y, pred, path: Path, title: str, count: int = 10) -> Path:
    """One test graph of each class (the first), up to `count` panels."""
    import networkx as nx
    graph = jax.tree.map(np.asarray, graph)
    real = np.flatnonzero(graph.graph_mask)
    shown = [real[y[real] == c][0] for c in np.unique(y[real])][:count]
    cols = (len(shown) + 1) // 2
    fig, axes = plt.subplots(2, cols, figsize=(2.2 * cols, 4.6), dpi=120, squeeze=False)
    for ax in axes.ravel():
        ax.set_axis_off()
    for i, ax in zip(shown, axes.ravel()):
        keep = np.flatnonzero(graph.node_mask & (graph.node_graph == i))
        g = _nx(graph, keep)
        nx.draw_networkx(g, nx.kamada_kawai_layout(g) if len(keep) <= 60 else nx.spring_layout(g, seed=0),
                         ax=ax, with_labels=False, node_size=10, width=0.5,
                         node_color="tab:green" if pred[i] == y[i] else "tab:red")
        ax.set_title(f"{y[i]} / {pred[i]}", fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _scatter(true: np.ndarray, pred: np.ndarray, path: Path, title: str) -> Path:
    fig, ax = plt.subplots(figsize=(4.6, 4.4), dpi=120)
    ax.scatter(true, pred, s=6, alpha=0.6)
    lo, hi = float(min(true.min(), pred.min())), float(max(true.max(), pred.max()))
    ax.plot([lo, hi], [lo, hi], color="gray", lw=0.8)
    ax.set_xlabel("true")
    ax.set_ylabel("predicted")
    ax.set_title(title, fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
