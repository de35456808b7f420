"""Graphs as one value, and many graphs as one batch of fixed shapes.

    g = Graph(nodes, edges, senders, receivers, globals, n_node, n_edge, node_graph, node_mask,
              edge_mask)
        nodes      [N, F] float32   node features
        edges      [E, D] float32   edge features (D may be 0)
        senders    [E] int32        edge e runs senders[e] -> receivers[e]; an undirected edge is
        receivers  [E] int32        two directed ones
        globals    [G, Dg] float32  one row per graph (Dg may be 0)
        n_node     [G] int32        real nodes of each graph (0 for a padding graph)
        n_edge     [G] int32        real edges of each graph
        node_graph [N] int32        the graph each node belongs to
        node_mask  [N] bool         False for padding nodes
        edge_mask  [E] bool         False for padding edges

A batch of graphs is one `Graph` (`batch`), its nodes and edges concatenated with the senders
and receivers shifted. Padding (`pad`, `pad_to_bucket`) adds masked nodes, edges and graphs so a
jitted function sees a few shapes only (powers of two: one compilation per bucket); every layer
and readout of dlcore.models.gnn reads the masks, so padding never changes a real node's output.

Data sets of many graphs stay on the device as *slots* (`stack`): every graph padded to the data
set's largest, arrays [num_graphs, max_nodes, ...], so a batch is cut like any array batch
(dlcore.data.batching) and `from_slots` turns it into one `Graph` inside the jitted step.

Everything here that builds a graph from user input (`graph`, `from_networkx`, `batch`, `check`)
runs on the host with NumPy and refuses bad input with one ConfigError naming the problem.
"""
from __future__ import annotations

from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from dlcore.config import ConfigError

# a field is a numpy array while a graph is built on the host, a jax.Array on the device
Array = jax.Array | np.ndarray


class Graph(NamedTuple):
    """One graph or a batch of graphs (the module docstring gives the shapes)."""
    nodes: Array
    edges: Array
    senders: Array
    receivers: Array
    globals: Array
    n_node: Array
    n_edge: Array
    node_graph: Array
    node_mask: Array
    edge_mask: Array

    @property
    def num_nodes(self) -> int:
        return self.nodes.shape[0]

    @property
    def num_edges(self) -> int:
        return self.senders.shape[0]

    @property
    def num_graphs(self) -> int:
        return self.n_node.shape[0]

    @property
    def graph_mask(self) -> Array:
        """[G] bool: the graphs that are not padding."""
        return self.n_node > 0


# --- building graphs on the host -------------------------------------------------------------

def graph(nodes, senders, receivers, edges=None, globals=None, name: str = "graph") -> Graph:
    """One graph from arrays (NumPy or lists), checked: nodes [N, F] (or [N]: one feature),
    senders/receivers [E] integers in 0..N-1, edges [E, D] or [E] or None, globals [Dg] or None."""
    nodes = _features(nodes, "node features", name)
    n = len(nodes)
    if n == 0:
        raise ConfigError(f"{name}: the graph has no nodes (an empty graph has nothing to "
                          "predict from; leave it out)")
    senders, receivers = (_indices(a, what, n, name) for a, what in
                          ((senders, "senders"), (receivers, "receivers")))
    if senders.shape != receivers.shape:
        raise ConfigError(f"{name}: {len(senders)} senders but {len(receivers)} receivers")
    e = len(senders)
    edges = (np.zeros((e, 0), np.float32) if edges is None
             else _features(edges, "edge features", name))
    if len(edges) != e:
        raise ConfigError(f"{name}: {len(edges)} rows of edge features for {e} edges")
    globals = (np.zeros((1, 0), np.float32) if globals is None
               else _features(np.reshape(globals, (1, -1)), "global features", name))
    return Graph(nodes, edges, senders, receivers, globals, np.array([n], np.int32),
                 np.array([e], np.int32), np.zeros(n, np.int32), np.ones(n, bool),
                 np.ones(e, bool))


