"""Tiny Shakespeare (char-rnn's `input.txt`, nanoGPT's shakespeare_char): 1,115,394 characters,
65 distinct; `data.name: tiny_shakespeare`.

The corpus is built exactly as `dlcore.data.text` builds any file (same keys, same splits, batches
and spec: 1,003,854 train and 111,540 validation characters by default). The file is found, in
order, at

1. `data.path`: a local copy, which must be tiny Shakespeare byte for byte (data.name=text reads
   any other file);
2. `<data_dir>/tinyshakespeare.txt`, data_dir being `data.data_dir`, else $DLCORE_DATA, else
   dlcore's cache folder ($DLCORE_CACHE, ~/.cache/dlcore);
3. downloaded once from `data.url` into that folder: the size and SHA-256 are checked before the
   file takes its name, so a failed or damaged download is never cached.
"""
from __future__ import annotations

import hashlib
import http.client
import os
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from dlcore.config import ConfigError, check
from dlcore.core import Data
from dlcore.data import text
from dlcore.data.cache import cache_path

URL = "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
FILENAME = "tinyshakespeare.txt"
SIZE = 1115394
MD5 = "6fb458f1232090904fb40fe944165e91"
SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"
TIMEOUT = 30  # seconds without an answer from the server before the download gives up
NAME = "tiny_shakespeare"


def defaults() -> dict:
    return {**text.defaults(), "data_dir": None, "url": URL}


def load(cfg: dict) -> Data:
    """The `Data` of a `tiny_shakespeare` section (dlcore.data.text's layout)."""
    text.settings(cfg)  # a bad setting is named before anything is read or downloaded
    path, raw = find(cfg)
    return text.from_bytes(raw, cfg, NAME, what=f"{NAME} ({path})")


def find(cfg: dict) -> tuple[Path, bytes]:
    """(where the file is, its bytes), checked; downloaded first when there is no copy."""
    local = cfg.get("path")
    if local not in (None, ""):
        check(isinstance(local, (str, Path)), "data.path",
              f"must name a local copy of tiny Shakespeare; got {local!r}")
        path = Path(local).expanduser()
        raw = text.read_bytes(path)
        check(_matches(raw), "data.path",
              f"{path} is not tiny Shakespeare ({_describe(raw)}; expected {_expected()}); "
              "data.name=text reads any other text file")
        return path, raw
    path = data_dir(cfg) / FILENAME
    if path.exists():
        raw = text.read_bytes(path)
        if not _matches(raw):
            raise ConfigError(f"data file {path} is not tiny Shakespeare ({_describe(raw)}; "
                              f"expected {_expected()}); delete it and it is downloaded again")
        return path, raw
    return path, download(cfg.get("url") or URL, path)


def data_dir(cfg: dict) -> Path:
    """data.data_dir, else $DLCORE_DATA, else dlcore's cache folder."""
    d = cfg.get("data_dir")
    if d in (None, ""):
        d = os.environ.get("DLCORE_DATA") or cache_path(FILENAME).parent
    check(isinstance(d, (str, Path)), "data.data_dir", f"must name a folder; got {d!r}")
    return Path(d).expanduser()


def download(url: str, path: Path) -> bytes:
    """The file at `url`, written to `path` only once its size and SHA-256 are right."""
    check(isinstance(url, str), "data.url", f"must be a URL; got {url!r}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{FILENAME}.", suffix=".part")
    except OSError as e:
        raise ConfigError(f"cannot write to {path.parent} ({e.strerror or e}); set data.data_dir "
                          f"or $DLCORE_DATA to a writable folder, or data.path to a copy of "
                          f"{NAME}") from None
    print(f"dlcore: downloading {NAME} from {url} to {path}", file=sys.stderr)
    try:
        with os.fdopen(fd, "wb") as f:
            raw = _fetch(url, path)
            f.write(raw)
        if not _matches(raw):
            raise ConfigError(f"the download of {NAME} from {url} is damaged ({_describe(raw)}; "
                              f"expected {_expected()}); nothing was cached")
        os.replace(tmp, path)  # atomic: a reader sees no file or the whole checked one
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return raw


def _fetch(url: str, path: Path) -> bytes:
    """The body at `url`, at most SIZE + 1 bytes (a longer answer is not the file either)."""
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT) as response:
            chunks, got = [], 0
            while got <= SIZE:
                chunk = response.read(min(1 << 16, SIZE + 1 - got))
                if not chunk:
                    break
                chunks.append(chunk)
                got += len(chunk)
            return b"".join(chunks)
    except (OSError, http.client.HTTPException, ValueError) as e:  # ValueError: not a URL
        if isinstance(e, urllib.error.HTTPError):
            e.close()  # it holds the server's answer open
            reason = f"HTTP {e.code} {e.reason}"
        elif isinstance(e, urllib.error.URLError):
            reason = str(e.reason)
        else:
            reason = f"{type(e).__name__}: {e}"
        raise ConfigError(f"cannot download {NAME} from {url} ({reason}); put a copy at "
                          f"{path} or set data.path") from None


def _matches(raw: bytes) -> bool:
    return len(raw) == SIZE and hashlib.sha256(raw).hexdigest() == SHA256


def _describe(raw: bytes) -> str:
    return f"{len(raw):,} bytes, sha256 {hashlib.sha256(raw).hexdigest()}"


def _expected() -> str:
    return f"{SIZE:,} bytes, sha256 {SHA256}"
