"""Language-modelling data: `text` (any file, char or byte level), `tiny_shakespeare` (found, or
downloaded once and checked; here from a server on loopback serving a small fake corpus) and
minGPT's `sort` demo."""
from __future__ import annotations

import hashlib
import http.server
import itertools
import os
import threading
from pathlib import Path

import jax
import numpy as np
import pytest

from dlcore import data
from dlcore.config import ConfigError
from dlcore.data import sort, text, tiny_shakespeare

REAL_COPY = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "tinyshakespeare.txt"


def load(name, **keys):
    """The Data of source `name`, its section completed from the source's defaults."""
    return data.load({**data.defaults(name), **keys})


def corpus(n=2000, seed=0) -> str:
    """A small text with a few non-ASCII characters."""
    rng = np.random.default_rng(seed)
    return "".join(rng.choice(list("abcdefgh \nXYZé☃"), n))


# --- text ----------------------------------------------------------------------------------------

def test_char_level_vocabulary_splits_and_windows(tmp_path):
    s = corpus()
    f = tmp_path / "c.txt"
    f.write_text(s, encoding="utf-8")
    d = load("text", path=str(f), block_size=16, eval_windows=50)
    spec = d.spec
    assert spec["vocabulary"] == "".join(sorted(set(s)))
    assert spec["vocab_size"] == spec["num_outputs"] == len(set(s))
    assert spec["task"] == "language_model" and spec["input_shape"] == (16,)
    assert spec["token_unit"] == "char" and spec["prompt_length"] == 0 and d.evaluate_train
    ids = np.array([spec["vocabulary"].index(c) for c in s], np.int32)
    n = int(len(ids) * 0.9)  # nanoGPT's split
    tr = d.splits["train"]
    assert tr["tokens"].dtype == np.int32 and np.array_equal(tr["tokens"], ids[:n])
    for split, stream in (("train", ids[:n]), ("validation", ids[n:])):
        x, y = d.splits[split]["x"], d.splits[split]["y"]
        assert x.shape == y.shape == (50, 16) and x.dtype == y.dtype == np.int32
        starts = np.linspace(0, len(stream) - 17, 50).astype(int)
        for i, st in enumerate(starts):
            assert np.array_equal(x[i], stream[st:st + 16])
            assert np.array_equal(y[i], stream[st + 1:st + 17])
    # the windows decode to the file's own slices
    assert spec["decode"](d.splits["train"]["x"][0]) == s[:16]
    assert spec["decode"](spec["encode"]("Xé☃ ab")) == "Xé☃ ab"


def test_byte_level_and_short_split_windows(tmp_path):
    raw = bytes(range(256)) * 2 + b"\xff\xfe"  # not UTF-8: fine for bytes
    f = tmp_path / "b.bin"
    f.write_bytes(raw)
    d = load("text", path=str(f), level="byte", block_size=8, eval_windows=1024)
    assert d.spec["vocab_size"] == 256 and d.spec["vocabulary"] is None
    assert d.spec["token_unit"] == "byte"
    n = int(len(raw) * 0.9)
    assert np.array_equal(d.splits["train"]["tokens"], np.frombuffer(raw[:n], np.uint8))
    val = d.splits["validation"]
    assert len(val["x"]) == len(raw) - n - 8  # fewer windows than asked: every start once
    assert np.array_equal(val["x"][-1], np.frombuffer(raw[-9:-1], np.uint8))
    assert np.array_equal(val["y"][-1], np.frombuffer(raw[-8:], np.uint8))
    assert d.spec["decode"](d.spec["encode"]("héllo ☃")) == "héllo ☃"
    assert d.spec["decode"]([104, 0xff, 105]) == "h\ufffdi"  # not UTF-8: replaced