def from_networkx(g, features=None, name: str = "graph") -> Graph:
    """A networkx graph as a Graph: nodes in `g.nodes` order, an undirected edge as both
    directions; features [N, F] (default: one constant feature per node)."""
    index = {v: i for i, v in enumerate(g.nodes)}
    pairs = np.array([(index[u], index[v]) for u, v in g.edges], np.int64).reshape(-1, 2)
    if not g.is_directed():
        pairs = np.concatenate([pairs, pairs[:, ::-1]])
    n = len(index)
    return graph(np.ones((n, 1), np.float32) if features is None else features,
                 pairs[:, 0], pairs[:, 1], name=name)


def _features(a, what: str, name: str) -> np.ndarray:
    try:
        a = np.asarray(a)
    except (ValueError, TypeError) as e:
        raise ConfigError(f"{name}: {what} are not an array ({e})") from None
    if a.dtype == bool or not (np.issubdtype(a.dtype, np.floating)
                               or np.issubdtype(a.dtype, np.integer)):
        raise ConfigError(f"{name}: {what} of dtype {a.dtype} are not numbers")
    if a.ndim == 0:
        raise ConfigError(f"{name}: {what} must be an array with a row per item; got a scalar")
    a = a.reshape(len(a), -1) if a.ndim != 2 else a
    with np.errstate(over="ignore", invalid="ignore"):
        out = a.astype(np.float32)
    if not np.all(np.isfinite(out)):
        bad = int(np.argwhere(~np.isfinite(out))[0][0])
        raise ConfigError(f"{name}: {what} hold NaN or Inf, or values float32 cannot hold "
                          f"(first in row {bad})")
    return out


def _indices(a, what: str, n: int, name: str) -> np.ndarray:
    a = np.asarray(a)
    if a.ndim != 1 or not (np.issubdtype(a.dtype, np.integer) or a.size == 0):
        raise ConfigError(f"{name}: {what} must be a vector of integer node indices; got "
                          f"{a.dtype} {a.shape}")
    if a.size and (a.min() < 0 or a.max() >= n):
        bad = int(a.min()) if a.min() < 0 else int(a.max())
        raise ConfigError(f"{name}: {what} hold node index {bad}, outside the {n} nodes "
                          f"0..{n - 1}")
    return a.astype(np.int32)


def batch(graphs: Sequence[Graph]) -> Graph:
    """Many graphs as one (host side): nodes, edges and graphs concatenated, the senders and
    receivers of each shifted past the nodes before it."""
    if not graphs:
        raise ConfigError("batch(): no graphs to batch")
    graphs = [jax.tree.map(np.asarray, g) for g in graphs]
    same_widths(graphs, "batch()")
    node_offsets = np.cumsum([0] + [g.num_nodes for g in graphs[:-1]])
    graph_offsets = np.cumsum([0] + [g.num_graphs for g in graphs[:-1]])
    cat = lambda field: np.concatenate([getattr(g, field) for g in graphs])
    return Graph(cat("nodes"), cat("edges"),
                 np.concatenate([g.senders + o for g, o in zip(graphs, node_offsets)]).astype(np.int32),
                 np.concatenate([g.receivers + o for g, o in zip(graphs, node_offsets)]).astype(np.int32),
                 cat("globals"), cat("n_node"), cat("n_edge"),
                 np.concatenate([g.node_graph + o for g, o in zip(graphs, graph_offsets)]).astype(np.int32),
                 cat("node_mask"), cat("edge_mask"))


def same_widths(graphs: Sequence[Graph], where: str) -> None:
    """ConfigError unless every graph has the same number of node, edge and global features."""
    for field, what in (("nodes", "node"), ("edges", "edge"), ("globals", "global")):
        widths = {getattr(g, field).shape[1] for g in graphs}
        if len(widths) > 1:
            raise ConfigError(f"{where}: graphs with {sorted(widths)} {what} features; every "
                              "graph of a batch needs the same number")


