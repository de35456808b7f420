"""dlcore.data.batching: the batch at a step is a pure, jittable function of (step, key)."""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dlcore.data.batching import batch_indices, take

KEY = jax.random.key(0)


@functools.lru_cache(maxsize=None)
def jitted(num_examples, batch_size, shuffle):
    """One compiled program per configuration, reused by every step (the step is traced)."""
    return jax.jit(lambda step, key: batch_indices(step, num_examples, batch_size, shuffle, key))


def indices(step, n, bs, shuffle, key=KEY):
    return np.asarray(jitted(n, bs, shuffle)(jnp.int32(step), key))


def test_in_order_matches_mnist1d_reference_loop():
    n, bs = 20, 5
    x = np.arange(n) * 10 + 3
    for step in range(13):
        bix = (step * bs) % n                    # the reference training loop of greydanus/mnist1d
        idx = indices(step, n, bs, False)
        np.testing.assert_array_equal(x[idx], x[bix:bix + bs])


def test_in_order_consecutive_and_wraps():
    n, bs = 7, 3
    got = [indices(s, n, bs, False).tolist() for s in range(5)]
    assert got == [[0, 1, 2], [3, 4, 5], [6, 0, 1], [2, 3, 4], [5, 6, 0]]
    # eager gives the same as jit, and a large step does not overflow the arithmetic
    np.testing.assert_array_equal(batch_indices(jnp.int32(2), n, bs, False, KEY), [6, 0, 1])
    big = 10 ** 8
    assert indices(big, n, bs, False).tolist() == [(big * bs + i) % n for i in range(bs)]


def test_in_order_ignores_key():
    np.testing.assert_array_equal(indices(3, 20, 5, False, KEY),
                                  indices(3, 20, 5, False, jax.random.key(99)))


def test_shuffled_epoch_is_a_permutation_without_repeats():
    n, bs = 12, 4
    epoch0 = np.concatenate([indices(s, n, bs, True) for s in range(3)])
    assert sorted(epoch0.tolist()) == list(range(12))
    # it is the documented permutation, drawn from fold_in(key, epoch)
    perm = np.asarray(jax.random.permutation(jax.random.fold_in(KEY, 0), n))
    np.testing.assert_array_equal(epoch0, perm)
    assert not np.array_equal(epoch0, np.arange(n))  # really shuffled


def test_shuffled_drops_remainder_and_batches_are_full():
    n, bs = 10, 3  # 3 full batches per epoch, one example dropped
    for epoch in range(3):
        batch = np.concatenate([indices(epoch * 3 + s, n, bs, True) for s in range(3)])
        assert len(batch) == 9 and len(set(batch.tolist())) == 9
        assert batch.min() >= 0 and batch.max() < n
        perm = np.asarray(jax.random.permutation(jax.random.fold_in(KEY, epoch), n))
        np.testing.assert_array_equal(batch, perm[:9])


def test_shuffled_differs_between_epochs_and_keys():
    n, bs = 32, 8
    e0 = np.concatenate([indices(s, n, bs, True) for s in range(4)])
    e1 = np.concatenate([indices(4 + s, n, bs, True) for s in range(4)])
    assert sorted(e1.tolist()) == list(range(n))
    assert not np.array_equal(e0, e1)
    other = np.concatenate([indices(s, n, bs, True, jax.random.key(1)) for s in range(4)])
    assert not np.array_equal(e0, other)
    # same step, same key: same batch (a resumed run replays exactly)
    np.testing.assert_array_equal(indices(5, n, bs, True), indices(5, n, bs, True))


def test_shuffled_eager_equals_jit():
    for step in (0, 1, 7):
        np.testing.assert_array_equal(batch_indices(step, 10, 3, True, KEY), indices(step, 10, 3, True))


def test_inside_a_jitted_scan():
    """The step is a traced loop counter: whole epochs of batches from one compiled program."""
    n, bs = 12, 4

    @jax.jit
    def all_batches(key):
        return jax.lax.map(lambda s: batch_indices(s, n, bs, True, key), jnp.arange(6))

    got = np.asarray(all_batches(KEY))
    expected = np.stack([indices(s, n, bs, True) for s in range(6)])
    np.testing.assert_array_equal(got, expected)


def test_take():
    arrays = {"x": jnp.arange(20.0).reshape(10, 2), "y": jnp.arange(10) * 3}
    out = take(arrays, jnp.array([4, 0, 9]))
    np.testing.assert_array_equal(out["x"], [[8, 9], [0, 1], [18, 19]])
    np.testing.assert_array_equal(out["y"], [12, 0, 27])


@pytest.mark.parametrize("shuffle", [False, True])
def test_take_of_batch_indices_under_jit(shuffle):
    x = jnp.arange(15.0)

    @jax.jit
    def batch(step):
        return take({"x": x}, batch_indices(step, 15, 5, shuffle, KEY))["x"]

    seen = np.concatenate([np.asarray(batch(jnp.int32(s))) for s in range(3)])
    assert sorted(seen.tolist()) == list(range(15))
    if not shuffle:
        np.testing.assert_array_equal(seen, np.arange(15.0))


def test_in_order_long_runs_do_not_overflow_int32():
    n, bs, step = 7, 1000, 3_000_000  # step * bs = 3e9 does not fit in int32
    expected = [(step * bs + i) % n for i in range(bs)]
    assert indices(step, n, bs, False).tolist() == expected
