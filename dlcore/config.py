"""Experiment configs: plain nested dicts returned by `get_config()` in a Python file.

An experiment is a file `experiments/<family>/<name>.py` (or any path a user passes) defining
`get_config(quick: bool = False) -> dict`. Its docstring says the command, the runtime and the
expected result. Overrides (`--set key=value`) are validated against the config itself before
anything is built or compiled: the key must exist, the value must parse as the type of the default.
Checks on values (a positive learning rate, a known activation) live next to the code that uses
them and raise `ConfigError` too, still before the first compile.
"""
from __future__ import annotations

import ast
import copy
import difflib
import importlib.util
import inspect
import sys
import traceback
from pathlib import Path
from typing import Any, Iterable

__all__ = ["ConfigError", "experiments_dir", "list_experiments", "load", "apply_overrides",
           "flatten", "get", "check", "one_of", "where"]


class ConfigError(ValueError):
    """A bad config key or value, an unknown experiment or unusable input data.

    The command line prints the message alone and exits with status 2.
    """


# --- finding experiments ------------------------------------------------------------------------

def experiments_dir() -> Path:
    """The repository's `experiments/` folder (dlcore is installed editable from the repository)."""
    here = Path(__file__).resolve().parent.parent / "experiments"
    return here if here.is_dir() else Path.cwd() / "experiments"


def list_experiments() -> list[tuple[str, str]]:
    """[(name, its docstring's first sentence)] for every experiment file, sorted by name."""
    root = experiments_dir()
    out = []
    for path in sorted(root.rglob("*.py")):
        if path.name.startswith("_") or path.parts[len(root.parts)] == "studies":
            continue  # studies/ holds scripts that run several experiments, not configs
        name = path.relative_to(root).with_suffix("").as_posix()
        out.append((name, first_sentence(_docstring(path))))
    return out


def first_sentence(doc: str) -> str:
    """The first paragraph of a docstring joined into one line, up to its first full stop (or
    all of it): never cut mid-sentence."""
    paragraph = " ".join(doc.strip().split("\n\n")[0].split())
    for i, ch in enumerate(paragraph):
        if ch == "." and (i + 1 == len(paragraph) or paragraph[i + 1] == " ") and \
                not paragraph[:i + 1].endswith(("e.g.", "i.e.", "et al.", " vs.", "Fig.", "Sec.", "Eq.", "cf.")):
            return paragraph[:i + 1]
    return paragraph


def _docstring(path: Path) -> str:
    return ast.get_docstring(ast.parse(path.read_text())) or ""


def resolve(name_or_path: str) -> tuple[str, Path]:
    """Experiment name ('mnist1d/mlp') or a path to a config file -> (name, path)."""
    p = Path(name_or_path)
    if p.suffix == ".py" and p.is_file():
        return p.stem, p.resolve()
    path = experiments_dir() / f"{name_or_path}.py"
    if path.is_file():
        return name_or_path, path
    names = [n for n, _ in list_experiments()]
    hint = difflib.get_close_matches(name_or_path, names, n=3)
    raise ConfigError(
        f"unknown experiment '{name_or_path}'"
        + (f"; did you mean {', '.join(hint)}?" if hint else "")
        + " (`dlcore list` shows them all; a path to a .py config file also works)")


def load(name_or_path: str, quick: bool = False) -> dict:
    """Import the experiment file and return its `get_config(quick)`, with `experiment` set."""
    name, path = resolve(name_or_path)
    spec = importlib.util.spec_from_file_location(f"dlcore_experiment_{path.stem}", path)
    assert spec is not None and spec.loader is not None  # a .py path always has a loader
    module = importlib.util.module_from_spec(spec)
    own = not path.is_relative_to(experiments_dir().resolve())
    if own and str(path.parent) not in sys.path:  # a config file imports the modules beside it
        sys.path.insert(0, str(path.parent))
    try:
        spec.loader.exec_module(module)
    except Exception as e:  # a syntax error in a user's config deserves a clear message
        raise ConfigError(f"could not import config file {path}: {where(e)}") from None
    if not hasattr(module, "get_config"):
        raise ConfigError(f"config file {path} defines no get_config()")
    if not callable(module.get_config):
        raise ConfigError(f"config file {path}: get_config is not a function")
    try:
        takes_quick = "quick" in inspect.signature(module.get_config).parameters
    except (TypeError, ValueError):  # a callable without a signature: call it plainly
        takes_quick = False
    if quick and not takes_quick:
        raise ConfigError(f"config file {path}: get_config() takes no `quick` argument")
    try:  # the user's code: whatever it raises is one line naming the file and line
        config = module.get_config(quick=quick) if takes_quick else module.get_config()
    except Exception as e:
        raise ConfigError(f"config file {path}: get_config() raised {where(e)}") from None
    if not isinstance(config, dict):
        raise ConfigError(f"config file {path}: get_config() must return a dict of sections; "
                          f"got {type(config).__name__}")
    if not config:
        raise ConfigError(f"config file {path}: get_config() returned an empty dict; it must "
                          "name at least the algorithm and the data ({'algorithm': 'supervised', "
                          "'data': {'name': ...}, ...})")
    try:
        config = copy.deepcopy(config)
    except Exception as e:  # an object in it that cannot be copied (a lock, a generator, ...)
        raise ConfigError(f"config file {path}: get_config() returned a config that cannot be "
                          f"copied ({type(e).__name__}: {e})") from None
    config.setdefault("experiment", name)
    if own:  # where its own modules and relative data paths live
        config["config_dir"] = str(path.parent)
    return config


