"""Graph neural networks: message-passing layers, readouts and the `gnn` family (Flax Linen).

Every layer takes the graph and the node states apart, `layer(graph, h, train) -> h'` with h
[N, F_in] -> [N, F_out], so a stack carries its hidden states while the graph (edges, masks)
stays the same. Everything is sums and maxima over edge lists (jax.ops.segment_sum /
segment_max) that read the masks of dlcore.graphs.Graph:

* a padding edge (edge_mask False) never contributes, and neither does an edge touching a
  padding node (node_mask False), so padding never reaches a real node;
* an empty segment (a node without incoming edges, a graph without real nodes) gives 0, never
  NaN or -inf, in values and in gradients.

So a batch padded to a bucket (dlcore.graphs.pad_to_bucket) or cut from slots
(dlcore.graphs.from_slots) gives every real node and graph the output it has unpadded.

Layers (the first three match PyTorch Geometric's layer of the same name, default settings,
with copied weights):

    GCNConv   Kipf & Welling 2017: D^-1/2 (A + I) D^-1/2 h W + b
    GATConv   Velickovic et al. 2018: multi-head attention over each node's in-neighbours
    GINConv   Xu et al. 2019: MLP((1 + eps) h + sum of in-neighbours' h)
    MPNNConv  Gilmer et al. 2017: messages MLP([h_s, h_r, e]) from edge features, summed

Self loops (GCN, GAT): every real node gets exactly one self loop of weight 1 and a graph's own
self loops are dropped first (PyG's add_remaining_self_loops, and remove_self_loops +
add_self_loops), so A + I means the adjacency without its diagonal, plus I. Repeated edges count
as often as they occur (in degrees, sums and softmaxes alike).

Readouts, [N, F] -> [G, F]: `readout(graph, h, 'sum' | 'mean' | 'max')` and `AttentionReadout`.

The family (`model.name: gnn`, keys in `defaults()`): `GNN`, node outputs [N, C] (readout
'none') or graph outputs [G, C].
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from dlcore.config import check, one_of
from dlcore.graphs import Graph
from dlcore.models.mlp import ACTIVATIONS

CONVS = ("gcn", "gat", "gin", "mpnn")
READOUTS = ("sum", "mean", "max")
NORMS = ("none", "layer", "batch")

# PyG initialises the weights of GCNConv and GATConv (and GAT's attention vectors) with Glorot.
glorot = nn.initializers.xavier_uniform()


# --- masks and segments --------------------------------------------------------------------------

def _expand(mask: jax.Array, like: jax.Array) -> jax.Array:
    """mask [K] with trailing axes of size 1, to broadcast against `like` [K, ...]."""
    return mask.reshape(mask.shape + (1,) * (like.ndim - 1))


def real_edges(graph: Graph) -> jax.Array:
    """[E] bool: the edges that count, unmasked and joining two real nodes (a checked graph's
    edge_mask implies the second; a hand-made one cannot leak padding nodes in either)."""
    return (graph.edge_mask & graph.node_mask[graph.senders]
            & graph.node_mask[graph.receivers])


def self_looped(graph: Graph) -> tuple[jax.Array, jax.Array, jax.Array]:
    """(senders [E + N], receivers [E + N], mask [E + N]): the edges without their self loops,
    then one self loop per node (masked for padding nodes), as PyG's GCNConv and GATConv."""
    loops = jnp.arange(graph.num_nodes, dtype=graph.senders.dtype)
    keep = real_edges(graph) & (graph.senders != graph.receivers)
    return (jnp.concatenate([graph.senders, loops]), jnp.concatenate([graph.receivers, loops]),
            jnp.concatenate([keep, graph.node_mask]))


def aggregate(messages: jax.Array, receivers: jax.Array, mask: jax.Array,
              num_nodes: int) -> jax.Array:
    """messages [E, ...] summed at their receivers [E] -> [num_nodes, ...]; masked edges add 0
    (a `where`, not a product: a padding edge's message may be anything)."""
    return jax.ops.segment_sum(jnp.where(_expand(mask, messages), messages, 0.0), receivers,
                               num_nodes)


