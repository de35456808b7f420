"""A character- or byte-level language-modelling corpus from any UTF-8 file (`data.name: text`).

As nanoGPT's shakespeare_char: the file is one token stream, its first 90 % the train split and
its last 10 % the validation split; a training batch is `batch_size` windows of `block_size`
tokens at random starts, the targets the same windows shifted by one token.

    splits = {'train':      {'tokens': [N_train] int32, 'x': [n_eval, T] int32, 'y': [n_eval, T]},
              'validation': {'x': [n_eval, T] int32, 'y': [n_eval, T] int32}}
    batch  = {'x': [batch_size, T] int32, 'y': [batch_size, T] int32}

Keys: path (the file), level ('char': the vocabulary is the sorted set of the file's characters;
'byte': the 256 byte values, any file), block_size T, batch_size, validation_fraction,
eval_windows (the fixed windows each split is scored on, spaced evenly over it: the same for
every seed and run). spec['encode'](str) -> ids and spec['decode'](ids) -> str turn prompts and
samples into text.
"""
from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from dlcore.config import ConfigError, check, one_of
from dlcore.core import Data

LEVELS = ("char", "byte")
_NOUN = {"char": "characters", "byte": "bytes", "token": "tokens"}


def defaults() -> dict:
    return {"path": None, "level": "char", "block_size": 64, "batch_size": 12,
            "validation_fraction": 0.1, "eval_windows": 1024}


def load(cfg: dict) -> Data:
    """The `Data` of a `text` section (module docstring)."""
    settings(cfg)  # the settings first: a bad one is named even when the file is bad too
    path = cfg.get("path")
    check(isinstance(path, (str, Path)) and str(path) != "", "data.path",
          f"must name a UTF-8 text file (or any file with data.level='byte'); got {path!r}")
    path = Path(path).expanduser()
    return from_bytes(read_bytes(path), cfg, str(path))


def settings(cfg: dict) -> dict:
    """The checked keys of a section: {level, block_size, batch_size, validation_fraction,
    eval_windows} (defaults for those missing)."""
    s = {k: cfg.get(k, v) for k, v in defaults().items() if k != "path"}
    one_of(s["level"], "data.level", LEVELS)
    for key in ("block_size", "batch_size", "eval_windows"):
        check(type(s[key]) is int and s[key] > 0, f"data.{key}",
              f"must be a positive integer; got {s[key]!r}")
    vf = s["validation_fraction"]
    check(isinstance(vf, (int, float)) and not isinstance(vf, bool) and 0 < vf < 1,
          "data.validation_fraction", f"must be a fraction in (0, 1); got {vf!r}")
    return s


