"""Sharding from logical axis names on 8 fake CPU devices (conftest.py): data parallel, FSDP, tensor
parallelism and both; each sharded GPT step equals the single-device step, the shardings are the
intended ones, FSDP cuts the compiled per-device state about 8x, and a sharded run through the loop
resumes exactly."""
import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

from dlcore import checkpoint, loop, optim, parallel
from dlcore.algorithms import lm
from dlcore.config import ConfigError
from dlcore.core import Data
from dlcore.data.text import language_spec

pytestmark = pytest.mark.timeout(300)

V, T, B = 16, 16, 16  # vocabulary, window, batch (divisible by the 8 devices)


def language_data() -> Data:
    """A random token stream as a character-level language source (dlcore.data.text's layout)."""
    tokens = np.random.default_rng(0).integers(0, V, 4000).astype(np.int32)
    val = tokens[-(8 * T + 1):]
    splits = {"train": {"tokens": tokens[:3000]},
              "validation": {"x": val[:-1].reshape(8, T), "y": val[1:].reshape(8, T)}}

    def sample(train, step, key):
        starts = jax.random.randint(jax.random.fold_in(key, step), (B,), 0,
                                    train["tokens"].shape[0] - T)
        idx = starts[:, None] + jnp.arange(T)
        return {"x": train["tokens"][idx], "y": train["tokens"][idx + 1]}
    return Data(splits, language_spec("abcdefghijklmnop", T, "char", "synthetic"), sample,
                evaluate_train=False)


def gpt(data, layers=1, width=32, heads=4, steps=10):
    cfg = {"model": {"name": "gpt", "layers": layers, "heads": heads, "width": width},
           "optim": optim.defaults(), "lm": lm.defaults()["lm"]}
    return lm.make(cfg, data, steps)


@pytest.fixture(scope="module")
def single():
    """The tiny GPT, its initial state, a batch, and one step on one device."""
    data = language_data()
    alg = gpt(data)
    state = jax.jit(alg.init)(jax.random.key(0))
    batch = data.sample(data.splits["train"], 0, jax.random.key(2))
    new, metrics = jax.jit(alg.step)(state, batch, jax.random.key(1))
    return alg, state, batch, new, metrics


QKV = {"replicate": P(), "fsdp": P("data"), "tensor": P(None, None, "model"),
       "fsdp+tensor": P("data", None, "model")}  # block 0's qkv kernel [embed, 3, heads, kv]


@pytest.mark.parametrize("strategy, model", [("replicate", 1), ("fsdp", 1), ("tensor", 4),
                                             ("fsdp+tensor", 2)])