# --- overrides ----------------------------------------------------------------------------------

def flatten(config: dict, prefix: str = "") -> dict[str, Any]:
    """{'a': {'b': 1}} -> {'a.b': 1}."""
    out = {}
    for k, v in config.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def get(config: dict, key: str) -> Any:
    node = config
    for part in key.split("."):
        node = node[part]
    return node


def apply_overrides(config: dict, overrides: Iterable[str]) -> dict:
    """Return a copy of `config` with each 'dotted.key=value' applied, type-checked."""
    config = copy.deepcopy(config)
    flat = flatten(config)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override '{item}' is not of the form key=value")
        key, text = item.split("=", 1)
        key = key.strip()
        if key not in flat:
            sections = {k.rsplit(".", n)[0] for k in flat for n in range(1, k.count(".") + 1)}
            if key in sections:
                raise ConfigError(f"'{key}' is a section; set one of its keys, e.g. "
                                  f"{sorted(k for k in flat if k.startswith(key + '.'))[0]}")
            hint = difflib.get_close_matches(key, list(flat), n=3)
            raise ConfigError(f"unknown config key '{key}'"
                              + (f"; did you mean {', '.join(hint)}?" if hint else ""))
        value = parse_value(key, text.strip(), flat[key])
        node = config
        *parents, last = key.split(".")
        for p in parents:
            node = node[p]
        node[last] = value
        flat[key] = value
    return config


_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


def parse_value(key: str, text: str, default: Any) -> Any:
    """Parse `text` as the type of `default`; raise ConfigError naming `key` if it does not fit."""
    def bad(kind):
        return ConfigError(f"config key '{key}' expects {kind}, got '{text}'")

    if isinstance(default, bool):
        if text.lower() in _TRUE:
            return True
        if text.lower() in _FALSE:
            return False
        raise bad("true or false")
    if isinstance(default, int):
        try:
            return int(text)
        except ValueError:
            raise bad("an integer") from None
    if isinstance(default, float):
        try:
            return float(text)
        except ValueError:
            raise bad("a number") from None
    if isinstance(default, str):
        return text
    if isinstance(default, (tuple, list)):
        try:
            value = ast.literal_eval(text if text.strip().startswith(("(", "[")) else f"[{text}]")
        except (ValueError, SyntaxError):
            raise bad("a list, e.g. 64,64 or [64, 64]") from None
        if not isinstance(value, (tuple, list)):
            value = [value]
        kinds = {type(x) for x in default}
        if kinds and not all(type(x) in kinds or (float in kinds and isinstance(x, int))
                             for x in value):
            raise bad(f"a list of {'/'.join(sorted(k.__name__ for k in kinds))}")
        return type(default)(value)
    if default is None:
        try:
            return ast.literal_eval(text)
        except (ValueError, SyntaxError):
            if text.startswith("[") and text.endswith("]"):  # [conv_0, dense_*]: the shell ate
                return [w.strip() for w in text[1:-1].split(",") if w.strip()]  # the quotes
            return text
    raise bad(type(default).__name__)


def where(e: BaseException) -> str:
    """'ValueError: ... (my_models.py line 12)': the exception and the last frame that raised it."""
    if isinstance(e, SyntaxError):
        return f"SyntaxError: {e.msg} ({e.filename} line {e.lineno})"
    frames = traceback.extract_tb(e.__traceback__)
    # the last frame of the user's (or dlcore's) code, not of JAX's or the import machinery
    last = next((f for f in reversed(frames) if "importlib" not in f.filename and (
        "site-packages" not in f.filename or "dlcore" in f.filename)), None)
    at = f" ({Path(last.filename).name} line {last.lineno})" if last else ""
    return f"{type(e).__name__}: {e}{at}"


# --- value checks used by the builders ------------------------------------------------------------

def check(ok: bool, key: str, message: str) -> None:
    """Raise ConfigError('config key KEY: MESSAGE') unless `ok`."""
    if not ok:
        raise ConfigError(f"config key '{key}': {message}")


def one_of(value: Any, key: str, choices: Iterable[str]) -> Any:
    choices = sorted(choices)
    check(value in choices, key, f"must be one of {', '.join(map(str, choices))}; got '{value}'")
    return value