def segment_softmax(logits: jax.Array, segments: jax.Array, num_segments: int,
                    mask: jax.Array) -> jax.Array:
    """Softmax of logits [E] or [E, H] over the entries of each segment (segments [E] in
    0..num_segments-1), masked entries (mask [E] False) left out -> [E] or [E, H].

    Masked entries are 0; the real entries of each non-empty segment sum to 1; an empty segment
    has no entries to give NaN. Stable: each segment's max is subtracted first (logits 1e4 are
    fine)."""
    m = _expand(mask, logits)
    top = jax.ops.segment_max(jnp.where(m, logits, -jnp.inf), segments, num_segments)
    # Softmax does not depend on the shift, so its gradient is 0: stop_gradient says so and
    # keeps segment_max (and the -inf of empty segments) out of the backward pass.
    top = jax.lax.stop_gradient(jnp.where(jnp.isfinite(top), top, 0.0))
    # Masked logits are zeroed before exp: exp(huge) = inf there would make where's gradient
    # 0 * inf = NaN.
    z = jnp.where(m, logits - top[segments], 0.0)
    e = jnp.where(m, jnp.exp(z), 0.0)
    total = jax.ops.segment_sum(e, segments, num_segments)
    # A real entry's segment sums to >= 1 (its max contributes exp(0)); only a segment of
    # masked entries sums to 0, and its entries are 0 anyway.
    return e / jnp.where(total > 0, total, 1.0)[segments]