def test_sample_jittable_deterministic_inside_the_stream(tmp_path):
    f = tmp_path / "c.txt"
    f.write_text(corpus(3000), encoding="utf-8")
    d = load("text", path=str(f), block_size=32, batch_size=64)
    tr = jax.device_put(d.splits["train"])
    sample = jax.jit(d.sample)
    key = jax.random.key(0)
    a, b, c = sample(tr, 3, key), sample(tr, 3, key), sample(tr, 4, key)
    assert a["x"].shape == a["y"].shape == (64, 32) and a["x"].dtype == np.int32
    assert np.array_equal(a["x"], b["x"]) and not np.array_equal(a["x"], c["x"])
    stream = np.asarray(d.splits["train"]["tokens"])
    every = np.lib.stride_tricks.sliding_window_view(stream, 33)  # every (x, y) of the stream
    for batch in (a, c):
        pairs = np.concatenate([batch["x"], batch["y"][:, -1:]], 1)
        assert np.array_equal(pairs[:, 1:], np.asarray(batch["y"]))
        assert (pairs[:, None, :] == every[None]).all(-1).any(1).all()
    # the highest start is N - T - 1, so every window fits: sample many steps
    n, t = len(stream), 32
    starts = jax.vmap(lambda s: jax.random.randint(jax.random.fold_in(key, s), (64,), 0, n - t))(
        np.arange(200))
    assert int(starts.max()) <= n - t - 1


def test_windows_helper():
    x, y = text.windows(np.arange(100, dtype=np.int32), 10, 4)
    assert np.array_equal(x[:, 0], [0, 29, 59, 89]) and np.array_equal(y, x + 1)
    x, y = text.windows(np.arange(12, dtype=np.int32), 10, 1024)  # two starts exist: 0 and 1
    assert np.array_equal(x[:, 0], [0, 1]) and y[-1, -1] == 11


def test_encode_names_unknown_characters(tmp_path):
    f = tmp_path / "c.txt"
    f.write_text("abc abc\n" * 40, encoding="utf-8")
    d = load("text", path=str(f), block_size=8)
    with pytest.raises(ConfigError, match=r"outside the vocabulary of 5 characters.*'é', '☃'"):
        d.spec["encode"]("ab☃é")


@pytest.mark.parametrize("setup, keys, words", [
    (None, {}, "data.path"),
    ("missing", {}, "does not exist"),
    ("dir", {}, "is a directory"),
    ("empty", {}, "is empty"),
    ("latin1", {}, "not UTF-8 text (byte 3 is e9"),
    ("short", {"block_size": 64}, "validation split has 20 characters"),
    ("ok", {"block_size": 0}, "data.block_size"),
    ("ok", {"batch_size": 2.5}, "data.batch_size"),
    ("ok", {"eval_windows": True}, "data.eval_windows"),
    ("ok", {"validation_fraction": 1.0}, "data.validation_fraction"),
    ("ok", {"validation_fraction": 0}, "data.validation_fraction"),
    ("ok", {"level": "word"}, "data.level': must be one of byte, char"),
])
def test_text_bad_inputs(tmp_path, setup, keys, words):
    f = tmp_path / "f.txt"
    if setup == "dir":
        f.mkdir()
    elif setup == "empty":
        f.write_bytes(b"")
    elif setup == "latin1":
        f.write_bytes("abcé".encode("latin-1") + b"x" * 300)
    elif setup == "short":
        f.write_text("x" * 200)
    elif setup == "ok":
        f.write_text("x" * 2000)
    with pytest.raises(ConfigError, match=words.replace("(", r"\(").replace(".", r"\.")) as e:
        load("text", **({"path": str(f)} if setup else {}), **keys)
    if setup in ("missing", "dir", "empty", "latin1", "short"):
        assert str(f) in str(e.value)
    if setup == "latin1":
        assert "level='byte'" in str(e.value)
    if setup == "short":
        assert "needs at least 65" in str(e.value)


# --- tiny_shakespeare ----------------------------------------------------------------------------

FAKE = ("First Citizen:\nBefore we proceed any further, hear me speak.\n\n" * 40).encode()


@pytest.fixture
def fake_corpus(monkeypatch):
    """The module's constants made those of FAKE (the real file is a megabyte)."""
    monkeypatch.setattr(tiny_shakespeare, "SIZE", len(FAKE))
    monkeypatch.setattr(tiny_shakespeare, "SHA256", hashlib.sha256(FAKE).hexdigest())
    monkeypatch.setattr(tiny_shakespeare, "MD5", hashlib.md5(FAKE).hexdigest())
    return FAKE


