"""dlcore.data: generated and shipped data sets, the split/check logic, array data from memory, and
the on-disk loaders.

Every file the loaders read is written here; nothing is downloaded.
"""
from __future__ import annotations

import struct

import jax
import numpy as np
import pytest

from dlcore import data, experiment
from dlcore.config import ConfigError
from dlcore.data import arrays as array_data, cache, cifar10_binary, mnist1d, mnist_idx, npz
from dlcore.data.arrays import check_arrays


def load(name, **keys):
    """The Data of source `name`, its section completed from the source's defaults."""
    return data.load({**data.defaults(name), **keys})


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    d = tmp_path / "cache"
    monkeypatch.setenv("DLCORE_CACHE", str(d))
    return d


# --- MNIST-1D -------------------------------------------------------------------------------------

def test_mnist1d_generate_cache_and_reload(cache_dir, monkeypatch):
    np.random.seed(1234)
    before = np.random.get_state()
    a = mnist1d.arrays({"name": "mnist1d", "batch_size": 100})
    after = np.random.get_state()
    # numpy's global generator is left exactly where it was
    assert before[0] == after[0] and before[2:] == after[2:]
    np.testing.assert_array_equal(before[1], after[1])

    assert a["x"].shape == (4000, 40) and a["x_test"].shape == (1000, 40)
    assert a["y"].shape == (4000,) and a["y_test"].shape == (1000,)
    assert a["x"].dtype == np.float32 and a["y"].dtype == np.int32
    for y in (a["y"], a["y_test"]):
        assert set(np.unique(y).tolist()) == set(range(10))
    assert np.all(np.isfinite(a["x"])) and a["x"].std() > 0.1

    written = sorted(p.name for p in cache_dir.iterdir())
    assert len(written) == 1 and written[0].startswith("mnist1d-") and written[0].endswith(".npz")
    on_disk = cache.load_npz(cache_dir / written[0], ("x", "y", "x_test", "y_test"))
    for k in a:
        np.testing.assert_array_equal(on_disk[k], a[k])

    # the second load reads the cache: generating again would be an error here
    def no_generate(args):
        raise AssertionError("regenerated although the cache was there")
    monkeypatch.setattr(mnist1d, "generate", no_generate)
    b = mnist1d.arrays({"name": "mnist1d", "batch_size": 100, "unrelated_key": 3})
    assert set(b) == set(a)
    for k in a:
        np.testing.assert_array_equal(b[k], a[k])
        assert b[k].dtype == a[k].dtype


def fake_arrays(n=6):
    return {"x": np.ones((n, 40), np.float32), "y": np.arange(n, dtype=np.int32) % 10,
            "x_test": np.zeros((2, 40), np.float32), "y_test": np.array([0, 1], np.int32)}


def test_mnist1d_cache_name_depends_on_generator_args(cache_dir, monkeypatch):
    calls = []
    monkeypatch.setattr(mnist1d, "generate", lambda args: calls.append(dict(args)) or fake_arrays())
    mnist1d.arrays({"seed": 1})
    mnist1d.arrays({"seed": 2})
    mnist1d.arrays({"seed": 1})
    assert [c["seed"] for c in calls] == [1, 2]
    assert calls[0]["num_samples"] == 5000 and calls[0]["padding"] == (36, 60)
    assert len(list(cache_dir.glob("mnist1d-*.npz"))) == 2
    assert sorted(p.name for p in cache_dir.iterdir() if not p.name.startswith("mnist1d-")) == []


def test_mnist1d_torn_cache_is_regenerated(cache_dir, monkeypatch):
    monkeypatch.setattr(mnist1d, "generate", lambda args: fake_arrays())
    first = mnist1d.arrays({"seed": 5})
    (path,) = cache_dir.glob("mnist1d-*.npz")
    path.write_bytes(path.read_bytes()[:50])  # a torn write
    again = mnist1d.arrays({"seed": 5})
    np.testing.assert_array_equal(again["x"], first["x"])
    assert cache.load_npz(path, ("x",))["x"].shape == (6, 40)  # rewritten whole


def test_save_npz_round_trip_leaves_no_temp_files(tmp_path):
    arrays = {"a": np.arange(5, dtype=np.int16), "b": np.eye(2, dtype=np.float32)}
    path = tmp_path / "x.npz"
    cache.save_npz(path, arrays)
    assert [p.name for p in tmp_path.iterdir()] == ["x.npz"]
    back = cache.load_npz(path, ("a", "b"))
    for k in arrays:
        np.testing.assert_array_equal(back[k], arrays[k])
        assert back[k].dtype == arrays[k].dtype


