"""Names in a config become values here, and only here.

A name in `algorithm`, `model.name` or `data.name` may be

* one of dlcore's own short names ('mlp', 'ppo', 'mnist1d'): the module `dlcore.<kind>.<name>`,
  so a new family is a new file and nothing else;
* an importable module, 'mixup_ls' or 'my_project.models' (a bare name that is not dlcore's is a
  module of yours), or an attribute of one, 'my_project.models:ResidualMLP' (a config file's own
  folder is importable, see `import_paths`);
* from Python, the object itself.

`reference(value)` is what a run directory records, so that `dlcore report` can import the same
code again later; an object that cannot be imported by name (defined in a notebook) is recorded by
its repr and reported as such.
"""
from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path
from typing import Any

from dlcore.config import ConfigError, where  # noqa: F401 (where: names.where)


def import_paths(paths) -> None:
    """Make folders importable (a config file's own folder, recorded in its run directory)."""
    for p in paths or ():
        p = str(Path(p).resolve())
        if p not in sys.path:
            sys.path.insert(0, p)


def resolve(name: Any, kind: str, key: str, needs: str) -> Any:
    """The value `name` stands for. kind: dlcore's package of short names ('models', 'data',
    'algorithms'); key: the config key (for messages); needs: what a module must define ('build',
    'load', 'make'), checked for modules only."""
    if name is None or type(name) in (bool, int, float, complex, list, tuple, dict, set, bytes):
        # plain data is never code: a number or a list here is a mistake in a config file (exact
        # types: a NamedTuple such as Data or Algorithm is a value from Python)
        example = {"models": "mlp", "data": "mnist1d", "algorithms": "supervised"}[kind]
        raise ConfigError(f"config key '{key}': must be a name such as '{example}' or "
                          f"'package.module:attribute'; got {name!r} ({_how(kind)})")
    if not isinstance(name, str):
        return name  # the object itself, from Python
    module_name, sep, attr = name.partition(":")
    if not module_name or not all(p.isidentifier() for p in module_name.split(".")) or (
            sep and not all(p.isidentifier() for p in attr.split("."))):
        raise ConfigError(f"config key '{key}': '{name}' is not a name ({_how(kind)})")
    # dlcore's own module of that name first, then the user's; 'a.b.C' may mean 'a.b:C'
    candidates = [(f"dlcore.{kind}.{module_name}", attr)] if "." not in module_name else []
    candidates.append((module_name, attr))
    if not sep and "." in module_name:
        parent, _, last = module_name.rpartition(".")
        candidates.append((parent, last))
    value, lacking = None, None
    for full, attr in candidates:
        try:
            value = _import(full)
        except _Broken as e:  # the user's module itself is broken: say where, in one line
            raise ConfigError(f"config key '{key}': importing '{e.args[0]}' failed: "
                              f"{where(e.__cause__ or e)}") from None
        if value is not None and (not attr or hasattr(value, attr.split(".")[0])):
            break
        if value is not None and sep:
            lacking = lacking or (full, attr)
        value = None
    if value is None and lacking:
        raise ConfigError(f"config key '{key}': module '{lacking[0]}' has no attribute "
                          f"'{lacking[1]}'")
    if value is None:
        if "." not in module_name and not sep:
            what = {"models": "model", "data": "data source", "algorithms": "algorithm"}[kind]
            raise ConfigError(f"config key '{key}': no {what} '{name}' ({_how(kind)})")
        raise ConfigError(f"config key '{key}': cannot import '{name}' (is its folder on the "
                          "path? a config file's own folder is; an attribute is "
                          "'package.module:attribute')")
    for part in attr.split(".") if attr else ():
        if not hasattr(value, part):
            raise ConfigError(f"config key '{key}': '{full}' has no attribute '{attr}'")
        value = getattr(value, part)
    if not attr and not hasattr(value, needs):
        raise ConfigError(f"config key '{key}': module '{full}' defines no {needs}() "
                          f"({_how(kind)})")
    return value


class _Broken(Exception):
    """A module that exists but fails to import (its name in args[0], the error as __cause__)."""


def _import(name: str):
    """The module `name`, None if no such module exists; _Broken if it exists but fails."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as e:
        if e.name == name or name.startswith(f"{e.name}."):
            return None
        raise _Broken(name) from e
    except Exception as e:
        raise _Broken(name) from e


def builtin(kind: str, needs: str) -> list[str]:
    """dlcore's own short names of a kind: its modules that define `needs`."""
    import dlcore
    root = Path(dlcore.__file__).parent / kind
    names = []
    for info in pkgutil.iter_modules([str(root)]):
        if info.name.startswith("_"):
            continue
        source = (root / f"{info.name}.py")
        if source.is_file() and f"\ndef {needs}(" in source.read_text():
            names.append(info.name)
    return sorted(names)


def reference(value: Any) -> str:
    """A string that `resolve` turns back into `value`: its name if it is one, else
    'module:qualname' when that imports back to the same object, else '<repr>' (not importable)."""
    if isinstance(value, str):
        return value
    module, qualname = getattr(value, "__module__", None), getattr(value, "__qualname__", None)
    if hasattr(value, "__spec__") and getattr(value, "__name__", None):  # a module
        return value.__name__
    if module and qualname and module != "__main__" and "<" not in qualname:
        try:
            obj = importlib.import_module(module)
            for part in qualname.split("."):
                obj = getattr(obj, part)
            if obj is value:
                return f"{module}:{qualname}"
        except Exception:
            pass
    return f"<{type(value).__name__} {qualname or ''} defined in {module or 'an unknown module'}" \
           f"{_source_digest(value)}, not importable>"


def _source_digest(value) -> str:
    """' (source 1a2b3c4d)': a short hash of the object's source (of its class for an instance),
    so two different objects defined in a notebook never record the same name."""
    import hashlib
    import inspect
    try:
        source = inspect.getsource(value if (inspect.isclass(value) or inspect.isfunction(value)
                                             or inspect.ismodule(value)) else type(value))
    except (OSError, TypeError):  # no source to read (code typed into a bare interpreter)
        return ""
    return f" (source {hashlib.sha1(source.encode()).hexdigest()[:8]})"


def importable(ref: str) -> bool:
    return not ref.startswith("<")


def _how(kind: str) -> str:
    needs = {"models": "build", "data": "load", "algorithms": "make"}[kind]
    return (f"dlcore's are {', '.join(builtin(kind, needs))}; your own is 'package.module' or "
            "'package.module:attribute'")
