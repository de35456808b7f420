"""dlcore.data.episodes (N-way K-shot sampling, checks, the 1-NN baseline, intervals) and the
class-major scikit-learn digits."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dlcore.config import ConfigError
from dlcore.data import digits_classes, episodes

C, M = 9, 7
# jitted once per shape: eager sampling compiles op by op, which would make these tests slow
sample = jax.jit(episodes.sample, static_argnums=(2, 3, 4))
sample_batch = jax.jit(episodes.sample_batch, static_argnums=(2, 3, 4, 5))


def encoded(num_classes=C, per_class=M):
    """x[c, m] = [c, m, 100 c + m]: every example says which class and which example it is."""
    c, m = np.meshgrid(np.arange(num_classes), np.arange(per_class), indexing="ij")
    return jnp.asarray(np.stack([c, m, 100 * c + m], -1).astype(np.float32))  # [C, M, 3]


def check_episode(ep, n, k, q):
    """Shapes, labels and distinctness of one episode drawn from `encoded()`."""
    s, qu, classes = ep["support"], ep["query"], np.asarray(ep["classes"])
    assert s["x"].shape == (n * k, 3) and qu["x"].shape == (n * q, 3) and classes.shape == (n,)
    assert s["y"].dtype == jnp.int32 and qu["y"].dtype == jnp.int32 and classes.dtype == np.int32
    np.testing.assert_array_equal(s["y"], np.repeat(np.arange(n), k))
    np.testing.assert_array_equal(qu["y"], np.repeat(np.arange(n), q))
    assert len(set(classes.tolist())) == n and classes.min() >= 0 and classes.max() < C
    for part in (s, qu):  # label i is class classes[i]
        np.testing.assert_array_equal(np.asarray(part["x"])[:, 0], classes[np.asarray(part["y"])])
    ids = np.concatenate([s["x"][:, 2], qu["x"][:, 2]]).astype(int).tolist()
    assert len(set(ids)) == len(ids)  # no example twice, so support and query are disjoint


def test_sample_shapes_labels_and_no_repeats():
    x = encoded()
    for seed in range(20):
        check_episode(sample(jax.random.key(seed), x, 5, 2, 3), 5, 2, 3)
    # the edge: every class, every example
    check_episode(sample(jax.random.key(0), x, C, 3, M - 3), C, 3, M - 3)


def test_keys_decide_the_episode():
    x = encoded()
    a = sample(jax.random.key(1), x, 3, 2, 2)
    b = sample(jax.random.key(1), x, 3, 2, 2)
    c = sample(jax.random.key(2), x, 3, 2, 2)
    jax.tree.map(np.testing.assert_array_equal, a, b)
    assert not np.array_equal(a["support"]["x"], c["support"]["x"])


def test_all_classes_and_examples_get_used():
    batch = sample_batch(jax.random.key(0), encoded(), 200, 3, 1, 1)
    assert set(np.asarray(batch["classes"]).ravel().tolist()) == set(range(C))
    assert len(set(np.asarray(batch["support"]["x"][..., 2]).ravel().tolist())) == C * M


def test_jit_and_batch_match_single_episodes():
    x = encoded()
    key = jax.random.key(3)
    jax.tree.map(np.testing.assert_array_equal, sample(key, x, 3, 2, 2),
                 episodes.sample(key, x, 3, 2, 2))  # eager and jitted agree

    batch = sample_batch(key, x, 6, 3, 2, 2)
    assert batch["support"]["x"].shape == (6, 6, 3) and batch["query"]["y"].shape == (6, 6)
    for i, k in enumerate(jax.random.split(key, 6)):
        one = sample(k, x, 3, 2, 2)
        jax.tree.map(lambda a, b: np.testing.assert_array_equal(a[i], b), batch, one)
        check_episode(one, 3, 2, 2)
    assert len({tuple(c) for c in np.asarray(batch["classes"]).tolist()}) > 1


def test_numpy_arrays_work_inside_jit_and_vmap():
    x = np.asarray(encoded())  # as glyphs.splits returns them, closed over as a constant
    batch = jax.jit(lambda k: episodes.sample_batch(k, x, 2, 3, 2, 2))(jax.random.key(0))
    check_episode(jax.tree.map(lambda a: a[1], batch), 3, 2, 2)


def test_images_keep_their_shape():
    x = jnp.zeros((6, 4, 5, 5, 1))
    ep = sample(jax.random.key(0), x, 3, 1, 2)
    assert ep["support"]["x"].shape == (3, 5, 5, 1) and ep["query"]["x"].shape == (6, 5, 5, 1)


# --- checks ---------------------------------------------------------------------------------------

SPLITS = {"train": {"x": np.zeros((30, 20, 4))}, "test": {"x": np.zeros((5, 10, 4))}}


def test_check_accepts_what_every_split_can_give():
    episodes.check(SPLITS, 5, 5, 5)
    episodes.check(SPLITS, 2, 1, 9)


@pytest.mark.parametrize("args, key, words", [
    ((1, 1, 1), "data.n_way", "must be an integer >= 2; got 1"),
    ((5.0, 1, 1), "data.n_way", "got 5.0"),
    ((5, 0, 1), "data.k_shot", "must be an integer >= 1; got 0"),
    ((5, 1, 0), "data.q_query", "must be an integer >= 1; got 0"),
    ((20, 1, 1), "data.n_way", "20-way episodes need 20 classes; the 'test' split has only 5"),
    ((5, 5, 15), "data.k_shot",
     "5 support + 15 query examples per class, but the 'test' classes have only 10 each"),
])
def test_check_errors(args, key, words):
    with pytest.raises(ConfigError) as e:
        episodes.check(SPLITS, *args)
    assert f"'{key}'" in str(e.value) and words in str(e.value)


def test_check_names_the_split_that_is_short():
    splits = {"train": {"x": np.zeros((3, 20, 4))}, "test": {"x": np.zeros((50, 20, 4))}}
    with pytest.raises(ConfigError, match="the 'train' split has only 3"):
        episodes.check(splits, 4, 1, 1)


# --- the nearest-neighbour baseline and intervals -------------------------------------------------

def numpy_nn_accuracy(ep):
    s, q = np.asarray(ep["support"]["x"], np.float64), np.asarray(ep["query"]["x"], np.float64)
    s, q = s.reshape(len(s), -1), q.reshape(len(q), -1)
    nearest = np.linalg.norm(q[:, None] - s[None], axis=-1).argmin(1)
    return np.mean(np.asarray(ep["support"]["y"])[nearest] == np.asarray(ep["query"]["y"]))


def test_nearest_neighbour_matches_numpy():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(10, 8, 4, 4, 1)) + 0.7 * rng.normal(size=(10, 1, 4, 4, 1))  # some structure
    x = jnp.asarray(x, jnp.float32)
    batch = sample_batch(jax.random.key(2), x, 16, 5, 2, 3)
    got = jax.jit(jax.vmap(episodes.nearest_neighbour_accuracy))(batch)
    want = [numpy_nn_accuracy(jax.tree.map(lambda a: a[i], batch)) for i in range(16)]
    np.testing.assert_allclose(got, want, atol=1e-6)
    assert 0.0 < np.mean(want) < 1.0  # neither trivial nor hopeless, so the comparison means something


def test_nearest_neighbour_is_perfect_when_classes_are_far_apart():
    centres = 10.0 * np.eye(6)[:, None, :]  # [6, 1, 6]
    x = jnp.asarray(centres + 0.01 * np.random.default_rng(0).normal(size=(6, 5, 6)), jnp.float32)
    ep = sample(jax.random.key(1), x, 4, 1, 4)
    assert float(episodes.nearest_neighbour_accuracy(ep)) == 1.0


def test_mean_ci95_matches_numpy():
    v = np.random.default_rng(0).uniform(size=600)
    mean, half = episodes.mean_ci95(jnp.asarray(v, jnp.float32))
    assert mean == pytest.approx(v.mean(), rel=1e-6)
    assert half == pytest.approx(1.96 * np.std(v, ddof=1) / np.sqrt(600), rel=1e-5)
    assert episodes.mean_ci95([0.5, 0.5, 0.5]) == (0.5, 0.0)
    m, h = episodes.mean_ci95([0.25])
    assert m == 0.25 and np.isnan(h)


# --- scikit-learn digits, class-major -------------------------------------------------------------

def test_digits_classes_split_and_order():
    from sklearn.datasets import load_digits

    d = digits_classes.splits({})
    assert d["train"]["x"].shape == (5, 174, 8, 8, 1) and d["test"]["x"].shape == (5, 174, 8, 8, 1)
    assert d["train"]["x"].dtype == np.float32
    assert d["train"]["x"].min() == 0.0 and d["test"]["x"].max() == 1.0
    raw = load_digits()
    first_sevens = raw.images[raw.target == 7][:174] / 16.0
    np.testing.assert_allclose(d["test"]["x"][2, ..., 0], first_sevens)  # test classes are 5..9
    custom = digits_classes.splits({"train_classes": [9, 0, 4]})
    np.testing.assert_array_equal(custom["train"]["x"][1], d["train"]["x"][0])
    assert custom["test"]["x"].shape[0] == 7
    episodes.check(d, 5, 5, 15)


@pytest.mark.parametrize("train, words", [
    ((0, 1, 10), "distinct digits in 0..9"),
    ((0, 0, 1), "distinct digits in 0..9"),
    ((0, 1.0), "distinct digits in 0..9"),
    ("01234", "distinct digits in 0..9"),
    ((3,), "at least 2 classes"),
    (tuple(range(9)), "leaves [9]"),
])
def test_digits_classes_errors(train, words):
    with pytest.raises(ConfigError) as e:
        digits_classes.splits({"train_classes": train})
    assert "'data.train_classes'" in str(e.value) and words in str(e.value)


def test_digits_classes_load_is_episodic_data():
    cfg = {**digits_classes.defaults(), "batch_size": 3, "n_way": 4, "k_shot": 2, "q_query": 3,
           "test_n_way": 5, "eval_tasks": 10, "eval_chunk": 4}
    d = digits_classes.load(cfg)
    assert set(d.splits) == {"train", "test"} and not d.evaluate_train
    spec = {k: v for k, v in d.spec.items() if k != "eval_tasks"}
    assert spec == {"task": "classification", "input_shape": (8, 8, 1), "num_outputs": 4,
                    "test_n_way": 5, "num_train_classes": 5, "attribute_dim": 0}
    # training batches: batch_size episodes of the training classes, a function of (step, key)
    draw = jax.jit(d.sample)
    key = jax.random.key(0)
    batch = draw(d.splits["train"], 2, key)
    assert batch["support"]["x"].shape == (3, 8, 8, 8, 1) and batch["query"]["y"].shape == (3, 12)
    jax.tree.map(np.testing.assert_array_equal, batch, draw(d.splits["train"], 2, key))
    assert not np.array_equal(batch["support"]["x"], draw(d.splits["train"], 3, key)["support"]["x"])
    # evaluation episodes: fixed (eval_seed), test_n_way classes, eval_chunk at a time
    n, chunk, tasks = d.spec["eval_tasks"]
    assert (n, chunk) == (10, 4)
    first = jax.jit(tasks, static_argnums=1)(d.splits["test"], 0)
    assert first["support"]["y"].shape == (4, 10) and first["query"]["x"].shape == (4, 15, 8, 8, 1)
    jax.tree.map(np.testing.assert_array_equal, first, tasks(d.splits["test"], 0))
    with pytest.raises(ConfigError, match="'data.test_n_way'"):
        digits_classes.load({**cfg, "test_n_way": 6})  # 5 test digits
    with pytest.raises(ConfigError, match="'data.eval_chunk'"):
        digits_classes.load({**cfg, "eval_chunk": 0})