def test_cache_path_uses_env(cache_dir):
    p = cache.cache_path("thing.npz")
    assert p == cache_dir / "thing.npz" and cache_dir.is_dir()


# --- scikit-learn data sets -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def digits():
    return load("digits", batch_size=32)


def test_mnist1d_load_is_array_data(cache_dir, monkeypatch):
    monkeypatch.setattr(mnist1d, "generate", lambda args: fake_arrays(20))
    d = load("mnist1d", batch_size=5)
    assert d.spec == {"input_shape": (40,), "num_outputs": 10, "task": "classification",
                      "num_examples": 20}
    assert set(d.splits) == {"train", "test"} and d.evaluate_train
    batch = d.sample(d.splits["train"], 1, jax.random.key(0))  # stored order: examples 5..9
    np.testing.assert_array_equal(batch["y"], np.arange(5, 10) % 10)
    assert batch["x"].shape == (5, 40)


def test_digits(digits):
    splits, spec = digits.splits, digits.spec
    assert set(splits) == {"train", "test"}
    tr, te = splits["train"], splits["test"]
    assert tr["x"].shape == (1437, 8, 8, 1) and te["x"].shape == (360, 8, 8, 1)
    assert tr["y"].shape == (1437,) and te["y"].shape == (360,)
    assert tr["x"].dtype == np.float32 and tr["y"].dtype == np.int32
    for x in (tr["x"], te["x"]):
        assert x.min() == 0.0 and x.max() == 1.0
    assert spec == {"input_shape": (8, 8, 1), "num_outputs": 10, "task": "classification",
                    "num_examples": 1437}
    # stratified: every class has 35 or 37 test examples (digits has 174..183 per class)
    counts = np.bincount(te["y"], minlength=10)
    assert counts.min() >= 35 and counts.max() <= 37


def test_digits_validation_fraction_carves_end_of_train(digits):
    full = digits.splits["train"]
    d = load("digits", batch_size=32, validation_fraction=0.1)
    splits, spec = d.splits, d.spec
    n_val = round(1437 * 0.1)
    assert set(splits) == {"train", "validation", "test"}
    np.testing.assert_array_equal(splits["validation"]["x"], full["x"][-n_val:])
    np.testing.assert_array_equal(splits["validation"]["y"], full["y"][-n_val:])
    np.testing.assert_array_equal(splits["train"]["x"], full["x"][:-n_val])
    np.testing.assert_array_equal(splits["test"]["y"], digits.splits["test"]["y"])
    assert len(splits["train"]["x"]) + n_val == 1437
    assert spec["num_examples"] == 1437 - n_val