@pytest.fixture
def server():
    """A loopback HTTP server: /good, /corrupt (one byte changed), /short (truncated), anything
    else 404. `requests` counts the requests made."""
    bodies = {"/good": FAKE, "/corrupt": FAKE[:100] + b"#" + FAKE[101:], "/short": FAKE[:-10]}
    requests = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            requests.append(self.path)
            body = bodies.get(self.path)
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, args=(0.05,), daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}", requests
    srv.shutdown()
    srv.server_close()


def test_real_constants():
    assert tiny_shakespeare.SIZE == 1115394
    assert tiny_shakespeare.MD5 == "6fb458f1232090904fb40fe944165e91"
    assert tiny_shakespeare.SHA256 == \
        "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"
    assert tiny_shakespeare.defaults()["url"] == ("https://raw.githubusercontent.com/karpathy/"
                                                  "char-rnn/master/data/tinyshakespeare/input.txt")


def test_downloads_once_and_caches(fake_corpus, server, tmp_path, capsys):
    base, requests = server
    d1 = load("tiny_shakespeare", url=f"{base}/good", data_dir=str(tmp_path), block_size=16)
    assert requests == ["/good"]
    assert "dlcore: downloading tiny_shakespeare" in capsys.readouterr().err
    assert os.listdir(tmp_path) == ["tinyshakespeare.txt"]
    assert (tmp_path / "tinyshakespeare.txt").read_bytes() == FAKE
    d2 = load("tiny_shakespeare", url=f"{base}/good", data_dir=str(tmp_path), block_size=16)
    assert requests == ["/good"]  # read from the cache
    assert np.array_equal(d1.splits["train"]["tokens"], d2.splits["train"]["tokens"])
    assert d1.spec["vocabulary"] == "".join(sorted(set(FAKE.decode())))
    with pytest.raises(ConfigError, match="characters of tiny_shakespeare: 'Q'"):
        d1.spec["encode"]("Q")


@pytest.mark.parametrize("route", ["/corrupt", "/short"])
def test_damaged_download_is_not_cached(fake_corpus, server, tmp_path, route):
    base, _ = server
    with pytest.raises(ConfigError, match="is damaged .*; nothing was cached"):
        load("tiny_shakespeare", url=base + route, data_dir=str(tmp_path))
    assert os.listdir(tmp_path) == []  # neither the file nor its temporary


def test_unreachable(fake_corpus, server, tmp_path):
    base, _ = server
    with pytest.raises(ConfigError, match=r"cannot download tiny_shakespeare .*\(HTTP 404"):
        load("tiny_shakespeare", url=f"{base}/missing", data_dir=str(tmp_path))
    import socket
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(ConfigError, match="cannot download .* put a copy at .*tinyshakespeare.txt"):
        load("tiny_shakespeare", url=f"http://127.0.0.1:{port}/x", data_dir=str(tmp_path))
    assert os.listdir(tmp_path) == []


def test_local_copies_are_checked(fake_corpus, server, tmp_path):
    base, requests = server
    good, bad = tmp_path / "good.txt", tmp_path / "bad.txt"
    good.write_bytes(FAKE)
    bad.write_bytes(FAKE + b"more")
    d = load("tiny_shakespeare", path=str(good), url=f"{base}/good")
    assert d.splits["train"]["tokens"].size == int(len(FAKE) * 0.9) and requests == []
    with pytest.raises(ConfigError, match=f"data.path': {bad} is not tiny Shakespeare"):
        load("tiny_shakespeare", path=str(bad))
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "tinyshakespeare.txt").write_bytes(FAKE[:-1])
    with pytest.raises(ConfigError, match="is not tiny Shakespeare .*delete it"):
        load("tiny_shakespeare", url=f"{base}/good", data_dir=str(cache))
    assert requests == []


def test_dlcore_data_env(fake_corpus, server, tmp_path, monkeypatch):
    base, requests = server
    monkeypatch.setenv("DLCORE_DATA", str(tmp_path / "env"))
    load("tiny_shakespeare", url=f"{base}/good")
    assert (tmp_path / "env" / "tinyshakespeare.txt").read_bytes() == FAKE
    load("tiny_shakespeare", url=f"{base}/good")
    assert requests == ["/good"]


