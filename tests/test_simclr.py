"""SimCLR (dlcore.algorithms.simclr): the NT-Xent loss against the formula written out and a closed
case, the views (line removal, bounded circular shifts, added lines), the linear probe and the kNN
classifier against scikit-learn, one clear error for each bad setting, and a tiny run end to end."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from dlcore import experiment
from dlcore.algorithms import simclr
from dlcore.config import ConfigError
from dlcore.data import arrays


def nt_xent_loop(z1, z2, tau):
    """The NT-Xent loss of SimCLR written out view by view, in float64."""
    z = np.concatenate([z1, z2]).astype(np.float64)
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    n2 = len(z)
    total = 0.0
    for i in range(n2):
        p = (i + n2 // 2) % n2
        denominator = sum(math.exp(z[i] @ z[j] / tau) for j in range(n2) if j != i)
        total += -math.log(math.exp(z[i] @ z[p] / tau) / denominator)
    return total / n2


@pytest.mark.parametrize("tau", [0.5, 0.1])
def test_nt_xent_is_the_formula(tau):
    rng = np.random.default_rng(0)
    z1, z2 = rng.normal(size=(7, 5)), rng.normal(size=(7, 5))
    got = float(simclr.nt_xent(jnp.asarray(z1), jnp.asarray(z2), tau))
    assert got == pytest.approx(nt_xent_loop(z1, z2, tau), rel=1e-5)


def test_nt_xent_of_identical_orthogonal_views():
    """Both views equal, examples orthogonal: each view's positive has similarity 1/tau, its
    2n - 2 negatives 0, so the loss is log(1 + (2n - 2) exp(-1/tau))."""
    n, tau = 4, 0.5
    z = 3.0 * jnp.eye(n, 6)  # norms do not matter: the rows are normalised
    assert float(simclr.nt_xent(z, z, tau)) == pytest.approx(
        math.log(1 + (2 * n - 2) * math.exp(-1 / tau)), rel=1e-6)
    losses, correct = simclr.nt_xent_terms(z, z, tau)
    assert losses.shape == (2 * n,) and np.all(np.asarray(correct) == 1.0)


def test_nt_xent_mask_drops_examples_as_anchors_and_negatives():
    rng = np.random.default_rng(1)
    z1, z2 = rng.normal(size=(6, 3)), rng.normal(size=(6, 3))
    valid = np.array([True, True, False, True, False, True])
    losses, _ = simclr.nt_xent_terms(jnp.asarray(z1), jnp.asarray(z2), 0.5, jnp.asarray(valid))
    assert float(jnp.sum(losses)) / (2 * valid.sum()) == pytest.approx(
        nt_xent_loop(z1[valid], z2[valid], 0.5), rel=1e-5)
    assert np.all(np.asarray(losses)[np.concatenate([~valid, ~valid])] == 0.0)


def line_fit(x):
    """(offset, slope) of each row's least-squares line over t = linspace(-1, 1, L)."""
    t = np.linspace(-1, 1, x.shape[1])
    coef, *_ = np.linalg.lstsq(np.stack([np.ones_like(t), t], 1), np.asarray(x, np.float64).T,
                               rcond=None)
    return coef[0], coef[1]


def test_remove_line_leaves_zero_mean_and_zero_slope():
    x = jax.random.normal(jax.random.key(0), (16, 40)) + jnp.linspace(0, 3, 40) + 2.0
    offset, slope = line_fit(simclr.remove_line(x))
    assert np.max(np.abs(offset)) < 1e-5 and np.max(np.abs(slope)) < 1e-5