def test_diabetes():
    d = load("diabetes", batch_size=16)
    splits, spec = d.splits, d.spec
    assert spec == {"input_shape": (10,), "num_outputs": 1, "task": "regression",
                    "num_examples": 353}
    tr, te = splits["train"], splits["test"]
    assert tr["x"].shape == (353, 10) and te["x"].shape == (89, 10)
    assert tr["y"].shape == (353, 1) and tr["y"].dtype == np.float32
    assert te["y"].dtype == np.float32
    # standardised with the training statistics
    np.testing.assert_allclose(tr["x"].mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(tr["x"].std(0), 1, rtol=1e-4)
    np.testing.assert_allclose(tr["y"].mean(), 0, atol=1e-5)
    assert len(np.unique(tr["y"])) > 100  # real-valued targets, not classes


@pytest.mark.parametrize("cfg,key", [
    ({"name": "digits", "batch_size": 5000}, "data.batch_size"),
    ({"name": "digits", "batch_size": 1437, "validation_fraction": 0.5}, "data.batch_size"),
    ({"name": "digits", "batch_size": 0}, "data.batch_size"),
    ({"name": "digits", "batch_size": 2.0}, "data.batch_size"),
    ({"name": "digits", "batch_size": 8, "validation_fraction": 1.0}, "data.validation_fraction"),
    ({"name": "imagenet", "batch_size": 8}, "data.name"),
])
def test_load_rejects(cfg, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load(**cfg)


def test_batch_size_error_says_how_many_examples():
    with pytest.raises(ConfigError, match="larger than the 1437 training examples"):
        load("digits", batch_size=1438)


# --- check_arrays ---------------------------------------------------------------------------------

def splits_of(x, y, xt, yt):
    return {"train": {"x": x, "y": y}, "test": {"x": xt, "y": yt}}


def test_check_arrays_spec_and_dtypes():
    s = splits_of(np.arange(12, dtype=np.uint8).reshape(3, 4), np.array([0, 4, 1], np.int64),
                  np.zeros((2, 4), np.float64), np.array([4, 0]))
    spec = check_arrays(s, "toy")  # the classes are the training labels' (0..4)
    assert spec == {"input_shape": (4,), "num_outputs": 5, "task": "classification"}
    assert s["train"]["x"].dtype == np.float32 and s["train"]["y"].dtype == np.int32
    assert s["test"]["x"].dtype == np.float32
    np.testing.assert_array_equal(s["train"]["x"][1], [4, 5, 6, 7])


def test_check_arrays_regression_spec():
    s = splits_of(np.zeros((3, 2)), np.zeros((3, 2, 3)), np.zeros((1, 2)), np.zeros((1, 2, 3)))
    assert check_arrays(s, "toy") == {"input_shape": (2,), "num_outputs": 6,
                                           "task": "regression"}


@pytest.mark.parametrize("make,pattern", [
    (lambda: splits_of(np.zeros((3, 4)), np.zeros(2, int), np.zeros((2, 4)), np.zeros(2, int)),
     r"'toy' train: 3 inputs but 2 targets"),
    (lambda: splits_of(np.zeros((3, 4)), np.zeros(3, int),
                       np.array([[0, 1, np.nan, 0], [0, 0, 0, 0]]), np.zeros(2, int)),
     r"'toy' test: inputs contain NaN or Inf"),
    (lambda: splits_of(np.full((3, 4), np.inf), np.zeros(3, int), np.zeros((2, 4)), np.zeros(2, int)),
     r"'toy' train: inputs contain NaN or Inf"),
    (lambda: splits_of(np.zeros((3, 4)), np.zeros(3, int), np.zeros((2, 5)), np.zeros(2, int)),
     r"'toy' test: inputs of shape \(5,\), train has \(4,\)"),
    (lambda: splits_of(np.zeros((3, 4)), np.zeros(3, int), np.zeros((2, 4)), np.zeros(2)),
     r"'toy' test: targets of dtype float64"),
    (lambda: splits_of(np.zeros((3, 4)), np.array([0, -1, 2]), np.zeros((2, 4)), np.zeros(2, int)),
     r"negative class label -1"),
    (lambda: splits_of(np.zeros((3, 4)), np.zeros(3, int), np.zeros((0, 4)), np.zeros(0, int)),
     r"'toy' test: no examples"),
    (lambda: splits_of(np.array([["a"], ["b"]]), np.zeros(2, int), np.array([["c"]]), np.zeros(1, int)),
     r"not numeric"),
    (lambda: splits_of(np.zeros((3, 4)), np.array([0.0, np.nan, 1.0]), np.zeros((2, 4)), np.zeros(2)),
     r"'toy' train: targets contain NaN or Inf"),
])
def test_check_arrays_errors(make, pattern):
    with pytest.raises(ConfigError, match=pattern):
        check_arrays(make(), "toy")


# --- array data from memory -----------------------------------------------------------------------

def test_arrays_from_memory_split_off_a_stratified_test_set():
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(4), 20)                     # 4 classes x 20 examples
    x = rng.normal(size=(80, 3)) + y[:, None]           # float64 in, float32 out
    d = array_data.arrays(x, y, batch_size=10, test_fraction=0.25)
    assert set(d.splits) == {"train", "test"}
    tr, te = d.splits["train"], d.splits["test"]
    assert len(tr["x"]) == 60 and len(te["x"]) == 20
    # stratified: each class has exactly a quarter of its examples in the test set
    np.testing.assert_array_equal(np.bincount(te["y"], minlength=4), [5, 5, 5, 5])
    np.testing.assert_array_equal(np.bincount(tr["y"], minlength=4), [15, 15, 15, 15])
    assert tr["x"].dtype == np.float32 and tr["y"].dtype == np.int32
    # every example is in exactly one split, with its own label
    rows = {tuple(np.float32(r)): int(c) for r, c in zip(x, y)}
    seen = [tuple(r) for r in np.concatenate([tr["x"], te["x"]])]
    assert len(set(seen)) == 80 and set(seen) == set(rows)
    for split in (tr, te):
        assert all(rows[tuple(r)] == c for r, c in zip(split["x"], split["y"]))
    assert d.spec == {"input_shape": (3,), "num_outputs": 4, "task": "classification",
                      "num_examples": 60}
    batch = d.sample(tr, 2, jax.random.key(0))
    assert set(batch) == {"x", "y"}
    assert batch["x"].shape == (10, 3) and batch["y"].shape == (10,)
    np.testing.assert_array_equal(batch["y"], tr["y"][20:30])  # stored order, step 2
    # the split is drawn with split_seed: the same seed gives the same split, another a different one
    again = array_data.arrays(x, y, batch_size=10, test_fraction=0.25)
    other = array_data.arrays(x, y, batch_size=10, test_fraction=0.25, split_seed=1)
    np.testing.assert_array_equal(again.splits["test"]["x"], te["x"])
    assert not np.array_equal(other.splits["test"]["x"], te["x"])


def test_arrays_from_memory_with_a_test_split_and_regression_targets():
    x, y = np.zeros((8, 2, 2)), np.ones((8, 3))
    d = array_data.arrays(x, y, np.ones((2, 2, 2)), np.zeros((2, 3)), batch_size=4)
    assert d.spec == {"input_shape": (2, 2), "num_outputs": 3, "task": "regression",
                      "num_examples": 8}
    assert len(d.splits["test"]["x"]) == 2 and d.splits["train"]["y"].dtype == np.float32
    with pytest.raises(ConfigError, match=r"unknown keys \['batchsize'\]"):
        array_data.arrays(x, y, batchsize=4)
    with pytest.raises(ConfigError, match=r"data\.test_fraction"):
        array_data.arrays(x, y, batch_size=4, test_fraction=1.5)


# --- .npz files -----------------------------------------------------------------------------------

def test_npz_file(tmp_path):
    rng = np.random.default_rng(0)
    arrays = {"x": rng.normal(size=(10, 3)), "y": rng.integers(0, 4, 10),
              "x_test": rng.normal(size=(4, 3)), "y_test": np.array([3, 2, 1, 0])}
    path = tmp_path / "mine.npz"
    np.savez(path, **arrays, extra=np.zeros(1))
    d = load("npz", path=str(path), batch_size=5)
    splits, spec = d.splits, d.spec
    assert spec == {"input_shape": (3,), "num_outputs": 4, "task": "classification",
                    "num_examples": 10}
    assert set(splits) == {"train", "test"}
    np.testing.assert_allclose(splits["train"]["x"], arrays["x"].astype(np.float32))
    np.testing.assert_array_equal(splits["test"]["y"], arrays["y_test"])


def test_npz_without_a_test_split_is_split_by_test_fraction(tmp_path):
    y = np.repeat(np.arange(3), 10)
    x = np.arange(60, dtype=np.float64).reshape(30, 2)
    path = tmp_path / "no_test.npz"
    np.savez(path, x=x, y=y)
    assert set(npz.arrays({"path": str(path)})) == {"x", "y"}
    d = load("npz", path=str(path), batch_size=4, test_fraction=0.2)
    assert len(d.splits["train"]["x"]) == 24 and len(d.splits["test"]["x"]) == 6
    np.testing.assert_array_equal(np.bincount(d.splits["test"]["y"]), [2, 2, 2])  # stratified
    together = np.concatenate([d.splits["train"]["x"], d.splits["test"]["x"]])
    assert sorted(together[:, 0].tolist()) == x[:, 0].tolist()
    d = load("npz", path=str(path), batch_size=4, test_fraction=0.5)
    assert len(d.splits["test"]["x"]) == 15


@pytest.mark.parametrize("arrays, pattern", [
    ({"x": np.zeros((6, 2))}, r"bad\.npz lacks the arrays \['y'\]"),
    ({"inputs": np.zeros((6, 2)), "targets": np.zeros(6, int)},
     r"bad\.npz lacks the arrays \['x', 'y'\]; it has \['inputs', 'targets'\]"),
    ({"x": np.zeros((6, 2)), "y": np.zeros(6, int), "x_test": np.zeros((2, 2))},
     r"'x_test' and 'y_test' come together"),
    ({"x": np.zeros(6), "y": np.zeros((6, 2), int), "x_test": np.zeros(2),
      "y_test": np.zeros((2, 2), int)}, r"class labels must be \[n\]; got \(6, 2\)"),
    ({"x": np.zeros((6, 2)), "y": np.zeros(5, int), "x_test": np.zeros((2, 2)),
      "y_test": np.zeros(2, int)}, r"train: 6 inputs but 5 targets"),
    ({"x": np.array([[0.0, np.nan]] * 6), "y": np.zeros(6, int), "x_test": np.zeros((2, 2)),
      "y_test": np.zeros(2, int)}, r"train: inputs contain NaN or Inf"),
    ({"x": np.zeros((6, 2)), "y": np.zeros((6, 1)), "x_test": np.zeros((2, 2)),
      "y_test": np.array([[1.0], [np.nan]])}, r"test: targets contain NaN or Inf"),
])
def test_npz_bad_contents_name_the_problem(tmp_path, arrays, pattern):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(ConfigError, match=pattern):
        load("npz", path=str(path), batch_size=2)


def test_experiment_load_resolves_a_relative_npz_path_against_the_config_folder(tmp_path,
                                                                               monkeypatch):
    folder = tmp_path / "project"
    (folder / "arrays").mkdir(parents=True)
    rng = np.random.default_rng(0)
    np.savez(folder / "arrays" / "mine.npz", x=rng.normal(size=(40, 3)),
             y=np.repeat(np.arange(2), 20))
    (folder / "mine.py").write_text(
        "def get_config():\n"
        "    return {'algorithm': 'supervised',\n"
        "            'data': {'name': 'npz', 'path': 'arrays/mine.npz', 'batch_size': 8},\n"
        "            'model': {'name': 'mlp', 'hidden': (4,)}, 'loop': {'steps': 5}}\n")
    monkeypatch.chdir(tmp_path)  # not the config's folder: a path relative to here would fail
    cfg = experiment.load(str(folder / "mine.py"))
    assert cfg["data"]["path"] == str(folder / "arrays" / "mine.npz")
    d = data.load(cfg["data"])
    assert d.spec["num_examples"] == 32 and len(d.splits["test"]["x"]) == 8  # test_fraction 0.2
    # an absolute path is kept as it is
    (folder / "abs.py").write_text(
        "def get_config():\n"
        f"    return {{'algorithm': 'supervised', 'data': {{'name': 'npz', "
        f"'path': {str(folder / 'arrays' / 'mine.npz')!r}}}}}\n")
    assert experiment.load(str(folder / "abs.py"))["data"]["path"] == str(folder / "arrays" / "mine.npz")


def test_npz_corrupt_file_names_it(tmp_path):
    path = tmp_path / "corrupt.npz"
    path.write_bytes(np.random.default_rng(0).bytes(2000))
    with pytest.raises(ConfigError, match=r"corrupt\.npz.*not a readable \.npz"):
        npz.arrays({"path": str(path)})


def test_npz_truncated_zip(tmp_path):
    path = tmp_path / "torn.npz"
    np.savez(path, x=np.zeros(100), y=np.zeros(100), x_test=np.zeros(1), y_test=np.zeros(1))
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(ConfigError, match="torn.npz"):
        npz.arrays({"path": str(path)})


def test_npz_missing_array_missing_file_no_path(tmp_path):
    path = tmp_path / "partial.npz"
    np.savez(path, x=np.zeros(3), x_test=np.zeros(3))
    with pytest.raises(ConfigError, match=r"partial\.npz lacks the arrays \['y'\]"):
        npz.arrays({"path": str(path)})
    with pytest.raises(ConfigError, match="does not exist"):
        npz.arrays({"path": str(tmp_path / "nope.npz")})
    with pytest.raises(ConfigError, match="data.path"):
        npz.arrays({"name": "npz"})
    with pytest.raises(ConfigError, match="data.path"):
        load("npz")  # the default path is empty


def test_npz_refuses_pickles_and_plain_npy(tmp_path):
    path = tmp_path / "objects.npz"
    np.savez(path, x=np.array([{"a": 1}], dtype=object), y=np.zeros(1),
             x_test=np.zeros(1), y_test=np.zeros(1))
    with pytest.raises(ConfigError, match="objects.npz"):
        npz.arrays({"path": str(path)})
    npy = tmp_path / "single.npy"
    np.save(npy, np.zeros(3))
    with pytest.raises(ConfigError, match="single.npy"):
        npz.arrays({"path": str(npy)})


# --- MNIST IDX ------------------------------------------------------------------------------------

def idx_bytes(array: np.ndarray, code: int = 0x08) -> bytes:
    dtype = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}[code]
    head = bytes([0, 0, code, array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape)
    return head + array.astype(dtype).tobytes()


def test_read_idx_ubyte_images_and_labels(tmp_path):
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4) * 10
    labels = np.array([7, 2, 9], np.uint8)
    (tmp_path / "img").write_bytes(idx_bytes(images))
    (tmp_path / "lab").write_bytes(idx_bytes(labels))
    got = mnist_idx.read_idx(tmp_path / "img")
    assert got.shape == (2, 3, 4) and got.dtype == np.uint8
    np.testing.assert_array_equal(got, images)
    np.testing.assert_array_equal(mnist_idx.read_idx(tmp_path / "lab"), labels)
    # the header really is what the format says: magic 0x00000803, then big-endian sizes
    assert (tmp_path / "img").read_bytes()[:8] == bytes.fromhex("0000080300000002")