def read_bytes(path: Path) -> bytes:
    """The whole file; ConfigError naming it when it is missing, a folder, unreadable or empty."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"data file {path} does not exist") from None
    except IsADirectoryError:
        raise ConfigError(f"data file {path} is a directory, not a text file") from None
    except OSError as e:
        raise ConfigError(f"data file {path} cannot be read ({type(e).__name__}: "
                          f"{e.strerror or e})") from None
    if not raw:
        raise ConfigError(f"data file {path} is empty")
    return raw


def tokenize(raw: bytes, level: str, what: str) -> tuple[np.ndarray, str | None]:
    """(tokens [n] int32, vocabulary): for 'char' the vocabulary is the sorted string of the
    distinct characters and tokens index it; for 'byte' tokens are the bytes, vocabulary None.
    what: what messages call the data ('data file PATH')."""
    if level == "byte":
        return np.frombuffer(raw, np.uint8).astype(np.int32), None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{what} is not UTF-8 text (byte {e.start:,} is "
                          f"{raw[e.start:e.start + 1].hex()}: {e.reason}); data.level='byte' "
                          "reads any file") from None
    # code points as one array: np.unique sorts them (the order of sorted(set(text))) and its
    # inverse is the token stream, in milliseconds for a megabyte
    codes, tokens = np.unique(_code_points(text), return_inverse=True)
    return tokens.astype(np.int32).reshape(-1), _from_code_points(codes)


def from_bytes(raw: bytes, cfg: dict, name: str, what: str | None = None) -> Data:
    """The `Data` of a corpus given as bytes. name: what the spec's messages call it (a file's
    path, 'tiny_shakespeare'); what: what errors in the data call it (default 'data file NAME')."""
    s = settings(cfg)
    t, batch = s["block_size"], s["batch_size"]
    what = what or f"data file {name}"
    tokens, vocabulary = tokenize(raw, s["level"], what)
    n = len(tokens)
    # nanoGPT: train = data[:int(n*0.9)], val = data[int(n*0.9):]
    n_train = int(n * (1 - s["validation_fraction"]))
    train, val = tokens[:n_train], tokens[n_train:]
    for split, part in (("train", train), ("validation", val)):
        if len(part) < t + 1:  # a window and its target shifted by one
            raise ConfigError(f"{what}: the {split} split has {len(part):,} "
                              f"{_NOUN[s['level']]} (of {n:,}, validation_fraction "
                              f"{s['validation_fraction']}); block_size {t} needs at least "
                              f"{t + 1}; lower data.block_size or use a longer file")
    x_tr, y_tr = windows(train, t, s["eval_windows"])
    x_val, y_val = windows(val, t, s["eval_windows"])
    splits = {"train": {"tokens": train, "x": x_tr, "y": y_tr},
              "validation": {"x": x_val, "y": y_val}}

    def sample(train_split, step, key):
        """{'x', 'y'}: [batch, T] int32 windows at random starts of the train stream."""
        stream = train_split["tokens"]
        # high is exclusive: the last start is N - T - 1, so y's last index N - 1 is valid
        starts = jax.random.randint(jax.random.fold_in(key, step), (batch,), 0,
                                    stream.shape[0] - t)
        idx = starts[:, None] + jnp.arange(t)
        return {"x": stream[idx], "y": stream[idx + 1]}

    return Data(splits, language_spec(vocabulary, t, s["level"], name), sample,
                evaluate_train=True)


def windows(tokens: np.ndarray, block_size: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(x, y), each [m, block_size] int32: m = min(n, len - block_size) windows at starts spaced
    evenly from 0 to len - block_size - 1 (distinct starts, so fewer when the stream is short);
    y is x shifted by one token."""
    t = block_size
    m = min(n, len(tokens) - t)
    starts = np.linspace(0, len(tokens) - t - 1, m).astype(int)
    w = np.asarray(tokens, np.int32)[starts[:, None] + np.arange(t + 1)]
    return w[:, :-1].copy(), w[:, 1:].copy()


def language_spec(vocabulary: str | None, block_size: int, unit: str, name: str,
                  prompt_length: int = 0) -> dict:
    """The spec of a language-modelling source. vocabulary: the string of its symbols (token i is
    vocabulary[i]) or None for the 256 byte values; unit: 'char', 'byte' or 'token' (what a token
    is); name: what messages call the data; prompt_length: the tokens of a sequence given to the
    model rather than predicted (0: all of it is predicted)."""
    if vocabulary is None:
        size = 256

        def encode(text: str) -> np.ndarray:
            """[n] int32: the UTF-8 bytes of `text`."""
            return np.frombuffer(text.encode("utf-8"), np.uint8).astype(np.int32)

        def decode(ids) -> str:
            """The text of byte ids; bytes that are not UTF-8 become U+FFFD."""
            return np.asarray(ids).astype(np.uint8).reshape(-1).tobytes().decode(
                "utf-8", errors="replace")
    else:
        size = len(vocabulary)
        codes = _code_points(vocabulary)
        order = np.argsort(codes)  # searchsorted needs sorted code points; ids keep the order given

        def encode(text: str) -> np.ndarray:
            """[n] int32: the vocabulary index of each character of `text`."""
            c = _code_points(text)
            pos = np.minimum(np.searchsorted(codes[order], c), size - 1)
            known = codes[order][pos] == c
            if not known.all():
                bad = _from_code_points(np.unique(c[~known]))
                shown = ", ".join(map(repr, bad[:10])) + (
                    f" and {len(bad) - 10} more" if len(bad) > 10 else "")
                raise ConfigError(f"the prompt has characters outside the vocabulary of {size} "
                                  f"{_NOUN.get(unit, unit)} of {name}: {shown}")
            return order[pos].astype(np.int32)

        def decode(ids) -> str:
            """The text of vocabulary ids."""
            return _from_code_points(codes[np.asarray(ids, np.int64).reshape(-1)])
    return {"task": "language_model", "input_shape": (block_size,), "input_dtype": "int32",
            "num_outputs": size, "vocab_size": size, "block_size": block_size,
            "token_unit": unit, "vocabulary": vocabulary, "encode": encode, "decode": decode,
            "prompt_length": prompt_length}


def _code_points(text: str) -> np.ndarray:
    """[len(text)] uint32: the code point of each character."""
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), "<u4")


def _from_code_points(codes: np.ndarray) -> str:
    return np.asarray(codes, "<u4").tobytes().decode("utf-32-le", "surrogatepass")