def pad(g: Graph, num_nodes: int, num_edges: int, num_graphs: int) -> Graph:
    """`g` grown to exactly num_nodes nodes, num_edges edges and num_graphs graphs (host side):
    padding nodes have zero features and belong to the last graph, padding edges join the last
    node to itself; all are masked out, and padding graphs have n_node 0."""
    g = jax.tree.map(np.asarray, g)
    dn, de, dg = num_nodes - g.num_nodes, num_edges - g.num_edges, num_graphs - g.num_graphs
    if min(dn, de, dg) < 0:
        raise ConfigError(f"pad(): a batch of {g.num_nodes} nodes, {g.num_edges} edges and "
                          f"{g.num_graphs} graphs does not fit {num_nodes}, {num_edges} and "
                          f"{num_graphs}")
    grow = lambda a, k, value=0: np.concatenate([a, np.full((k, *a.shape[1:]), value, a.dtype)])
    last = num_nodes - 1
    return Graph(grow(g.nodes, dn), grow(g.edges, de), grow(g.senders, de, last),
                 grow(g.receivers, de, last), grow(g.globals, dg), grow(g.n_node, dg),
                 grow(g.n_edge, dg), grow(g.node_graph, dn, num_graphs - 1),
                 grow(g.node_mask, dn, False), grow(g.edge_mask, de, False))


def bucket(n: int, smallest: int = 8) -> int:
    """The bucket a size falls in: the smallest power of two >= n (and >= `smallest`), so sizes
    up to n compile at most log2(n) programs."""
    return max(smallest, 1 << max(0, int(n) - 1).bit_length())


def pad_to_bucket(g: Graph) -> Graph:
    """`g` padded to the buckets of its node, edge and graph counts (one spare graph, so padding
    nodes never join a real graph)."""
    return pad(g, bucket(g.num_nodes + 1), bucket(g.num_edges), bucket(g.num_graphs + 1, 2))


def padded_batches(graphs: Sequence[Graph], batch_size: int):
    """Yield (index [b], Graph) for consecutive batches of `graphs` (host side), each padded to
    its bucket: a jitted function of them compiles once per bucket, not once per batch."""
    for start in range(0, len(graphs), batch_size):
        idx = np.arange(start, min(start + batch_size, len(graphs)))
        yield idx, pad_to_bucket(batch([graphs[int(i)] for i in idx]))


def check(g: Graph, name: str = "graph") -> Graph:
    """ConfigError unless `g` is consistent: shapes agree with each other, indices lie within
    the nodes, counts match the masks, features are finite. Returns g as NumPy arrays."""
    g = jax.tree.map(np.asarray, g)
    n, e, k = g.num_nodes, g.num_edges, g.num_graphs
    want = {"nodes": (n,), "edges": (e,), "senders": (e,), "receivers": (e,), "globals": (k,),
            "n_node": (k,), "n_edge": (k,), "node_graph": (n,), "node_mask": (n,),
            "edge_mask": (e,)}
    for field, lead in want.items():
        shape = getattr(g, field).shape
        if shape[:1] != lead:
            raise ConfigError(f"{name}: '{field}' has {shape[0] if shape else 'no'} rows; the "
                              f"graph has {lead[0]} ({'nodes' if lead[0] == n else 'edges' if lead[0] == e else 'graphs'})")
    if n == 0 or not g.node_mask.any():
        raise ConfigError(f"{name}: the graph has no nodes")
    _features(g.nodes, "node features", name)
    _features(g.edges, "edge features", name)
    for field in ("senders", "receivers"):
        _indices(getattr(g, field), field, n, name)
    _indices(g.node_graph, "node_graph", k, name)
    real = np.bincount(g.node_graph[g.node_mask], minlength=k)
    if not np.array_equal(real, g.n_node):
        raise ConfigError(f"{name}: n_node {g.n_node.tolist()[:8]} does not count the real "
                          f"nodes of each graph ({real.tolist()[:8]})")
    ends = g.edge_mask & ~(g.node_mask[g.senders] & g.node_mask[g.receivers])
    if ends.any():
        raise ConfigError(f"{name}: edge {int(np.argmax(ends))} joins a padding node")
    return g


