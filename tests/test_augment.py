"""Data augmentation (dlcore.data.augment): circular shifts and Gaussian noise, against numpy."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dlcore.config import ConfigError
from dlcore.data import augment


def distinct(shape, dtype=np.float32):
    """Every element different, so the shift that produced an output can be read off exactly."""
    return np.arange(np.prod(shape)).reshape(shape).astype(dtype)


def recover_shifts(x, out, max_shift):
    """Per example, every s in [-max_shift, max_shift] with np.roll(x_i, s, axis=0) == out_i."""
    found = []
    for xi, oi in zip(np.asarray(x), np.asarray(out)):
        found.append([s for s in range(-max_shift, max_shift + 1)
                      if np.array_equal(np.roll(xi, s, axis=0), oi)])
    return found


# One compiled program per (shape, dtype, max_shift, noise), and few of those: eager dispatch would
# compile every primitive separately, and compiling dominates the time of this file.
aug = jax.jit(augment.shift_and_noise, static_argnums=(2, 3))
SHAPE = (128, 16, 3)


def test_shapes_and_dtypes_are_kept_and_images_roll_along_height():
    x = distinct((32, 8, 8, 1))
    out = aug(jnp.asarray(x), jax.random.key(0), 3, 0.0)
    assert out.shape == x.shape and out.dtype == jnp.float32
    assert all(len(s) == 1 for s in recover_shifts(x, out, 3))  # along axis 1 only
    x = jnp.ones((4, 10, 2), jnp.bfloat16)
    out = aug(x, jax.random.key(0), 3, 0.1)
    assert out.shape == x.shape and out.dtype == jnp.bfloat16


def test_no_shift_no_noise_is_identity():
    x = jax.random.normal(jax.random.key(0), (7, 11, 2))
    np.testing.assert_array_equal(np.asarray(aug(x, jax.random.key(3), 0, 0.0)), np.asarray(x))
    out = augment.shift_and_noise(x, jax.random.key(3), 0, 0.0)  # eager: the same array back
    np.testing.assert_array_equal(np.asarray(out), np.asarray(x))


def test_each_example_is_a_circular_roll_within_range():
    x = distinct(SHAPE)
    found = recover_shifts(x, aug(jnp.asarray(x), jax.random.key(0), 3, 0.0), 3)
    assert all(len(s) == 1 for s in found), "an example is not a roll along axis 1 by <= max_shift"
    shifts = np.array([s[0] for s in found])
    # the shifts are per example and cover the whole range (7 values over 128 examples)
    assert set(shifts.tolist()) == set(range(-3, 4))


def test_shift_larger_than_length_wraps():
    x = distinct((64, 4))
    out = np.asarray(aug(jnp.asarray(x), jax.random.key(2), 9, 0.0))
    for xi, oi in zip(x, out):  # some roll of the row, nothing else
        assert any(np.array_equal(np.roll(xi, s, axis=0), oi) for s in range(4))


def test_noise_statistics_and_decomposition():
    sigma = 0.5
    x = jnp.asarray(distinct(SHAPE))
    key = jax.random.key(5)
    noise = np.asarray(aug(jnp.zeros_like(x), key, 0, sigma))
    assert abs(noise.std() - sigma) < 0.04 * sigma
    assert abs(noise.mean()) < 4 * sigma / np.sqrt(noise.size)
    # independent across examples and positions: per-example stds agree, neighbours uncorrelated
    per_example = noise.reshape(len(noise), -1).std(1)
    assert per_example.min() > 0.5 * sigma and per_example.max() < 1.5 * sigma
    assert abs(np.corrcoef(noise[:, :-1].ravel(), noise[:, 1:].ravel())[0, 1]) < 0.06
    # shift first, then noise: the result is the shift-only output plus the noise-only one
    both = np.asarray(aug(x, key, 3, sigma))
    shifted = np.asarray(aug(x, key, 3, 0.0))
    assert all(len(s) == 1 for s in recover_shifts(x, shifted, 3))
    np.testing.assert_allclose(both, shifted + noise, rtol=1e-6, atol=1e-4)


def test_different_keys_give_different_results_same_key_the_same():
    x = jnp.asarray(distinct(SHAPE))
    a, b, c = (np.asarray(aug(x, jax.random.key(k), 3, 0.5)) for k in (0, 1, 0))
    np.testing.assert_array_equal(a, c)
    assert not np.allclose(a, b)
    shift_a, shift_b = (np.asarray(aug(x, jax.random.key(k), 3, 0.0)) for k in (0, 1))
    assert not np.array_equal(shift_a, shift_b)


@pytest.mark.parametrize("cfg", [{}, {"augment_shift": 0, "augment_noise": 0.0},
                                 {"augment_shift": 5, "augment_noise": 0.2},
                                 {"augment_noise": 1}])
def test_validate_accepts_good_values(cfg):
    augment.validate(cfg)


@pytest.mark.parametrize("cfg, key", [
    ({"augment_shift": -1}, "data.augment_shift"),
    ({"augment_shift": 1.5}, "data.augment_shift"),
    ({"augment_shift": "2"}, "data.augment_shift"),
    ({"augment_shift": None}, "data.augment_shift"),
    ({"augment_noise": -0.1}, "data.augment_noise"),
    ({"augment_noise": "0.1"}, "data.augment_noise"),
    ({"augment_noise": None}, "data.augment_noise"),
    ({"augment_noise": float("nan")}, "data.augment_noise"),
    ({"augment_shift": 2, "augment_noise": -1.0}, "data.augment_noise"),
])
def test_validate_names_the_bad_key(cfg, key):
    with pytest.raises(ConfigError, match=f"'{key}'"):
        augment.validate(cfg)