def keep_mask(key: jax.Array, keep: float, shape: tuple) -> tuple[jax.Array, float]:
    """(mask [shape] bool, scale) for inverted dropout: each entry True independently with
    probability q = round(keep * 2^16) / 2^16 (within 2^-17 of `keep`; at least 2^-16), and
    scale = 1 / q, so mask * x * scale has mean x exactly.

    Why not jax.random.bernoulli (flax's nn.Dropout): it spends one Threefry-2x32 hash (64
    random bits) on each entry; on a CPU that hashing is most of a dropout GNN's step (GCN on
    2,708 nodes x 500 features: about three quarters, benchmarks/gnn_vs_pyg.py). Here each hash
    gives four entries 16 bits each, a quarter of the hashing. Entry i takes 16 bits of the
    hash of counter i // 4 (the flat index), so an array padded with more rows (more nodes) has
    the same mask on its first rows. Keys of another PRNG implementation than threefry2x32
    fall back to jax.random.bernoulli with `keep` itself."""
    from jax.extend.random import threefry2x32_p
    n = math.prod(shape)
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        words = (jax.random.key_data(key) if str(jax.random.key_impl(key)) == "threefry2x32"
                 else None)
    else:  # a raw uint32 key: threefry's has two words
        words = key if key.shape == (2,) else None
    if words is None or n >= 4 * 2**32:
        return jax.random.bernoulli(key, keep, shape), 1.0 / keep
    threshold = max(round(keep * 2**16), 1)
    if threshold >= 2**16:
        return jnp.ones(shape, bool), 1.0
    counts = jnp.arange(-(-n // 4), dtype=jnp.uint32)
    hi, lo = threefry2x32_p.bind(words[0], words[1], jnp.zeros_like(counts), counts)
    bits = jax.lax.bitcast_convert_type(jnp.stack([hi, lo], -1), jnp.uint16).reshape(-1)
    return bits[:n].reshape(shape) < jnp.uint16(threshold), 2**16 / threshold


class Dropout(nn.Module):
    """Inverted dropout as flax's nn.Dropout (`rate`, `deterministic`, the 'dropout' rng), its
    mask from `keep_mask`: 16 random bits an entry, a quarter of the hashing."""
    rate: float
    deterministic: bool = False

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        if self.deterministic or self.rate == 0.0:
            return x
        if self.rate >= 1.0:
            return jnp.zeros_like(x)
        mask, scale = keep_mask(self.make_rng("dropout"), 1.0 - self.rate, x.shape)
        return jnp.where(mask, x * jnp.asarray(scale, x.dtype), jnp.zeros_like(x))


def _mlp(x: jax.Array, widths: Sequence[int], act: Callable, prefix: str) -> jax.Array:
    """Dense layers {prefix}_0, {prefix}_1, ... with `act` between them (none after the last).
    Called inside a compact method, so the layers belong to the caller."""
    for i, width in enumerate(widths):
        x = act(x) if i else x
        x = nn.Dense(width, name=f"{prefix}_{i}")(x)
    return x


# --- layers --------------------------------------------------------------------------------------

class GCNConv(nn.Module):
    """Graph convolution (Kipf & Welling 2017): h [N, F_in] -> [N, features],

        h'_i = sum_{j -> i, and j = i} h_j W / sqrt(d_i d_j) + b,   d_i = in-degree of i + 1,

    i.e. D^-1/2 (A + I) D^-1/2 h W + b, the degree counted over real edges (module docstring:
    self loops). Parameters: lin/kernel [F_in, features] (PyG's lin.weight transposed), bias
    [features]. Padding nodes have degree 0 and output b."""
    features: int
    use_bias: bool = True

    @nn.compact
    def __call__(self, graph: Graph, h: jax.Array, train: bool = False) -> jax.Array:
        del train  # nothing random
        n = graph.num_nodes
        s, r, m = self_looped(graph)
        deg = jax.ops.segment_sum(m.astype(h.dtype), r, n)
        # real nodes have deg >= 1 (their self loop); maximum keeps rsqrt finite for padding
        norm = jnp.where(deg > 0, jax.lax.rsqrt(jnp.maximum(deg, 1.0)), 0.0)
        # transform before propagating, as PyG: F_out <= F_in usually, fewer numbers to move
        x = nn.Dense(self.features, use_bias=False, kernel_init=glorot, name="lin")(h)
        out = aggregate((norm[s] * norm[r])[:, None] * x[s], r, m, n)
        if self.use_bias:
            out = out + self.param("bias", nn.initializers.zeros, (self.features,))
        return out


class GATConv(nn.Module):
    """Graph attention (Velickovic et al. 2018), `heads` heads of `features` each:
    h [N, F_in] -> [N, heads * features] (concat) or [N, features] (the heads' mean).

        x = h W  (per head [N, heads, features]),
        e_ij = leaky_relu(a_src . x_j + a_dst . x_i)  for each edge j -> i (and i -> i),
        alpha_ij = softmax of e_ij over the in-edges of i (segment_softmax), dropout on alpha,
        h'_i = sum_j alpha_ij x_j, heads concatenated or averaged, + b.

    Parameters: lin/kernel [F_in, heads * features] (PyG's lin.weight transposed), att_src and
    att_dst [heads, features] (PyG's [1, heads, features]), bias [heads * features] or
    [features]. Dropout on the attention coefficients draws from the 'dropout' rng when `train`.
    Without self loops a node with no in-edges outputs b."""
    features: int
    heads: int = 1
    concat: bool = True
    negative_slope: float = 0.2
    dropout: float = 0.0
    add_self_loops: bool = True
    use_bias: bool = True

    @nn.compact
    def __call__(self, graph: Graph, h: jax.Array, train: bool = False) -> jax.Array:
        n, heads, c = graph.num_nodes, self.heads, self.features
        if self.add_self_loops:
            s, r, m = self_looped(graph)
        else:
            s, r, m = graph.senders, graph.receivers, real_edges(graph)
        x = nn.Dense(heads * c, use_bias=False, kernel_init=glorot, name="lin")(h)
        x = x.reshape(n, heads, c)
        # a . [x_j || x_i] split into two per-node scores: N dot products, not E
        src = (x * self.param("att_src", glorot, (heads, c))).sum(-1)  # [N, heads]
        dst = (x * self.param("att_dst", glorot, (heads, c))).sum(-1)
        logits = nn.leaky_relu(src[s] + dst[r], self.negative_slope)  # [E', heads]
        alpha = segment_softmax(logits, r, n, m)
        if self.dropout > 0:
            alpha = Dropout(self.dropout, deterministic=not train)(alpha)
        out = aggregate(alpha[..., None] * x[s], r, m, n)  # [N, heads, c]
        out = out.reshape(n, heads * c) if self.concat else out.mean(axis=1)
        if self.use_bias:
            out = out + self.param("bias", nn.initializers.zeros, out.shape[-1:])
        return out


class GINConv(nn.Module):
    """Graph isomorphism network layer (Xu et al. 2019): h [N, F_in] -> [N, features[-1]],

        h'_i = MLP((1 + eps) h_i + sum_{j -> i} h_j),

    the MLP's Dense layers mlp_0, mlp_1, ... of widths `features` with `activation` between them
    (none after the last; PyG's GINConv(nn, train_eps=True) with nn = Linear, ReLU, Linear).
    eps: the parameter 'eps' (initialised to eps_init) when learn_eps, else the constant
    eps_init (GIN-0 with 0)."""
    features: Sequence[int]
    learn_eps: bool = True
    eps_init: float = 0.0
    activation: str = "relu"

    @nn.compact
    def __call__(self, graph: Graph, h: jax.Array, train: bool = False) -> jax.Array:
        del train
        act = ACTIVATIONS[one_of(self.activation, "model.activation", ACTIVATIONS)]
        summed = aggregate(h[graph.senders], graph.receivers, real_edges(graph), graph.num_nodes)
        eps = (self.param("eps", nn.initializers.constant(self.eps_init), ())
               if self.learn_eps else self.eps_init)
        return _mlp((1.0 + eps) * h + summed, self.features, act, "mlp")


class MPNNConv(nn.Module):
    """Message passing with edge features (Gilmer et al. 2017, simplest form):
    h [N, F_in], graph.edges [E, D] (D may be 0) -> [N, features],

        m_ij = MLP_message([h_j, h_i, e_ji])   for each edge j -> i,
        h'_i = MLP_update([h_i, sum_j m_ij]),

    MLP_message: `mlp_layers` Dense layers message_k of width `hidden` (default: features);
    MLP_update: update_k, `mlp_layers - 1` of width `hidden`, then one of `features`;
    `activation` between layers, none after the last. A node without in-edges aggregates 0."""
    features: int
    mlp_layers: int = 2
    hidden: int | None = None
    activation: str = "relu"

    @nn.compact
    def __call__(self, graph: Graph, h: jax.Array, train: bool = False) -> jax.Array:
        del train
        act = ACTIVATIONS[one_of(self.activation, "model.activation", ACTIVATIONS)]
        width = self.hidden or self.features
        s, r = graph.senders, graph.receivers
        inputs = jnp.concatenate([h[s], h[r], graph.edges.astype(h.dtype)], axis=-1)
        messages = _mlp(inputs, (width,) * self.mlp_layers, act, "message")
        summed = aggregate(messages, r, real_edges(graph), graph.num_nodes)
        widths = (width,) * (self.mlp_layers - 1) + (self.features,)
        return _mlp(jnp.concatenate([h, summed], axis=-1), widths, act, "update")


# --- readouts ------------------------------------------------------------------------------------

def readout(graph: Graph, h: jax.Array, kind: str) -> jax.Array:
    """h [N, F] pooled over each graph's real nodes -> [G, F]: 'sum', 'mean' or 'max'. Padding
    nodes are left out; a graph without real nodes (padding) gives 0."""
    one_of(kind, "model.readout", READOUTS)
    mask, g = _expand(graph.node_mask, h), graph.num_graphs
    if kind == "max":
        top = jax.ops.segment_max(jnp.where(mask, h, -jnp.inf), graph.node_graph, g)
        return jnp.where(_nodes_per_graph(graph)[:, None] > 0, top, 0.0)
    total = jax.ops.segment_sum(jnp.where(mask, h, 0.0), graph.node_graph, g)
    if kind == "sum":
        return total
    return total / jnp.maximum(_nodes_per_graph(graph), 1.0)[:, None]


def _nodes_per_graph(graph: Graph) -> jax.Array:
    """[G] float: real nodes per graph, counted from the mask (what the readouts left in)."""
    return jax.ops.segment_sum(graph.node_mask.astype(jnp.float32), graph.node_graph,
                               graph.num_graphs)


class AttentionReadout(nn.Module):
    """Gated attention pooling (Li et al. 2016; PyG's AttentionalAggregation):
    h [N, F] -> [G, features],

        score_v = gate(h_v)  (Dense to 1),  a_v = softmax of score_v over its graph's real nodes,
        out_g = sum_v a_v proj(h_v)  (proj: Dense to features).

    A graph without real nodes gives 0."""
    features: int

    @nn.compact
    def __call__(self, graph: Graph, h: jax.Array) -> jax.Array:
        score = nn.Dense(1, name="gate")(h)  # [N, 1]
        weight = segment_softmax(score, graph.node_graph, graph.num_graphs, graph.node_mask)
        values = nn.Dense(self.features, name="proj")(h)
        return aggregate(weight * values, graph.node_graph, graph.node_mask, graph.num_graphs)


# --- the model -----------------------------------------------------------------------------------

class GNN(nn.Module):
    """graph (a dlcore.graphs.Graph, nodes [N, F]) -> node outputs [N, num_outputs] (readout
    'none') or graph outputs [G, num_outputs]; padding nodes and graphs output 0.

    One conv layer per entry of `hidden` (conv_0, conv_1, ...), each: dropout on its input,
    conv, norm ('layer', or 'batch' over the real nodes only), activation, then with `residual`
    the layer's input added where the widths agree. Then
      node level (readout 'none'): one more conv, conv_out, to num_outputs (the paper models:
        GCN with hidden [16] is Kipf & Welling's two-layer GCN);
      graph level: the readout over each graph's real nodes, then dropout, the Dense layers of
        `dense` (activation, dropout) and the Dense `head` to num_outputs.
    conv 'gat': every width in `hidden` is the total of `heads` concatenated heads of
      width / heads features; conv_out averages its `heads` heads (as the GAT paper's output
      layer); attention_dropout acts on the attention coefficients.
    conv 'gin': the MLP of each layer has mlp_layers Dense layers of the layer's width (conv_out:
      of its input's width, the last one num_outputs); eps is learnt with eps_learnable, else
      0 (GIN-0).
    conv 'mpnn': message and update MLPs of mlp_layers layers of the layer's width (conv_out: of
      its input's width, the update's last one num_outputs); reads graph.edges.
    Parameters: conv_i, norm_i, conv_out (node level) or readout (attention), dense_j, head.
    """
    num_outputs: int
    conv: str = "gcn"
    hidden: Sequence[int] = (64, 64)
    heads: int = 8
    activation: str = "relu"
    dropout: float = 0.0
    attention_dropout: float = 0.0
    residual: bool = False
    norm: str = "none"
    eps_learnable: bool = True
    mlp_layers: int = 2
    readout: str = "none"
    dense: Sequence[int] = ()

    @nn.compact
    def __call__(self, graph: Graph, train: bool = False) -> jax.Array:
        validate({k: getattr(self, k) for k in defaults()}, self.num_outputs)
        act = ACTIVATIONS[self.activation]
        drop = lambda z: Dropout(self.dropout, deterministic=not train)(z) if self.dropout else z
        h = graph.nodes
        for i, width in enumerate(self.hidden):
            z = self._conv(width, h.shape[-1], False, f"conv_{i}")(graph, drop(h), train)
            z = act(self._norm(z, graph, train, f"norm_{i}"))
            h = h + z if self.residual and z.shape == h.shape else z
            self.sow("intermediates", f"layer_{i}", h)  # free unless apply(mutable=...) asks
        if self.readout == "none":
            self.sow("intermediates", "embedding", h)  # what `dlcore report` draws
            out = self._conv(self.num_outputs, h.shape[-1], True, "conv_out")(graph, drop(h),
                                                                              train)
            return jnp.where(graph.node_mask[:, None], out, 0.0)
        z = (AttentionReadout(h.shape[-1], name="readout")(graph, h)
             if self.readout == "attention" else readout(graph, h, self.readout))
        self.sow("intermediates", "embedding", z)  # each graph's representation, as drawn
        z = drop(z)
        for j, width in enumerate(self.dense):
            z = drop(act(nn.Dense(width, name=f"dense_{j}")(z)))
        out = nn.Dense(self.num_outputs, name="head")(z)
        return jnp.where((_nodes_per_graph(graph) > 0)[:, None], out, 0.0)

    def _conv(self, width: int, fan_in: int, last: bool, name: str) -> nn.Module:
        """The layer conv_i (or conv_out, `last`) of `width` outputs."""
        if self.conv == "gcn":
            return GCNConv(width, name=name)
        if self.conv == "gat":
            # hidden: heads concatenated to `width`; output: `width` per head, heads averaged
            return GATConv(width if last else width // self.heads, self.heads, concat=not last,
                           dropout=self.attention_dropout, name=name)
        if self.conv == "gin":
            inner = fan_in if last else width  # conv_out's MLP stays wide until its last layer
            return GINConv((inner,) * (self.mlp_layers - 1) + (width,),
                           learn_eps=self.eps_learnable, activation=self.activation, name=name)
        return MPNNConv(width, self.mlp_layers, hidden=fan_in if last else None,
                        activation=self.activation, name=name)

    def _norm(self, z: jax.Array, graph: Graph, train: bool, name: str) -> jax.Array:
        if self.norm == "layer":
            return nn.LayerNorm(name=name)(z)
        if self.norm == "batch":
            # statistics over real nodes only: padding would shift them otherwise
            return nn.BatchNorm(use_running_average=not train, momentum=0.9, name=name)(
                z, mask=graph.node_mask[:, None])
        return z


# --- the `gnn` family: its config section --------------------------------------------------------

def defaults() -> dict:
    """The `model` section's keys (besides name and input_shape); GNN says what each does."""
    return {"conv": "gcn", "hidden": (64, 64), "heads": 8, "activation": "relu",
            "dropout": 0.0, "attention_dropout": 0.0, "residual": False, "norm": "none",
            "eps_learnable": True, "mlp_layers": 2, "readout": "none", "dense": ()}


def validate(cfg: dict, num_outputs: int) -> dict:
    """cfg's values checked (ConfigError naming model.<key>), lists as tuples."""
    from dlcore.models.mlp import check_dropout, positive_ints
    one_of(cfg["conv"], "model.conv", CONVS)
    hidden = positive_ints(cfg, "hidden", allow_empty=True)
    heads = cfg["heads"]
    check(type(heads) is int and 0 < heads < 2**31, "model.heads",
          f"must be a positive integer; got {heads!r}")
    if cfg["conv"] == "gat":
        bad = [w for w in hidden if w % heads]
        check(not bad, "model.heads", f"{heads} heads do not divide the hidden width(s) {bad}: "
              "a GAT layer concatenates heads of hidden / heads features each")
    one_of(cfg["activation"], "model.activation", ACTIVATIONS)
    check_dropout(cfg["dropout"])
    rate = cfg["attention_dropout"]
    check(type(rate) in (int, float) and 0.0 <= rate < 1.0, "model.attention_dropout",
          f"must be in [0, 1); got {rate!r}")
    for key in ("residual", "eps_learnable"):
        check(type(cfg[key]) is bool, f"model.{key}", f"must be true or false; got {cfg[key]!r}")
    one_of(cfg["norm"], "model.norm", NORMS)
    layers = cfg["mlp_layers"]
    check(type(layers) is int and 0 < layers <= 64, "model.mlp_layers",
          f"must be a positive integer (Dense layers in a GIN or MPNN MLP); got {layers!r}")
    one_of(cfg["readout"], "model.readout", ("none", *READOUTS, "attention"))
    dense = positive_ints(cfg, "dense", allow_empty=True)
    check(cfg["readout"] != "none" or not dense, "model.dense",
          f"the head's hidden layers {list(dense)} follow a readout; with readout 'none' (node "
          "outputs) set dense to [] or choose a readout")
    check(type(num_outputs) is int and num_outputs > 0, "model.num_outputs",
          f"a GNN needs at least one output; got {num_outputs!r}")
    return {**cfg, "hidden": hidden, "dense": dense}


def build(cfg: dict, input_shape: tuple, num_outputs: int) -> GNN:
    """The GNN of a `model` section (input_shape: one node's features); ConfigError for any
    impossible value."""
    del input_shape  # the layers take any node feature width
    cfg = validate({k: cfg[k] for k in defaults()}, int(num_outputs))
    return GNN(num_outputs=int(num_outputs), **cfg)
