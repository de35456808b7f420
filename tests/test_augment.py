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


# --- in array data's `sample`: training batches only ------------------------------------------------

def test_array_data_sample_augments_training_batches_from_the_data_key():
    from dlcore.data import arrays
    from dlcore.data.batching import batch_at
    rng = np.random.default_rng(0)
    x, y = rng.uniform(size=(32, 12, 2)).astype(np.float32), rng.normal(size=(32, 1))
    x_test = rng.uniform(size=(8, 12, 2)).astype(np.float32)
    plain = arrays.arrays(x, y, x_test, np.zeros((8, 1)), batch_size=8, shuffle=True)
    augmented = arrays.arrays(x, y, x_test, np.zeros((8, 1)), batch_size=8, shuffle=True,
                              augment_shift=2, augment_noise=0.3)
    shift_only = arrays.arrays(x, y, x_test, np.zeros((8, 1)), batch_size=8, shuffle=True,
                               augment_shift=2)
    train = augmented.splits["train"]

    @jax.jit  # one compile for everything
    def batches(step, key):
        k_aug = jax.random.fold_in(jax.random.fold_in(key, 0x5EED), step)
        by_hand = augment.shift_and_noise(batch_at(train, step, 8, True, key)["x"], k_aug, 2, 0.3)
        return (plain.sample(train, step, key), augmented.sample(train, step, key),
                shift_only.sample(train, step, key), by_hand)

    key = jax.random.key(4)
    ref, aug, shifted, by_hand = batches(jnp.int32(3), key)
    # the same examples as without augmentation (same permutation), targets untouched
    np.testing.assert_array_equal(np.asarray(aug["y"]), np.asarray(ref["y"]))
    assert np.abs(np.asarray(aug["x"]) - np.asarray(ref["x"])).max() > 0.3  # really changed
    # exactly shift_and_noise with the step's own stream of the data key
    np.testing.assert_allclose(np.asarray(aug["x"]), np.asarray(by_hand), rtol=1e-6, atol=1e-6)
    # a shift alone: every example is a circular roll of its plain counterpart, within range
    found = recover_shifts(np.asarray(ref["x"]), np.asarray(shifted["x"]), 2)
    assert all(len(s) == 1 for s in found)
    # a pure function of (step, key): replayed exactly, different at another step or key
    again = batches(jnp.int32(3), key)[1]
    np.testing.assert_array_equal(np.asarray(again["x"]), np.asarray(aug["x"]))
    change = np.asarray(aug["x"]) - np.asarray(ref["x"])
    for other in (batches(jnp.int32(7), key), batches(jnp.int32(3), jax.random.key(5))):
        assert not np.allclose(np.asarray(other[1]["x"]) - np.asarray(other[0]["x"]), change)
    # evaluation splits are stored as they are: nothing augments them
    np.testing.assert_array_equal(augmented.splits["test"]["x"], x_test)
    np.testing.assert_array_equal(augmented.splits["train"]["x"], plain.splits["train"]["x"])


@pytest.mark.parametrize("key, value", [("augment_shift", -1), ("augment_noise", -0.5),
                                        ("augment_shift", 0.5)])
def test_bad_augmentation_in_array_data_is_a_config_error(key, value):
    from dlcore.data import arrays
    with pytest.raises(ConfigError, match=f"'data.{key}'"):
        arrays.arrays(np.zeros((8, 4)), np.zeros(8, np.int32), batch_size=4, **{key: value})
