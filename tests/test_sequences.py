"""The adding problem (dlcore.data.adding): structure, targets, seeds, errors."""
import jax
import numpy as np
import pytest

import dlcore.data
from dlcore.config import ConfigError
from dlcore.data import adding


def small(**over):
    cfg = {"seq_len": 12, "train_size": 300, "test_size": 50, "data_seed": 0}
    cfg.update(over)
    return adding.arrays(cfg)


@pytest.mark.parametrize("t", [2, 3, 7, 12, 101])
def test_shapes_markers_and_targets(t):
    a = small(seq_len=t)
    for split, n in (("", 300), ("_test", 50)):
        x, y = a["x" + split], a["y" + split]
        assert x.shape == (n, t, 2) and y.shape == (n, 1)
        assert x.dtype == np.float32 and y.dtype == np.float32
        values, marks = x[..., 0], x[..., 1]
        assert np.all((values >= 0.0) & (values <= 1.0))
        assert set(np.unique(marks).tolist()) <= {0.0, 1.0}
        assert np.all(marks.sum(1) == 2)                         # exactly two markers
        assert np.all(marks[:, : t // 2].sum(1) == 1)             # one in the first half
        assert np.all(marks[:, t // 2:].sum(1) == 1)              # one in the second half
        np.testing.assert_allclose(y[:, 0], (values * marks).sum(1), rtol=1e-6, atol=1e-6)
        for i in range(3):  # spelled out for a few rows
            first, second = np.nonzero(marks[i])[0]
            assert first < t // 2 <= second
            np.testing.assert_allclose(y[i, 0], values[i, first] + values[i, second], rtol=1e-6)


def test_defaults():
    a = adding.arrays({})
    assert a["x"].shape == (20000, 100, 2) and a["x_test"].shape == (2000, 100, 2)
    np.testing.assert_array_equal(a["x"], adding.arrays({"data_seed": 0})["x"])


def test_values_are_uniform_and_marker_positions_spread():
    a = small(seq_len=20, train_size=5000)
    values, marks = a["x"][..., 0], a["x"][..., 1]
    assert abs(values.mean() - 0.5) < 0.01 and abs(values.var() - 1 / 12) < 0.005
    positions = np.nonzero(marks)[1]
    assert set(positions.tolist()) == set(range(20))  # every step can be marked


def test_deterministic_per_seed_and_different_across_seeds():
    a, b, c = small(data_seed=3), small(data_seed=3), small(data_seed=4)
    for k in ("x", "y", "x_test", "y_test"):
        np.testing.assert_array_equal(a[k], b[k])
        assert not np.array_equal(a[k], c[k])
    assert not np.array_equal(a["x"][:50], a["x_test"])  # the test set is not the train set


def test_predicting_one_gives_mse_one_sixth():
    a = adding.arrays({"seq_len": 10, "train_size": 200000, "test_size": 1, "data_seed": 1})
    y = a["y"][:, 0].astype(np.float64)
    assert abs(y.mean() - 1.0) < 0.005
    assert abs(np.mean((y - 1.0) ** 2) - 1 / 6) < 0.003


@pytest.mark.parametrize("over, key", [
    ({"seq_len": 1}, "data.seq_len"), ({"seq_len": 0}, "data.seq_len"),
    ({"seq_len": 10.0}, "data.seq_len"), ({"seq_len": "10"}, "data.seq_len"),
    ({"seq_len": None}, "data.seq_len"),
    ({"train_size": 0}, "data.train_size"), ({"train_size": -5}, "data.train_size"),
    ({"train_size": 1.5}, "data.train_size"), ({"test_size": 0}, "data.test_size"),
    ({"test_size": "many"}, "data.test_size"),
])
def test_bad_values_name_the_key(over, key):
    with pytest.raises(ConfigError, match=f"'{key}'"):
        small(**over)


def test_load_gives_regression_spec_and_splits():
    cfg = {"name": "adding", "batch_size": 10, "seq_len": 16, "train_size": 100, "test_size": 20,
           "data_seed": 2, "validation_fraction": 0.2}
    d = dlcore.data.load({**dlcore.data.defaults("adding"), **cfg})
    splits, spec = d.splits, d.spec
    assert spec == {"input_shape": (16, 2), "task": "regression", "num_outputs": 1,
                    "num_examples": 80}
    sizes = {k: len(v["x"]) for k, v in splits.items()}
    assert sizes == {"train": 80, "validation": 20, "test": 20}
    raw = adding.arrays(cfg)
    np.testing.assert_array_equal(splits["validation"]["y"], raw["y"][80:])
    np.testing.assert_array_equal(splits["test"]["x"], raw["x_test"])
    assert splits["train"]["y"].dtype == np.float32 and splits["train"]["y"].shape == (80, 1)
    with pytest.raises(ConfigError, match="'data.seq_len'"):
        dlcore.data.load({**dlcore.data.defaults("adding"), **cfg, "seq_len": 1})
    # the section's defaults are the generator's
    assert {k: dlcore.data.defaults("adding")[k] for k in ("seq_len", "train_size", "test_size",
                                                           "data_seed")} == {
        "seq_len": 100, "train_size": 20000, "test_size": 2000, "data_seed": 0}
    batch = d.sample(splits["train"], 0, jax.random.key(0))
    assert batch["x"].shape == (10, 16, 2) and batch["y"].shape == (10, 1)