# --- inside jitted code -------------------------------------------------------------------------

def stack(graphs: Sequence[Graph], max_nodes: int | None = None,
          max_edges: int | None = None) -> dict:
    """Single graphs as slots (host side): {'nodes': [G, max_nodes, F], 'edges': [G, max_edges,
    D], 'senders'/'receivers': [G, max_edges] (indices within the graph), 'globals': [G, Dg],
    'n_node'/'n_edge': [G]}: one array batch per field, cut like any other (dlcore.data)."""
    graphs = [jax.tree.map(np.asarray, g) for g in graphs]
    if any(g.num_graphs != 1 for g in graphs):
        raise ConfigError("stack(): takes single graphs, not batches")
    same_widths(graphs, "stack()")
    mn = max(g.num_nodes for g in graphs) if max_nodes is None else max_nodes
    me = max(max(g.num_edges for g in graphs), 1) if max_edges is None else max_edges
    slot = lambda a, size: np.concatenate([a, np.zeros((size - len(a), *a.shape[1:]), a.dtype)])
    if max(g.num_nodes for g in graphs) > mn or max(g.num_edges for g in graphs) > me:
        raise ConfigError(f"stack(): a graph has more than max_nodes={mn} nodes or "
                          f"max_edges={me} edges")
    return {"nodes": np.stack([slot(g.nodes, mn) for g in graphs]),
            "edges": np.stack([slot(g.edges, me) for g in graphs]),
            "senders": np.stack([slot(g.senders, me) for g in graphs]),
            "receivers": np.stack([slot(g.receivers, me) for g in graphs]),
            "globals": np.concatenate([g.globals for g in graphs]),
            "n_node": np.concatenate([g.n_node for g in graphs]),
            "n_edge": np.concatenate([g.n_edge for g in graphs])}


SLOT_KEYS = ("nodes", "edges", "senders", "receivers", "globals", "n_node", "n_edge")


def from_slots(slots: dict) -> Graph:
    """Slots [B, max_nodes, ...] (a batch of `stack`) as one Graph of B graphs, B * max_nodes
    nodes and B * max_edges edges (jittable): each graph keeps its own block of nodes, so a
    batch sharded over devices by graph is sharded by node and edge too."""
    b, mn, f = slots["nodes"].shape
    me = slots["senders"].shape[1]
    offsets = (jnp.arange(b, dtype=jnp.int32) * mn)[:, None]
    node_mask = jnp.arange(mn)[None, :] < slots["n_node"][:, None]
    edge_mask = jnp.arange(me)[None, :] < slots["n_edge"][:, None]
    # padding edges point at their graph's first node: masked, but always a valid index
    ends = lambda a: (jnp.where(edge_mask, a, 0) + offsets).reshape(-1)
    return Graph(slots["nodes"].reshape(b * mn, f),
                 slots["edges"].reshape(b * me, slots["edges"].shape[-1]),
                 ends(slots["senders"]), ends(slots["receivers"]), slots["globals"],
                 slots["n_node"], slots["n_edge"],
                 jnp.repeat(jnp.arange(b, dtype=jnp.int32), mn), node_mask.reshape(-1),
                 edge_mask.reshape(-1))


def edge_graph(g: Graph) -> Array:
    """[E] int32: the graph each edge belongs to."""
    return g.node_graph[g.receivers]


def dense_adjacency(g: Graph) -> jax.Array:
    """[N, N]: A[r, s] counts the real edges s -> r (for references and small graphs)."""
    w = g.edge_mask.astype(jnp.float32)
    return jnp.zeros((g.num_nodes, g.num_nodes)).at[g.receivers, g.senders].add(w)