@pytest.mark.parametrize("code,values", [(0x0C, [1, -2, 70000]), (0x0B, [-300, 5, 1]),
                                         (0x0D, [1.5, -2.25, 3e5]), (0x0E, [1e-300, 2.0, -1.0])])
def test_read_idx_big_endian_types(tmp_path, code, values):
    arr = np.array(values)
    (tmp_path / "f").write_bytes(idx_bytes(arr, code))
    got = mnist_idx.read_idx(tmp_path / "f")
    np.testing.assert_array_equal(got, arr.astype(got.dtype))
    assert got.dtype.isnative


def test_read_idx_bad_magic(tmp_path):
    good = idx_bytes(np.zeros((2, 2), np.uint8))
    for bad in (b"\x01" + good[1:], good[:2] + b"\x07" + good[3:], b"\x00\x00"):
        (tmp_path / "bad").write_bytes(bad)
        with pytest.raises(ConfigError, match=r"bad.*bad magic number"):
            mnist_idx.read_idx(tmp_path / "bad")


def test_read_idx_truncated(tmp_path):
    good = idx_bytes(np.ones((3, 5), np.uint8))
    (tmp_path / "short").write_bytes(good[:-1])
    with pytest.raises(ConfigError, match=r"short: 26 bytes for shape \(3, 5\), expected 27"):
        mnist_idx.read_idx(tmp_path / "short")
    (tmp_path / "long").write_bytes(good + b"\x00")
    with pytest.raises(ConfigError, match="28 bytes .* expected 27"):
        mnist_idx.read_idx(tmp_path / "long")
    (tmp_path / "head").write_bytes(good[:9])
    with pytest.raises(ConfigError, match="truncated header"):
        mnist_idx.read_idx(tmp_path / "head")
    with pytest.raises(ConfigError, match="does not exist"):
        mnist_idx.read_idx(tmp_path / "absent")