def test_views_are_bounded_circular_shifts_plus_a_bounded_line():
    x = jax.random.normal(jax.random.key(1), (32, 40)) + jnp.linspace(-2, 2, 40)
    flat = np.asarray(simclr.remove_line(x))
    # shifts only: each view is the line-free signal rolled by one shift in [-3, 3]
    v = np.asarray(simclr.augment(x, jax.random.key(2), 3, 0.0, 0.0))
    assert v.shape == x.shape and v.dtype == np.float32
    shifts = []
    for row, f in zip(v, flat):
        hits = [s for s in range(-3, 4) if np.allclose(row, np.roll(f, s), atol=1e-6)]
        assert len(hits) == 1
        shifts.append(hits[0])
    assert len(set(shifts)) > 3  # the shifts vary from example to example
    # lines only: view minus line-free signal is a line within the ranges, and lines vary
    v = np.asarray(simclr.augment(x, jax.random.key(3), 0, 0.7, 0.2))
    offset, slope = line_fit(v - flat)
    t = np.linspace(-1, 1, 40)
    assert np.allclose(v - flat, offset[:, None] + slope[:, None] * t, atol=1e-5)
    assert np.all(np.abs(slope) <= 0.7 + 1e-6) and np.all(np.abs(offset) <= 0.2 + 1e-6)
    assert np.std(slope) > 0.1 and np.std(offset) > 0.03
    # a pure function of the key
    same = simclr.augment(x, jax.random.key(3), 5, 0.7, 0.2)
    assert np.array_equal(np.asarray(same), np.asarray(simclr.augment(x, jax.random.key(3), 5, 0.7, 0.2)))
    assert not np.array_equal(np.asarray(same), np.asarray(simclr.augment(x, jax.random.key(4), 5, 0.7, 0.2)))


def blobs(seed, n, d, classes, spread=1.5):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(classes, d))
    y = rng.integers(0, classes, n)
    x = centres[y] + spread * rng.normal(size=(n, d)) * rng.uniform(0.5, 3, d)  # uneven scales
    return x.astype(np.float32), y.astype(np.int32)


def test_probe_matches_scikit_learn_logistic_regression():
    x, y = blobs(0, 400, 6, 4)
    xt, yt = blobs(0, 2000, 6, 4)[0][400:], blobs(0, 2000, 6, 4)[1][400:]
    sk = make_pipeline(StandardScaler(), LogisticRegression(C=0.5, tol=1e-8, max_iter=10000))
    sk.fit(x, y)
    probe = jax.jit(lambda h, l: simclr.fit_probe(h, l, 4, 0.5, 500))(x, y)
    pred = np.asarray(simclr.probe_predict(probe, jnp.asarray(xt)))
    assert np.mean(pred == yt) == pytest.approx(sk.score(xt, yt), abs=0.01)
    assert np.mean(pred == sk.predict(xt)) > 0.98
    # the same minimiser: the penalised weights are unique (their class mean is 0 in both)
    assert np.allclose(np.asarray(probe.w).T, sk[-1].coef_, atol=1e-2)


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_knn_matches_scikit_learn(metric):
    x, y = blobs(1, 300, 5, 5, spread=2.0)
    q, qy = blobs(2, 120, 5, 5, spread=2.0)
    sk = KNeighborsClassifier(n_neighbors=10, metric=metric, algorithm="brute").fit(x, y)
    got = np.asarray(simclr.knn_predict(jnp.asarray(x), jnp.asarray(y), jnp.asarray(q), 10, 5,
                                        metric, chunk=50))
    assert np.array_equal(got, sk.predict(q))
    assert np.mean(got == qy) == pytest.approx(sk.score(q, qy))


