"""Data sources: each turns its `data` config section into one `Data` value (dlcore.core):

    data = load(cfg)          # splits, spec, sample(train_split, step, key) -> batch

`data.name` resolves (dlcore.names) to a source: a module with `defaults() -> dict` (every key of
its section besides `name`) and `load(cfg) -> Data`. dlcore's own are the modules of this package
that define `load`, one file per name:

* arrays of examples (`dlcore.data.arrays`): mnist1d, digits, diabetes, adding, npz, mnist_idx,
  cifar10_binary; batch {'x': [b, ...], 'y': [b] int or [b, d] float};
* tasks drawn from a key: sinusoid; batch {'support', 'query', ...} (dlcore.data.sinusoid);
* class-major arrays cut into N-way K-shot episodes: glyphs, digits_classes (dlcore.data.episodes);
* environments (dlcore.data.env): the RL step collects its own experience, so the batch is None.

A user's source is `package.module` (a module as above) or `package.module:function`, a function
`load(cfg)` returning a `Data` or a dict of arrays {'x', 'y'[, 'x_test', 'y_test']}, which become
array data with the array keys (batch_size, shuffle, test_fraction, validation_fraction, ...).
"""
from __future__ import annotations

import inspect
from typing import Any

from dlcore import names
from dlcore.core import Data

__all__ = ["Data", "source", "defaults", "load"]


def source(name: Any):
    return names.resolve(name, "data", "data.name", "load")


def _is_module_like(src) -> bool:
    return hasattr(src, "load") and not inspect.isfunction(src) and not isinstance(src, Data)


def _own(src) -> bool:
    """Whether `src` is one of dlcore's own data sources."""
    return str(getattr(src, "__module__", None) or getattr(src, "__name__", "")).startswith("dlcore.")


def defaults(name: Any) -> dict:
    """The full `data` section of source `name`."""
    from dlcore.data import arrays
    src = source(name)
    if isinstance(src, Data):
        own: dict = {}
    elif _is_module_like(src):
        own = src.defaults() if hasattr(src, "defaults") else {}
    else:  # a function returning arrays (or a Data)
        own = arrays.defaults(test_fraction=0.2)
    return {"name": name, **own}


def load(cfg: dict) -> Data:
    """The `Data` of a complete `data` section (ConfigError for anything unusable)."""
    from dlcore.config import ConfigError
    from dlcore.data import arrays
    src = source(cfg["name"])
    if isinstance(src, Data):
        return src
    try:
        out = src.load(cfg) if _is_module_like(src) else src(cfg)
    except MemoryError as e:  # sizes in the section beyond this machine: a setting, not a bug
        raise ConfigError(f"config section 'data' ({names.reference(cfg['name'])}): not enough "
                          f"memory to build the data ({e}); lower its sizes") from None
    except ConfigError:
        raise
    except Exception as e:
        if _own(src):  # a failure of dlcore's own source is a bug: its traceback is wanted
            raise
        # a source of yours failed on this section or its files: where, in one line
        raise ConfigError(f"config key 'data.name': {names.reference(cfg['name'])} raised "
                          f"{names.where(e)}") from None
    if isinstance(out, dict) and "x" in out:
        return arrays.from_arrays(out, cfg)
    if not isinstance(out, Data):
        raise ConfigError(f"config key 'data.name': '{names.reference(cfg['name'])}' returned "
                          f"{type(out).__name__}; a data source returns a dlcore Data or a dict of "
                          "arrays {'x', 'y'[, 'x_test', 'y_test']}")
    return out
