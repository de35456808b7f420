"""dlcore.data.glyphs: the procedural many-class glyph data set, its cache and its class split."""
from __future__ import annotations

import numpy as np
import pytest

from dlcore.config import ConfigError
from dlcore.data import glyphs

SMALL = dict(num_classes=12, per_class=5, size=20, seed=3)


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    d = tmp_path / "cache"
    monkeypatch.setenv("DLCORE_CACHE", str(d))
    return d


@pytest.fixture(scope="module")
def small():
    return glyphs.generate(**SMALL)


# --- the glyphs that exist ------------------------------------------------------------------------

def test_strokes_are_the_20_unit_strokes_of_a_3x3_grid():
    xy = np.array([(p % 3, p // 3) for p in range(9)])
    steps = [tuple(np.abs(xy[b] - xy[a])) for a, b in glyphs.STROKES]
    assert len(set(glyphs.STROKES)) == 20
    assert steps.count((1, 0)) == 6 and steps.count((0, 1)) == 6 and steps.count((1, 1)) == 8


def test_glyph_table_connected_distinct_up_to_translation():
    table = glyphs.glyph_table()
    assert table.shape == (glyphs.NUM_GLYPHS, 20) and table.dtype == bool
    assert set(table.sum(1).tolist()) == {3, 4, 5}
    assert len(np.unique(table, axis=0)) == len(table)
    xy = np.array([(p % 3, p // 3) for p in range(9)])
    shapes = set()
    for row in table:
        strokes = [glyphs.STROKES[s] for s in np.flatnonzero(row)]
        reached, grew = set(strokes[0]), True  # an independent connectivity check
        while grew:
            new = {p for s in strokes if reached & set(s) for p in s} - reached
            reached |= new
            grew = bool(new)
        assert all(set(s) <= reached for s in strokes)
        points = {p for s in strokes for p in s}
        low = xy[list(points)].min(0)
        shapes.add(frozenset(tuple(sorted(map(tuple, xy[list(s)] - low))) for s in strokes))
    assert len(shapes) == len(table)  # no glyph is a shifted copy of another


def test_choose_classes_distinct_prefix_stable_and_stroke_counts_take_turns():
    table = glyphs.glyph_table()
    idx = glyphs.choose_classes(table, 300, seed=0)
    assert len(set(idx.tolist())) == 300
    np.testing.assert_array_equal(glyphs.choose_classes(table, 30, seed=0), idx[:30])
    assert table[idx].sum(1).tolist() == [3, 4, 5] * 100
    assert not np.array_equal(glyphs.choose_classes(table, 30, seed=1), idx[:30])
    assert len(set(glyphs.choose_classes(table, glyphs.NUM_GLYPHS, 0).tolist())) == glyphs.NUM_GLYPHS


# --- generation -----------------------------------------------------------------------------------

def test_shapes_dtypes_ranges(small):
    x, a = small["x"], small["attributes"]
    assert x.shape == (12, 5, 20, 20, 1) and x.dtype == np.float32
    assert a.shape == (12, 20) and a.dtype == np.float32
    assert x.min() >= 0.0 and x.max() <= 1.0 and x.max() == 1.0
    assert set(np.unique(a).tolist()) == {0.0, 1.0}
    assert set(a.sum(1).tolist()) <= {3.0, 4.0, 5.0}
    np.testing.assert_array_equal(np.round(x * 255) / 255, x)  # quantised as the cache stores it
    ink = x.mean((1, 2, 3, 4))
    assert np.all(ink > 0.03) and np.all(ink < 0.4)  # every class draws something, none fills the image


def test_deterministic_and_seeded(small):
    again = glyphs.generate(**SMALL)
    for k in small:
        np.testing.assert_array_equal(again[k], small[k])
    other = glyphs.generate(**{**SMALL, "seed": 4})
    assert not np.array_equal(other["attributes"], small["attributes"])


def test_fewer_classes_or_examples_give_a_prefix(small):
    fewer = glyphs.generate(num_classes=5, per_class=3, size=20, seed=3)
    np.testing.assert_array_equal(fewer["x"], small["x"][:5, :3])
    np.testing.assert_array_equal(fewer["attributes"], small["attributes"][:5])


def test_classes_have_distinct_attributes(small):
    assert len(np.unique(small["attributes"], axis=0)) == len(small["attributes"])


def test_examples_differ_but_resemble_their_own_class(small):
    x = small["x"].reshape(12, 5, -1)
    flat = x.reshape(60, -1)
    d = np.linalg.norm(flat[:, None] - flat[None], axis=-1)  # [60, 60]
    same = np.kron(np.eye(12, dtype=bool), np.ones((5, 5), bool))
    off_diagonal = ~np.eye(60, dtype=bool)
    assert d[same & off_diagonal].min() > 0.5  # every drawing of a class is distorted differently
    assert d[same & off_diagonal].mean() < 0.9 * d[~same].mean()


def test_render_draws_a_line_where_the_segment_is():
    points = np.zeros((1, 9, 2))
    points[0, 0], points[0, 1] = (2.0, 5.5), (8.0, 5.5)  # stroke 0 joins grid points 0 and 1
    img = glyphs.render(points, np.zeros((1, 1), int), np.array([2.0]), 10)[0]
    assert img.shape == (10, 10)
    assert np.all(img[5, 2:8] == 1.0) and np.all(img[2, :] == 0.0) and np.all(img[5, 9:] == 0.0)
    assert img[4, 4] == pytest.approx(0.5) and img[3, 4] == 0.0  # edge pixels half inked


# --- cache and splits -----------------------------------------------------------------------------

CFG = dict(num_classes=10, per_class=4, image_size=16, data_seed=1, test_classes=3)


def test_load_caches_and_reads_back(cache_dir, monkeypatch):
    splits = glyphs.splits(CFG)
    written = sorted(p.name for p in cache_dir.iterdir())
    assert written == [glyphs.cache_name(10, 4, 16, 1)]
    assert glyphs.VERSION in written[0] and "c10-m4-s16-seed1" in written[0]
    assert glyphs.cache_name(10, 4, 16, 2) != written[0]
    fresh = glyphs.generate(10, 4, 16, 1)

    def no_generate(*args):
        raise AssertionError("regenerated although the cache was there")
    monkeypatch.setattr(glyphs, "generate_uint8", no_generate)
    again = glyphs.splits({**CFG, "unrelated": 1})
    for split in (splits, again):
        joined = {k: np.concatenate([split["train"][k], split["test"][k]]) for k in fresh}
        for k in fresh:
            np.testing.assert_array_equal(joined[k], fresh[k])
            assert joined[k].dtype == np.float32


def test_torn_cache_file_is_regenerated(cache_dir):
    cache_dir.mkdir()
    (cache_dir / glyphs.cache_name(10, 4, 16, 1)).write_bytes(b"not a zip")
    splits = glyphs.splits(CFG)
    assert splits["train"]["x"].shape == (7, 4, 16, 16, 1)


def test_split_sizes_and_disjointness(cache_dir):
    s = glyphs.splits({**CFG, "validation_classes": 2})
    assert [s[k]["x"].shape[0] for k in ("train", "validation", "test")] == [5, 2, 3]
    assert [s[k]["attributes"].shape for k in ("train", "validation", "test")] == [(5, 20), (2, 20),
                                                                                  (3, 20)]
    full = glyphs.generate(10, 4, 16, 1)
    np.testing.assert_array_equal(s["test"]["x"], full["x"][-3:])  # the LAST classes are the test set
    np.testing.assert_array_equal(s["validation"]["x"], full["x"][5:7])
    rows = [tuple(r) for k in s for r in s[k]["attributes"]]
    assert len(set(rows)) == 10  # no class in two splits
    assert set(glyphs.splits(CFG)) == {"train", "test"}  # no validation split unless asked


@pytest.mark.parametrize("change, key, words", [
    ({"num_classes": glyphs.NUM_GLYPHS + 1}, "data.num_classes", str(glyphs.NUM_GLYPHS)),
    ({"num_classes": 2}, "data.num_classes", "[3,"),
    ({"num_classes": 10.0}, "data.num_classes", "integer"),
    ({"per_class": 1}, "data.per_class", "[2,"),
    ({"image_size": 4}, "data.image_size", "[8,"),
    ({"data_seed": -1}, "data.data_seed", "integer"),
    ({"data_seed": True}, "data.data_seed", "True"),
    ({"test_classes": 10}, "data.test_classes", "[1, 9]"),
    ({"test_classes": 0}, "data.test_classes", "[1, 9]"),
    ({"validation_classes": -1}, "data.validation_classes", "integer"),
    ({"validation_classes": 7}, "data.validation_classes", "no training classes"),
])
def test_config_errors(cache_dir, change, key, words):
    with pytest.raises(ConfigError) as e:
        glyphs.splits({**CFG, **change})
    assert f"'{key}'" in str(e.value) and words in str(e.value)
    assert not cache_dir.exists() or not any(cache_dir.iterdir())  # checked before generating


def test_picture(tmp_path):
    path = glyphs.picture(tmp_path / "figs" / "g.png", num_classes=2, per_class=3, size=16)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_load_is_episodic_data_with_attributes(cache_dir):
    import jax
    cfg = {**glyphs.defaults(), **CFG, "batch_size": 2, "n_way": 3, "k_shot": 1, "q_query": 2,
           "eval_tasks": 4, "eval_chunk": 2}
    d = glyphs.load(cfg)
    assert d.spec["input_shape"] == (16, 16, 1) and d.spec["num_train_classes"] == 7
    assert d.spec["attribute_dim"] == 20 and d.spec["num_outputs"] == 3
    batch = jax.jit(d.sample)(d.splits["train"], 0, jax.random.key(0))
    assert batch["attributes"].shape == (2, 3, 20)
    # each episode's attributes are those of the classes it drew
    np.testing.assert_array_equal(batch["attributes"],
                                  d.splits["train"]["attributes"][np.asarray(batch["classes"])])
    n, chunk, tasks = d.spec["eval_tasks"]
    assert tasks(d.splits["test"], 1)["attributes"].shape == (2, 3, 20)