def test_sharded_step_equals_single_device_step(single, strategy, model):
    alg, state, batch, want, want_metrics = single
    mesh = parallel.data_mesh(8, model)
    axes, rules = alg.state_axes(state), parallel.RULES[strategy]
    shardings = parallel.state_shardings(state, mesh, axes, rules)
    placed = parallel.shard_state(state, mesh, axes, rules)
    step = jax.jit(alg.step, out_shardings=(shardings, parallel.replicated(mesh)))
    got, metrics = step(placed, jax.device_put(batch, parallel.batch_sharding(mesh)),
                        jax.random.key(1))
    np.testing.assert_allclose(metrics["loss"], want_metrics["loss"], rtol=1e-5)
    # Adam's first update is lr * g / (|g| + eps): a gradient near eps turns the summation order
    # of the all-reduce into differences of a few 1e-6 (also for plain data parallelism)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-5)
    for a, s in zip(jax.tree.leaves(got), jax.tree.leaves(shardings)):  # kept by the step
        assert a.sharding.is_equivalent_to(s, a.ndim)

    qkv = got.params["block_0"]["attn"]["qkv_kernel"]  # [32, 3, 4, 8]
    mu = got.opt_state.inner_state[0].mu["block_0"]["attn"]["qkv_kernel"]  # Adam's, alike
    assert qkv.sharding.is_equivalent_to(NamedSharding(mesh, QKV[strategy]), 4)
    assert mu.sharding.is_equivalent_to(qkv.sharding, 4)
    data_ways = 8 // model if "fsdp" in strategy else 1
    model_ways = model if "tensor" in strategy else 1
    assert qkv.addressable_shards[0].data.shape == (32 // data_ways, 3, 4 // model_ways, 8)
    fc = got.params["block_0"]["mlp"]["fc_kernel"]  # [embed 32, mlp 128]
    assert fc.addressable_shards[0].data.shape == (32 // data_ways, 128 // model_ways)
    table = got.params["token_embedding"]  # [vocab 16, embed 32]: split by rows under fsdp
    assert table.addressable_shards[0].data.shape == (16 // data_ways, 32)
    assert got.step.sharding.is_fully_replicated  # the step counter, a scalar
    assert got.opt_state.hyperparams["learning_rate"].sharding.is_fully_replicated


def test_state_axes_mirror_parameters_and_replicate_the_rest(single):
    alg, state, *_ = single
    axes = alg.state_axes(jax.eval_shape(lambda: state))
    adam = axes.opt_state.inner_state[0]
    for tree in (axes.params, adam.mu, adam.nu):
        assert tree["block_0"]["attn"]["qkv_kernel"] == P("embed", None, "heads", "kv")
        assert tree["block_0"]["mlp"]["fc_kernel"] == P("embed", "mlp")
        assert tree["token_embedding"] == P("vocab", "embed")
    assert axes.step == P() and adam.count == P() and axes.opt_state.hyperparams["b1"] == P()
    # a leaf whose shape is not its parameter's (a factored statistic) is replicated
    fake = {"params": {"w": jnp.zeros((8, 4))}, "v_row": {"w": jnp.zeros((8,))}}
    got = parallel.state_axes(fake, {"w": P("embed", "mlp")}, params=fake["params"])
    assert got == {"params": {"w": P("embed", "mlp")}, "v_row": {"w": P()}}


def test_a_dimension_that_does_not_divide_falls_back():
    mesh = parallel.data_mesh(8)
    assert parallel.mesh_axes(P("embed", "mlp"), (96, 384), mesh, parallel.FSDP) == P("data", None)
    assert parallel.mesh_axes(P("embed", "mlp"), (100, 400), mesh, parallel.FSDP) == P(None, "data")
    # an embedding table is split along its rows, or kept whole: never along 'embed' (parallel.FSDP)
    assert parallel.mesh_axes(P("vocab", "embed"), (64, 256), mesh, parallel.FSDP) == P("data", None)
    assert parallel.mesh_axes(P("vocab", "embed"), (65, 256), mesh, parallel.FSDP) == P(None, None)
    assert parallel.mesh_axes(P("heads", "kv", "embed"), (6, 64, 98), parallel.data_mesh(8, 2),
                              parallel.RULES["fsdp+tensor"]) == P("model", "data", None)
    assert parallel.mesh_axes(P(), (3, 5), mesh, parallel.FSDP) == P(None, None)


def test_fsdp_cuts_the_compiled_per_device_state_eightfold():
    """Parameters + Adam state of a GPT whose matrices dominate (width 256): the compiled step's
    per-device argument bytes (the state, a batch and a key), replicated vs FSDP."""
    data = language_data()
    alg = gpt(data, layers=1, width=256)
    state = jax.eval_shape(alg.init, jax.random.key(0))
    batch = jax.eval_shape(data.sample, data.splits["train"], 0, jax.random.key(0))
    state_bytes = sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(state))
    mesh = parallel.data_mesh(8)
    sizes = {}
    for strategy in ("replicate", "fsdp"):
        shardings = parallel.state_shardings(state, mesh, alg.state_axes(state),
                                             parallel.RULES[strategy])
        abstract = jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                                state, shardings)
        b = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype,
                                                        sharding=parallel.batch_sharding(mesh)),
                         batch)
        compiled = jax.jit(alg.step, out_shardings=(shardings, parallel.replicated(mesh))).lower(
            abstract, b, jax.random.key(1)).compile()
        sizes[strategy] = compiled.memory_analysis().argument_size_in_bytes
    ratio = sizes["replicate"] / sizes["fsdp"]
    print(f"per-device state bytes: replicated {sizes['replicate']:,}, fsdp {sizes['fsdp']:,}, "
          f"ratio {ratio:.2f}")
    assert sizes["replicate"] >= state_bytes
    assert ratio > 6


