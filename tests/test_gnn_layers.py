"""dlcore.models.gnn: each layer and readout against dense-adjacency NumPy references, padded ==
unpadded (pad, pad_to_bucket, stack + from_slots), finite gradients with padding and isolated
nodes, segment_softmax, PyTorch Geometric with copied weights, and the family's config checks.

Small graphs only; every jitted function is compiled once per shape and reused."""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dlcore import graphs as G
from dlcore import models
from dlcore.config import ConfigError
from dlcore.models import gnn

F, D = 3, 2  # node and edge feature widths


def _graphs():
    """Three graphs: one with a repeated edge and a self loop, one with an isolated node (no
    edges in or out), one plain; random features."""
    rng = np.random.default_rng(0)
    specs = [(5, [0, 1, 2, 3, 4, 1, 2, 3], [1, 2, 3, 4, 0, 0, 2, 1]),  # 2->2 loop, 3->1 also
             (4, [0, 1, 1, 3], [1, 0, 3, 0]),                                # node 2 isolated
             (3, [0, 1, 2, 0, 0], [1, 2, 0, 2, 1])]                      # 0->1 twice
    out = []
    for i, (n, s, r) in enumerate(specs):
        out.append(G.graph(rng.normal(size=(n, F)), np.array(s), np.array(r),
                           edges=rng.normal(size=(len(s), D)), name=f"g{i}"))
    return out


SINGLES = _graphs()
BATCH = G.batch(SINGLES)                                 # 12 nodes, 17 edges, 3 graphs


def garbage(g: G.Graph) -> G.Graph:
    """g with large features on its padding nodes and edges: any leak would show."""
    g = jax.tree.map(np.asarray, g)
    return g._replace(nodes=np.where(g.node_mask[:, None], g.nodes, 1e2).astype(np.float32),
                      edges=np.where(g.edge_mask[:, None], g.edges, -1e2).astype(np.float32))


PADDED = garbage(G.pad_to_bucket(BATCH))                 # 16 nodes, 32 edges, 4 graphs
PADDED_MORE = garbage(G.pad(BATCH, 20, 24, 6))           # padding nodes in the last graph
SLOTS = garbage(jax.jit(G.from_slots)(G.stack(SINGLES, max_nodes=6, max_edges=9)))
# where each real node of BATCH sits in SLOTS (graph k's block starts at k * max_nodes)
SLOT_INDEX = np.concatenate([k * 6 + np.arange(g.num_nodes) for k, g in enumerate(SINGLES)])

LAYERS = {
    "gcn": gnn.GCNConv(4),
    "gat_concat": gnn.GATConv(3, heads=2),
    "gat_mean": gnn.GATConv(3, heads=2, concat=False),
    "gat_no_loops": gnn.GATConv(3, heads=2, add_self_loops=False),
    "gin": gnn.GINConv((6, 4)),
    "gin_fixed_eps": gnn.GINConv((6, 4), learn_eps=False, eps_init=0.5),
    "mpnn": gnn.MPNNConv(4, mlp_layers=2, hidden=5),
}


def random_variables(init, *args, seed: int = 1):
    """Variables of init(key, *args) with every parameter drawn anew (biases and eps too, which
    init sets to 0) and batch statistics 0 and 1: from shapes alone (jax.eval_shape traces,
    nothing compiles; an eager init would compile every operation once, seconds)."""
    shapes = jax.eval_shape(init, jax.random.key(0), *args)
    rng = np.random.default_rng(seed)
    draw = lambda path, a: (np.full(a.shape, float(path[-1].key == "var"), np.float32)
                            if path[0].key == "batch_stats"
                            else (0.5 * rng.normal(size=a.shape)).astype(np.float32))
    return jax.tree_util.tree_map_with_path(draw, shapes)


@functools.lru_cache(maxsize=None)
def layer_params(name: str):
    return random_variables(LAYERS[name].init, BATCH, BATCH.nodes)


@functools.lru_cache(maxsize=None)
def jitted(name: str):
    return jax.jit(LAYERS[name].apply)


def run_layer(name: str, g: G.Graph) -> np.ndarray:
    return np.asarray(jitted(name)(layer_params(name), g, g.nodes))