def test_real_tiny_shakespeare():
    if not REAL_COPY.is_file():
        pytest.skip("tiny Shakespeare is not at ../shared/data/tinyshakespeare.txt (see that "
                    "folder's README)")
    d = load("tiny_shakespeare", path=str(REAL_COPY))
    assert d.spec["vocab_size"] == 65  # nanoGPT's prepare.py: vocab size 65,
    assert d.splits["train"]["tokens"].size == 1_003_854  # train has 1,003,854 tokens
    assert d.splits["validation"]["x"].shape == (1024, 64)
    n_val = 1_115_394 - 1_003_854
    assert n_val == 111_540
    raw = REAL_COPY.read_text()
    assert d.spec["decode"](d.splits["validation"]["y"][-1]) == raw[-64:]
    assert d.spec["decode"](d.splits["train"]["tokens"][:14]) == "First Citizen:"


# --- sort ----------------------------------------------------------------------------------------

def test_sort_splits_examples_and_weights():
    d = load("sort")
    tr, te = d.splits["train"], d.splits["test"]
    assert len(tr["x"]) + len(te["x"]) == 3**6 == 729
    inputs = {tuple(r) for r in np.asarray(tr["x"])[:, :6]}
    test_inputs = {tuple(r) for r in np.asarray(te["x"])[:, :6]}
    assert len(inputs) == len(tr["x"]) and not inputs & test_inputs
    assert inputs | test_inputs == set(itertools.product(range(3), repeat=6))
    for inp in test_inputs:
        assert int(hashlib.sha256(bytes(inp)).hexdigest(), 16) % 4 == 0
    for split in (tr, te):
        x, y = np.asarray(split["x"]), np.asarray(split["y"])
        assert x.shape == y.shape == (len(x), 11) and x.dtype == y.dtype == np.int32
        cat = np.concatenate([x[:, :6], np.sort(x[:, :6], 1)], 1)
        assert np.array_equal(x, cat[:, :-1])
        assert (y[:, :5] == -1).all() and np.array_equal(y[:, 5:], cat[:, 6:])
    distinct = np.array([len(set(r)) for r in np.asarray(tr["x"])[:, :6]])
    assert np.array_equal(tr["weight"], np.where(distinct > 3, 0.5, 1.0))
    spec = d.spec
    assert spec["prompt_length"] == 6 and spec["vocab_size"] == spec["num_outputs"] == 3
    assert spec["input_shape"] == (11,) and spec["token_unit"] == "token"
    assert spec["decode"](te["x"][0]) == "".join(map(str, np.asarray(te["x"][0])))
    assert not d.evaluate_train


def test_sort_inputs_in_product_order():
    assert [tuple(r) for r in sort.all_inputs(4, 3)] == list(itertools.product(range(3), repeat=4))


def test_sort_sample():
    d = load("sort", batch_size=4096)
    tr = jax.device_put(d.splits["train"])
    b = jax.jit(d.sample)(tr, 0, jax.random.key(1))
    assert b["x"].shape == b["y"].shape == (4096, 11)
    train = {tuple(r) for r in np.asarray(tr["x"])}
    assert all(tuple(r) in train for r in np.asarray(b["x"]))
    # inputs with more than 3 distinct digits are drawn at half the rate of the others
    many = np.array([len(set(r)) > 3 for r in np.asarray(b["x"])[:, :6]])
    w = np.asarray(tr["weight"])
    assert abs(many.mean() - w[w == 0.5].sum() / w.sum()) < 0.03
    assert not np.array_equal(b["x"], jax.jit(d.sample)(tr, 1, jax.random.key(1))["x"])


@pytest.mark.parametrize("keys, words", [
    ({"length": 1}, "data.length"),
    ({"num_digits": 11}, "data.num_digits"),
    ({"num_digits": 10, "length": 7}, "at most 2\\*\\*20"),
    ({"batch_size": 0}, "data.batch_size"),
])
def test_sort_bad_settings(keys, words):
    with pytest.raises(ConfigError, match=words):
        load("sort", **keys)
