"""dlcore.losses against numpy references."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dlcore import losses


def np_log_softmax(z):
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def test_cross_entropy_matches_numpy():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(7, 5)).astype(np.float32) * 3
    labels = rng.integers(0, 5, size=7)
    expected = -np.mean(np_log_softmax(logits.astype(np.float64))[np.arange(7), labels])
    got = float(losses.cross_entropy(jnp.asarray(logits), jnp.asarray(labels)))
    assert got == pytest.approx(expected, rel=1e-5)


def test_cross_entropy_known_values_and_stability():
    # uniform logits over 4 classes: log 4
    assert float(losses.cross_entropy(jnp.zeros((3, 4)), jnp.array([0, 1, 3]))) == pytest.approx(
        np.log(4), rel=1e-6)
    # huge logits must not overflow: the right class by a margin of 1000 costs ~0, the wrong ~1000
    big = jnp.array([[1000.0, 0.0], [0.0, 1000.0]])
    assert float(losses.cross_entropy(big, jnp.array([0, 1]))) == pytest.approx(0.0, abs=1e-6)
    assert float(losses.cross_entropy(big, jnp.array([1, 0]))) == pytest.approx(1000.0, rel=1e-6)


def test_cross_entropy_gradient_is_softmax_minus_onehot():
    logits = jnp.array([[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]])
    labels = jnp.array([2, 0])
    g = jax.grad(losses.cross_entropy)(logits, labels)
    p = np.exp(np_log_softmax(np.asarray(logits, np.float64)))
    expected = (p - np.eye(3)[np.asarray(labels)]) / 2
    np.testing.assert_allclose(np.asarray(g), expected, rtol=1e-5, atol=1e-7)


def test_accuracy():
    logits = jnp.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4]])
    assert float(losses.accuracy(logits, jnp.array([1, 0, 0, 0]))) == pytest.approx(0.75)
    assert float(losses.accuracy(logits, jnp.array([0, 1, 0, 1]))) == pytest.approx(0.0)


def test_mse():
    pred = jnp.array([[1.0], [2.0], [4.0]])
    assert float(losses.mse(pred, jnp.array([1.0, 0.0, 1.0]))) == pytest.approx((0 + 4 + 9) / 3)
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(5, 3)), rng.normal(size=(5, 3))
    assert float(losses.mse(jnp.asarray(a), jnp.asarray(b))) == pytest.approx(
        np.mean((a - b) ** 2), rel=1e-5)


def test_l2_penalty_counts_kernels_only():
    params = {"dense_0": {"kernel": jnp.array([[1.0, 2.0], [3.0, -1.0]]), "bias": jnp.array([5.0, 6.0])},
              "bn_0": {"scale": jnp.array([7.0, 8.0]), "bias": jnp.array([9.0, 9.0])},
              "head": {"kernel": jnp.array([[0.5], [-2.0]]), "bias": jnp.array([10.0])}}
    expected = 0.5 * ((1 + 4 + 9 + 1) + (0.25 + 4))
    assert float(losses.l2_penalty(params)) == pytest.approx(expected, rel=1e-6)


def test_l2_penalty_gradient_is_kernel():
    params = {"d": {"kernel": jnp.array([1.0, -2.0]), "bias": jnp.array([3.0])}}
    g = jax.grad(losses.l2_penalty)(params)
    np.testing.assert_allclose(g["d"]["kernel"], [1.0, -2.0])
    np.testing.assert_allclose(g["d"]["bias"], [0.0])