def np_params(name):
    return jax.tree.map(np.asarray, layer_params(name))["params"]


# --- NumPy references on the dense adjacency ---------------------------------------------------

def adjacency(g, self_loops: bool) -> np.ndarray:
    """A[r, s]: real edges s -> r; with self_loops the diagonal is replaced by I (PyG's rule)."""
    a = np.array(G.dense_adjacency(g), np.float64)
    if self_loops:
        np.fill_diagonal(a, 0.0)
        a += np.diag(np.asarray(g.node_mask, np.float64))
    return a


def relu(x):
    return np.maximum(x, 0.0)


def ref_gcn(p, g):
    a = adjacency(g, True)
    d = a.sum(1) ** -0.5
    return (d[:, None] * a * d[None, :]) @ (g.nodes @ p["lin"]["kernel"]) + p["bias"]


def ref_gat(p, g, concat, loops=True):
    heads, c = p["att_src"].shape
    x = (g.nodes @ p["lin"]["kernel"]).reshape(-1, heads, c)
    src, dst = (x * p["att_src"]).sum(-1), (x * p["att_dst"]).sum(-1)
    e = dst[:, None, :] + src[None, :, :]                           # [i, j, heads]
    e = np.where(e > 0, e, 0.2 * e)
    w = adjacency(g, loops)[:, :, None] * np.exp(e)                # repeated edges count twice
    total = w.sum(1, keepdims=True)
    alpha = w / np.where(total > 0, total, 1.0)
    out = np.einsum("ijh,jhc->ihc", alpha, x)
    out = out.reshape(len(x), -1) if concat else out.mean(1)
    return out + p["bias"]


def ref_mlp(p, prefix, x, layers):
    for i in range(layers):
        x = relu(x) if i else x
        x = x @ p[f"{prefix}_{i}"]["kernel"] + p[f"{prefix}_{i}"]["bias"]
    return x


def ref_gin(p, g, eps=None):
    eps = p["eps"] if eps is None else eps
    return ref_mlp(p, "mlp", (1 + eps) * g.nodes + adjacency(g, False) @ g.nodes, 2)


def ref_mpnn(p, g):
    h = np.asarray(g.nodes, np.float64)
    summed = np.zeros((len(h), 5))
    for s, r, e in zip(g.senders, g.receivers, g.edges):  # one edge at a time: no segments
        summed[r] += ref_mlp(p, "message", np.concatenate([h[s], h[r], e]), 2)
    return ref_mlp(p, "update", np.concatenate([h, summed], 1), 2)


REFERENCES = {
    "gcn": ref_gcn,
    "gat_concat": lambda p, g: ref_gat(p, g, True),
    "gat_mean": lambda p, g: ref_gat(p, g, False),
    "gat_no_loops": lambda p, g: ref_gat(p, g, True, loops=False),
    "gin": ref_gin,
    "gin_fixed_eps": lambda p, g: ref_gin(p, g, eps=0.5),
    "mpnn": ref_mpnn,
}


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_layer_matches_dense_reference(name):
    want = REFERENCES[name](np_params(name), BATCH)
    np.testing.assert_allclose(run_layer(name, BATCH), want, rtol=1e-5, atol=1e-5)
    if name == "gat_no_loops":  # the isolated node has no in-edges: it outputs the bias
        np.testing.assert_allclose(run_layer(name, BATCH)[5 + 2], np_params(name)["bias"],
                                   atol=1e-6)


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_layer_padded_equals_unpadded(name):
    want = run_layer(name, BATCH)
    for g in (PADDED, PADDED_MORE):
        out = run_layer(name, g)
        assert np.all(np.isfinite(out))
        np.testing.assert_allclose(out[:BATCH.num_nodes], want, rtol=1e-5, atol=1e-5)
    out = run_layer(name, SLOTS)
    assert np.all(np.isfinite(out))
    np.testing.assert_allclose(out[SLOT_INDEX], want, rtol=1e-5, atol=1e-5)


def test_gin_eps_is_a_parameter_only_when_learnt():
    assert "eps" in np_params("gin") and "eps" not in np_params("gin_fixed_eps")


# --- readouts ------------------------------------------------------------------------------------