def write_mnist(folder, n_train=3, n_test=2, n_train_labels=None):
    rng = np.random.default_rng(0)
    tr = rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8)
    te = rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8)
    ytr = rng.integers(0, 10, n_train_labels or n_train, dtype=np.uint8)
    yte = rng.integers(0, ytr.max() + 1, n_test, dtype=np.uint8)  # within the training classes
    folder.mkdir(exist_ok=True)
    for name, arr in (("train-images-idx3-ubyte", tr), ("train-labels-idx1-ubyte", ytr),
                      ("t10k-images-idx3-ubyte", te), ("t10k-labels-idx1-ubyte", yte)):
        (folder / name).write_bytes(idx_bytes(arr))
    return tr, ytr, te, yte


def test_mnist_idx_folder(tmp_path):
    tr, ytr, te, yte = write_mnist(tmp_path / "mnist")
    d = load("mnist_idx", path=str(tmp_path / "mnist"), batch_size=2)
    splits, spec = d.splits, d.spec
    assert splits["train"]["x"].shape == (3, 28, 28, 1) and splits["test"]["x"].shape == (2, 28, 28, 1)
    np.testing.assert_allclose(splits["train"]["x"][..., 0], tr / 255.0, rtol=1e-6)
    np.testing.assert_allclose(splits["test"]["x"][..., 0], te / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(splits["train"]["y"], ytr)
    np.testing.assert_array_equal(splits["test"]["y"], yte)
    assert splits["train"]["y"].dtype == np.int32
    assert spec["input_shape"] == (28, 28, 1) and spec["task"] == "classification"


def test_mnist_idx_errors(tmp_path):
    write_mnist(tmp_path / "m", n_train_labels=4)
    with pytest.raises(ConfigError, match="3 images but 4 labels"):
        mnist_idx.arrays({"path": str(tmp_path / "m")})
    (tmp_path / "m" / "t10k-labels-idx1-ubyte").unlink()
    write_mnist(tmp_path / "m2")
    (tmp_path / "m2" / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(ConfigError, match="t10k-labels-idx1-ubyte does not exist"):
        mnist_idx.arrays({"path": str(tmp_path / "m2")})


# --- CIFAR-10 binary ------------------------------------------------------------------------------

def write_cifar(folder, per_file=2):
    """Returns {file name: (labels, images [n, 32, 32, 3] uint8)}."""
    folder.mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    out = {}
    for name in [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]:
        labels = rng.integers(0, 10, per_file, dtype=np.uint8)
        images = rng.integers(0, 256, (per_file, 32, 32, 3), dtype=np.uint8)
        records = [bytes([lab]) + img.transpose(2, 0, 1).tobytes()  # channel-major R, G, B planes
                   for lab, img in zip(labels, images)]
        (folder / name).write_bytes(b"".join(records))
        out[name] = (labels, images)
    return out


def test_cifar10_binary(tmp_path):
    written = write_cifar(tmp_path / "cifar")
    a = cifar10_binary.arrays({"path": str(tmp_path / "cifar")})
    assert a["x"].shape == (10, 32, 32, 3) and a["x_test"].shape == (2, 32, 32, 3)
    assert a["x"].dtype == np.float32 and a["y"].dtype == np.int32
    train_labels = np.concatenate([written[f"data_batch_{i}.bin"][0] for i in range(1, 6)])
    train_images = np.concatenate([written[f"data_batch_{i}.bin"][1] for i in range(1, 6)])
    np.testing.assert_array_equal(a["y"], train_labels)
    np.testing.assert_allclose(a["x"], train_images / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(a["y_test"], written["test_batch.bin"][0])
    np.testing.assert_allclose(a["x_test"], written["test_batch.bin"][1] / 255.0, rtol=1e-6)
    # spot check the layout on raw bytes: record 0 of file 1, pixel (row 1, col 2), green channel
    raw = (tmp_path / "cifar" / "data_batch_1.bin").read_bytes()
    assert a["x"][0, 1, 2, 1] == pytest.approx(raw[1 + 1024 + 1 * 32 + 2] / 255.0)
    d = load("cifar10_binary", path=str(tmp_path / "cifar"), batch_size=4)
    assert d.spec["input_shape"] == (32, 32, 3) and d.spec["num_examples"] == 10


def test_cifar10_bad_size(tmp_path):
    write_cifar(tmp_path / "c")
    p = tmp_path / "c" / "data_batch_3.bin"
    p.write_bytes(p.read_bytes() + b"\x00" * 5)
    with pytest.raises(ConfigError, match=r"data_batch_3\.bin: 6151 bytes is not a whole number"):
        cifar10_binary.arrays({"path": str(tmp_path / "c")})
    p.write_bytes(b"")
    with pytest.raises(ConfigError, match=r"data_batch_3\.bin: 0 bytes"):
        cifar10_binary.arrays({"path": str(tmp_path / "c")})


def test_cifar10_bad_label_and_missing_file(tmp_path):
    write_cifar(tmp_path / "c")
    p = tmp_path / "c" / "test_batch.bin"
    raw = bytearray(p.read_bytes())
    raw[3073] = 12
    p.write_bytes(bytes(raw))
    with pytest.raises(ConfigError, match=r"test_batch\.bin: label 12 is not in 0\.\.9"):
        cifar10_binary.arrays({"path": str(tmp_path / "c")})
    (tmp_path / "c" / "data_batch_5.bin").unlink()
    with pytest.raises(ConfigError, match=r"data_batch_5\.bin does not exist"):
        cifar10_binary.arrays({"path": str(tmp_path / "c")})