def test_a_sharded_run_resumes_exactly(tmp_path, monkeypatch):
    """loop.train with FSDP over 8 devices: 3 steps, then resumed to 6, equals 6 uninterrupted
    steps bit for bit; the state stays sharded through the steps and the restore."""
    seen = []
    save = checkpoint.save

    def spy(mngr, t, tree, metrics=None):
        seen.append(tree["state"].params["block_0"]["attn"]["qkv_kernel"].sharding)
        return save(mngr, t, tree, metrics)
    monkeypatch.setattr(checkpoint, "save", spy)

    data = language_data()
    alg = gpt(data, steps=6)
    cfg = dict(steps=6, log_every=3, eval_every=6, checkpoint_every=3, plots=False, devices=8,
               sharding="fsdp")
    whole = loop.train(alg, data, cfg, tmp_path / "whole", progress=False)
    loop.train(alg, data, {**cfg, "steps": 3}, tmp_path / "resumed", progress=False)
    resumed = loop.train(alg, data, cfg, tmp_path / "resumed", progress=False)
    assert resumed["start_step"] == 3 and resumed["steps_run"] == 3
    assert resumed["metrics"] == whole["metrics"]
    trees = []
    for run in ("whole", "resumed"):
        with ocp.CheckpointManager((tmp_path / run / "checkpoints").resolve()) as m:
            trees.append(m.restore(6))
    leaves = [jax.tree.leaves(t["state"]) for t in trees]
    assert len(leaves[0]) == len(leaves[1]) > 10
    for x, y in zip(*leaves):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    assert len(seen) == 4  # steps 3, 6; 3; 6 after the restore
    for s in seen:
        assert s.is_equivalent_to(NamedSharding(s.mesh, P("data")), 4) and len(s.device_set) == 8


def test_bad_settings_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="loop.sharding"):
        loop.validate({"sharding": "zero3"})
    with pytest.raises(ConfigError, match=r"loop\.model_parallel.*2 or more"):
        loop.validate({"sharding": "tensor"})
    with pytest.raises(ConfigError, match=r"loop\.model_parallel.*only by tensor"):
        loop.validate({"model_parallel": 2, "sharding": "fsdp"})
    with pytest.raises(ConfigError, match=r"loop\.model_parallel.*does not divide the 8"):
        parallel.data_mesh(8, 3)
    with pytest.raises(ConfigError, match=r"a batch of 6 is not divisible by the 4 devices of "
                                          r"the mesh's 'data' axis"):
        parallel.check_batch({"x": jax.ShapeDtypeStruct((6, 3), jnp.float32)},
                             parallel.data_mesh(8, 2))
    data = language_data()
    alg = gpt(data)._replace(state_axes=None)  # an algorithm that names no axes
    cfg = dict(steps=2, log_every=1, eval_every=2, checkpoint_every=2, plots=False, devices=8,
               sharding="fsdp")
    with pytest.raises(ConfigError, match=r"loop\.sharding.*'fsdp'.*declares none"):
        loop.train(alg, data, cfg, tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()
    with pytest.raises(ConfigError, match=r"loop\.model_parallel.*does not divide"):
        loop.train(gpt(data), data, {**cfg, "sharding": "tensor", "model_parallel": 3},
                   tmp_path / "run", progress=False)