H = np.random.default_rng(3).normal(size=(BATCH.num_nodes, 4)).astype(np.float32)
ATTENTION = gnn.AttentionReadout(5)
ATTENTION_PARAMS = random_variables(ATTENTION.init, BATCH, H, seed=2)


KINDS = ("sum", "mean", "max", "attention")


def pool(g, h, kind):
    if kind == "attention":
        return ATTENTION.apply(ATTENTION_PARAMS, g, h)
    return gnn.readout(g, h, kind)


@jax.jit
def pool_all(g, h):
    """Every readout, and the gradients of their squares' sums: one compilation per shape."""
    out = {k: pool(g, h, k) for k in KINDS}
    grads = {k: jax.grad(lambda h, k=k: (pool(g, h, k) ** 2).sum())(h) for k in KINDS}
    return out, grads


def ref_readout(g, h, kind):
    p = jax.tree.map(np.asarray, ATTENTION_PARAMS)["params"]
    out = []
    for k in range(g.num_graphs):
        x = h[np.asarray(g.node_graph) == k]
        if kind == "attention":
            score = (x @ p["gate"]["kernel"] + p["gate"]["bias"])[:, 0]
            a = np.exp(score - score.max())
            x = (a / a.sum())[:, None] * (x @ p["proj"]["kernel"] + p["proj"]["bias"])
            kind_ = "sum"
        else:
            kind_ = kind
        out.append({"sum": x.sum(0), "mean": x.mean(0), "max": x.max(0)}[kind_])
    return np.stack(out)


@functools.lru_cache(maxsize=None)
def pooled(which: str):
    """({kind: [G, F]}, {kind: d/dh [N, F]}) on BATCH (H), or on a padding of it with large
    values on the padding nodes (which must not count)."""
    g = {"batch": BATCH, "padded": PADDED, "padded_more": PADDED_MORE, "slots": SLOTS}[which]
    index = SLOT_INDEX if which == "slots" else np.arange(BATCH.num_nodes)
    h = np.full((g.num_nodes, H.shape[1]), -1e3 if which == "slots" else 1e3, np.float32)
    h[index] = H
    return jax.tree.map(np.asarray, pool_all(g, h))


@pytest.mark.parametrize("kind", KINDS)
def test_readout_matches_reference_and_ignores_padding(kind):
    want = ref_readout(BATCH, H, kind)
    np.testing.assert_allclose(pooled("batch")[0][kind], want, rtol=1e-5, atol=1e-5)
    for which in ("padded", "padded_more", "slots"):
        out, grads = pooled(which)
        out, grad = out[kind], grads[kind]
        np.testing.assert_allclose(out[:3], want, rtol=1e-5, atol=1e-5)
        assert np.all(out[3:] == 0.0)  # padding graphs: 0, never -inf or NaN
        # gradients: finite, and 0 on padding nodes
        real = SLOT_INDEX if which == "slots" else np.arange(BATCH.num_nodes)
        assert np.all(np.isfinite(grad)) and np.all(np.delete(grad, real, axis=0) == 0.0)
        np.testing.assert_allclose(grad[real], pooled("batch")[1][kind], rtol=1e-5, atol=1e-5)


def test_readout_refuses_an_unknown_kind():
    with pytest.raises(ConfigError, match=r"model\.readout"):
        gnn.readout(BATCH, H, "median")


# --- segment_softmax -----------------------------------------------------------------------------

@jax.jit
def softmax_and_grad(logits, segments, mask):
    out = gnn.segment_softmax(logits, segments, 5, mask)
    weights = jnp.arange(logits.size, dtype=logits.dtype).reshape(logits.shape)
    grad = jax.grad(lambda x: (gnn.segment_softmax(x, segments, 5, mask) * weights).sum())
    return out, jax.ops.segment_sum(out, segments, 5), grad(logits)


