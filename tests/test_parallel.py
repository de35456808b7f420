"""Data parallelism on 8 fake CPU devices (see conftest.py): sharded step == single-device step."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dlcore import experiment, parallel
from dlcore.algorithms import supervised
from dlcore.config import ConfigError
from dlcore.core import Data

pytestmark = pytest.mark.timeout(300)


def test_eight_fake_devices():
    assert jax.device_count() == 8


def test_sharded_step_equals_single_device_step():
    cfg = experiment.load("mnist1d/mlp", overrides=["model.hidden=32,32", "model.dropout=0.0"])
    spec = {"input_shape": (40,), "num_outputs": 10, "task": "classification"}
    alg = supervised.make(cfg, Data({}, spec, None), cfg["loop"]["steps"])
    state = alg.init(jax.random.key(0))
    rng = np.random.default_rng(0)
    batch = {"x": jnp.asarray(rng.normal(size=(64, 40)), jnp.float32),
             "y": jnp.asarray(rng.integers(0, 10, 64), jnp.int32)}
    key = jax.random.key(1)
    single_state, single_metrics = jax.jit(alg.step)(state, batch, key)

    mesh = parallel.data_mesh(8)
    sharded_batch = jax.device_put(batch, parallel.batch_sharding(mesh))
    assert len(sharded_batch["x"].sharding.device_set) == 8
    rep_state = parallel.put_replicated(state, mesh)
    multi_state, multi_metrics = jax.jit(alg.step)(rep_state, sharded_batch, key)
    for a, b in zip(jax.tree.leaves(single_state), jax.tree.leaves(multi_state)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
    for name in single_metrics:
        np.testing.assert_allclose(single_metrics[name], multi_metrics[name], rtol=1e-5)
    params = jax.tree.leaves(multi_state.params)[0]
    assert params.sharding.is_fully_replicated


def test_loop_on_eight_devices_matches_one(tmp_path):
    over = ["loop.steps=30", "loop.eval_every=10", "loop.checkpoint_every=10", "loop.log_every=10",
            "model.hidden=32,32", "loop.plots=false", "data.batch_size=96"]
    cfg = experiment.load("mnist1d/mlp", overrides=over)
    one = experiment.run(cfg, tmp_path / "one", progress=False)
    eight = experiment.run(experiment.apply_overrides(cfg, ["loop.devices=8"]), tmp_path / "eight",
                           progress=False)
    np.testing.assert_allclose(one["metrics"]["test_loss"], eight["metrics"]["test_loss"],
                               rtol=1e-4)


def test_mesh_errors():
    with pytest.raises(ConfigError, match="loop.devices"):
        parallel.data_mesh(9)
    batch = {"x": jax.ShapeDtypeStruct((100, 40), jnp.float32),
             "y": jax.ShapeDtypeStruct((100,), jnp.int32)}
    with pytest.raises(ConfigError, match=r"data\.batch_size.*100 is not divisible by the 8"):
        parallel.check_batch(batch, parallel.data_mesh(8))
    parallel.check_batch(batch, parallel.data_mesh(4))  # 100 = 4 x 25
    parallel.check_batch(batch, None)
    with pytest.raises(ConfigError, match=r"loop\.devices.*take no batch"):
        parallel.check_batch(None, parallel.data_mesh(2))  # an RL step collects its own data
    assert parallel.data_mesh(1) is None and parallel.data_mesh(-1).size == 8