def signals(n=64, length=20, classes=4, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    t = np.linspace(0, 1, length)
    x = np.sin(2 * np.pi * (y[:, None] + 1) * t) + 0.3 * rng.normal(size=(n, length))
    return x.astype(np.float32), y.astype(np.int32)


def config(**simclr_keys):
    return experiment.complete({"algorithm": "simclr", "data": {"name": "mnist1d"},
                                "simclr": {"probe_steps": 20, **simclr_keys},
                                "loop": {"steps": 10}})


def small_data(**kw):
    x, y = signals()
    xt, yt = signals(32, seed=1)
    return arrays.arrays(x, y, xt, yt, **{"batch_size": 16, **kw})


def make(cfg, data=None):
    return simclr.make(cfg, data or small_data(), 10)


@pytest.mark.parametrize("section, key, value", [
    ("simclr", "temperature", 0.0), ("simclr", "temperature", -0.5),
    ("simclr", "temperature", float("nan")), ("simclr", "knn_k", 0), ("simclr", "knn_k", 65),
    ("simclr", "knn_metric", "manhattan"), ("simclr", "max_shift", -1), ("simclr", "max_shift", 20),
    ("simclr", "slope", -0.1), ("simclr", "offset", "big"), ("simclr", "probe_c", 0.0),
    ("simclr", "probe_steps", 0), ("simclr", "projection", 0), ("simclr", "features", -1),
    ("simclr", "eval_batch_size", 0), ("simclr", "baseline", "yes")])
def test_bad_settings_name_their_key(section, key, value):
    with pytest.raises(ConfigError, match=f"'{section}.{key}'"):
        make(config(**{key: value}))


def test_data_that_is_no_labelled_1d_signals_is_refused():
    x, y = signals()
    images = arrays.arrays(x.reshape(64, 4, 5), y, batch_size=16)
    with pytest.raises(ConfigError, match="'data.name'.*1-D signals"):
        make(config(), images)
    regression = arrays.arrays(x, y.astype(np.float32), batch_size=16)
    with pytest.raises(ConfigError, match="'data.name'.*class labels"):
        make(config(), regression)
    with pytest.raises(ConfigError, match="'data.batch_size'"):
        make(config(), small_data(batch_size=1))


def test_a_trunk_without_the_asked_width_is_refused():
    cfg = config()
    cfg["trunk"] = {**experiment.complete({"algorithm": "simclr", "data": {"name": "mnist1d"},
                                           "trunk": {"name": "mlp"}})["trunk"]}
    with pytest.raises(ConfigError, match="'simclr.features'.*only the cnn family"):
        make(cfg)  # an MLP always has an output layer: features 0 cannot be met
    cfg["trunk"]["init"] = "torch"  # an initialiser that builds a 0-wide layer: caught all the same
    with pytest.raises(ConfigError, match="'simclr.features'.*only the cnn family"):
        make(cfg)
    cfg["trunk"]["hidden"] = (0,)  # a wrong trunk section is named as such, with features 0 too
    with pytest.raises(ConfigError, match="'trunk.hidden'"):
        make(cfg)
    cfg["trunk"]["hidden"] = (100, 100)
    cfg["simclr"].update(features=32, baseline=False)
    alg = make(cfg)  # a width it can meet
    assert jax.eval_shape(alg.init, jax.random.key(0)).params["trunk"]["head"]["kernel"].shape[-1] == 32


def test_a_tiny_run_end_to_end():
    data = small_data()
    alg = make(config(eval_batch_size=10, knn_k=5), data)
    state = jax.jit(alg.init)(jax.random.key(0))
    assert "head" not in state.params["trunk"]  # the ConvBase has no output layer
    assert state.params["projector"]["dense_0"]["kernel"].shape == (3 * 25, 125)
    split = jax.tree.map(jnp.asarray, data.splits["train"])
    step = jax.jit(alg.step)
    for i in range(2):
        state, metrics = step(state, data.sample(split, i, jax.random.key(1)), jax.random.key(i))
    assert set(metrics) == {"loss", "contrastive_accuracy"}
    assert 0 < float(metrics["loss"]) < math.log(2 * 16 - 1) + 0.5
    got = jax.jit(alg.evaluate)(state, jax.tree.map(jnp.asarray, data.splits["test"]),
                                jax.random.key(2))
    assert set(got) == {"loss", "probe_accuracy", "knn_accuracy", "raw_probe_accuracy",
                        "raw_knn_accuracy"}
    assert all(np.isfinite(float(v)) for v in got.values())
    assert all(0.0 <= float(got[k]) <= 1.0 for k in got if k.endswith("accuracy"))
    # the raw kNN baseline is scikit-learn's
    sk = KNeighborsClassifier(n_neighbors=5).fit(data.splits["train"]["x"], data.splits["train"]["y"])
    assert float(got["raw_knn_accuracy"]) == pytest.approx(
        sk.score(data.splits["test"]["x"], data.splits["test"]["y"]))