def test_segment_softmax_sums_to_one_and_is_stable():
    segments = np.array([0, 0, 0, 2, 2, 3, 3, 1])  # segment 4 has no entries
    mask = np.array([True, True, True, True, True, False, False, False])  # 3, 1: masked only
    logits = np.array([[1e4, 0.0], [1e4 - 1, 1.0], [-1e4, 2.0], [5e3, -1e4], [5e3, -1e4],
                       [1e30, 3.0], [0.0, 0.0], [7.0, 7.0]], np.float32)
    out, sums, grad = map(np.asarray, softmax_and_grad(logits, segments, mask))
    assert np.all(np.isfinite(out)) and np.all(np.isfinite(grad))  # 1e30 behind a mask too
    np.testing.assert_allclose(sums[[0, 2]], 1.0, rtol=1e-6)
    assert np.all(sums[[1, 3, 4]] == 0.0) and np.all(out[~mask] == 0.0)
    assert np.all(grad[~mask] == 0.0)
    e = np.exp(np.array([0.0, -1.0]))
    np.testing.assert_allclose(out[:2, 0], e / e.sum(), rtol=1e-6)
    np.testing.assert_allclose(out[3:5], 0.5, rtol=1e-6)
    # logits [E] (no head axis) work the same
    out1, _, _ = softmax_and_grad(logits[:, 1], segments, mask)
    np.testing.assert_allclose(out1, out[:, 1], rtol=1e-6)


# --- gradients -----------------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(LAYERS))
def test_layer_gradients_finite_with_padding_and_isolated_node(name):
    layer = LAYERS[name]

    def loss(params, h, g):
        out = layer.apply(params, g, h)
        return jnp.where(g.node_mask[:, None], out ** 2, 0.0).sum()

    grads = jax.jit(lambda p, gs: [jax.grad(loss, argnums=(0, 1))(p, g.nodes, g) for g in gs])
    for g, (gp, gh) in zip((PADDED, SLOTS), grads(layer_params(name), (PADDED, SLOTS))):
        assert all(np.all(np.isfinite(a)) for a in jax.tree.leaves((gp, gh)))
        # padding nodes never reach a real node's output
        assert np.all(np.asarray(gh)[~g.node_mask] == 0.0)


# --- PyTorch Geometric with copied weights ------------------------------------------------------

def _torch(a):
    import torch
    return torch.tensor(np.asarray(a, np.float32))


@pytest.mark.parametrize("name", ["gcn", "gat_concat", "gat_mean", "gin"])
def test_matches_pytorch_geometric(name):
    torch = pytest.importorskip("torch")
    pyg = pytest.importorskip("torch_geometric.nn")
    p = np_params(name)
    x = _torch(BATCH.nodes)
    edge_index = torch.tensor(np.stack([BATCH.senders, BATCH.receivers]).astype(np.int64))
    if name == "gcn":
        conv = pyg.GCNConv(F, 4)
        conv.lin.weight.data = _torch(p["lin"]["kernel"].T)
        conv.bias.data = _torch(p["bias"])
    elif name.startswith("gat"):
        conv = pyg.GATConv(F, 3, heads=2, concat=name == "gat_concat")
        conv.lin.weight.data = _torch(p["lin"]["kernel"].T)
        conv.att_src.data = _torch(p["att_src"][None])
        conv.att_dst.data = _torch(p["att_dst"][None])
        conv.bias.data = _torch(p["bias"])
    else:
        mlp = torch.nn.Sequential(torch.nn.Linear(F, 6), torch.nn.ReLU(), torch.nn.Linear(6, 4))
        conv = pyg.GINConv(mlp, train_eps=True)  # resets mlp: copy the weights after
        for i, lin in ((0, mlp[0]), (1, mlp[2])):
            lin.weight.data = _torch(p[f"mlp_{i}"]["kernel"].T)
            lin.bias.data = _torch(p[f"mlp_{i}"]["bias"])
        conv.eps.data = _torch(p["eps"]).reshape(conv.eps.shape)
    conv.eval()
    with torch.no_grad():
        want = conv(x, edge_index).numpy()
    np.testing.assert_allclose(run_layer(name, BATCH), want, rtol=1e-5, atol=1e-5)


# --- the family ----------------------------------------------------------------------------------

def family_cfg(**kw):
    return {**models.defaults("gnn"), "hidden": (8, 8), "heads": 2, **kw}


# one model per conv, between them every norm and both output levels
FAMILY = {"gcn": dict(readout="none", norm="batch", residual=True),
          "gat": dict(readout="none", norm="layer"),
          "gin": dict(readout="sum", norm="batch"),
          "mpnn": dict(readout="max", norm="none", residual=True),
          "dropout": dict(conv="gat", readout="attention", dropout=0.5, attention_dropout=0.5)}


@functools.lru_cache(maxsize=None)
def family_model(which: str):
    cfg = family_cfg(**{"conv": which, **FAMILY[which]})
    model = models.build({**cfg, "name": "gnn"}, (F,), 3, example=PADDED)
    return model, random_variables(model.init, PADDED), jax.jit(model.apply, static_argnums=2)


@pytest.mark.parametrize("which", gnn.CONVS)
def test_family_padded_equals_unpadded_and_gradients_finite(which):
    model, variables, apply = family_model(which)
    node_level = FAMILY[which]["readout"] == "none"
    # train: batch norm's statistics over real nodes only (no dropout here)
    want, _ = apply(variables, BATCH, True, jax.random.key(1))
    assert want.shape == ((BATCH.num_nodes, 3) if node_level else (3, 3))
    for g, index in ((PADDED, np.arange(len(want))), (SLOTS, SLOT_INDEX)):
        out, _ = apply(variables, g, True, jax.random.key(1))
        out = np.asarray(out)
        np.testing.assert_allclose(out[index] if node_level else out[:3], want, rtol=1e-4,
                                   atol=1e-5)
        pad = ~g.node_mask if node_level else np.arange(len(out)) >= 3
        assert np.all(np.isfinite(out)) and np.all(out[pad] == 0.0)  # padding outputs 0
    check_gradients(model, variables)


def check_gradients(model, variables):
    def loss(params):
        out, _ = model.apply({**variables, "params": params}, PADDED, True, jax.random.key(3))
        return (out ** 2).sum()
    grads = jax.jit(jax.grad(loss))(variables["params"])
    assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grads))


def test_family_dropout_only_in_training():
    model, variables, apply = family_model("dropout")
    a, _ = apply(variables, PADDED, False, None)
    b, _ = apply(variables, PADDED, False, None)
    c, _ = apply(variables, PADDED, True, jax.random.key(2))
    assert a.shape == (PADDED.num_graphs, 3) and np.array_equal(a, b) and not np.allclose(a, c)
    check_gradients(model, variables)


def test_family_parameter_names_and_gat_widths():
    _, variables, _ = family_model("gat")
    p = variables["params"]
    assert p["conv_0"]["lin"]["kernel"].shape == (F, 8)      # 2 heads of 4, concatenated
    assert p["conv_1"]["att_src"].shape == (2, 4)
    assert p["conv_out"]["lin"]["kernel"].shape == (8, 2 * 3)  # 2 heads of 3, averaged
    assert p["conv_out"]["bias"].shape == (3,) and "norm_0" in p
    assert models.defaults("gnn") == {"name": "gnn", **gnn.defaults(), "input_shape": None}


@pytest.mark.parametrize("key,value,match", [
    ("conv", "gcnn", "model.conv"), ("hidden", (64, 0), "model.hidden"),
    ("hidden", "64", "model.hidden"), ("heads", 0, "model.heads"),
    ("readout", "avg", "model.readout"), ("norm", "batchnorm", "model.norm"),
    ("activation", "relux", "model.activation"), ("dropout", 1.0, "model.dropout"),
    ("attention_dropout", -0.1, "model.attention_dropout"), ("residual", "yes", "model.residual"),
    ("eps_learnable", 1, "model.eps_learnable"), ("mlp_layers", 0, "model.mlp_layers"),
    ("dense", (16,), "model.dense"), ("dense", (0,), "model.dense")])
def test_bad_config_values_name_their_key(key, value, match):
    with pytest.raises(ConfigError, match=match.replace(".", r"\.")):
        models.build({**family_cfg(), "name": "gnn", key: value}, (F,), 3, example=BATCH)


def test_gat_heads_must_divide_hidden_widths():
    cfg = {**family_cfg(conv="gat", hidden=(8, 6), heads=4), "name": "gnn"}
    with pytest.raises(ConfigError, match=r"model\.heads.*\[6\]"):
        models.build(cfg, (F,), 3, example=BATCH)
    models.build({**cfg, "conv": "gcn"}, (F,), 3, example=BATCH)  # only GAT splits into heads
