"""Training algorithms, each a small bundle of pure functions (the one contract of dlcore):

    init(key)                  -> state            # a pytree
    step(state, batch, key)    -> (state, metrics) # one update; metrics: flat dict of scalars
    evaluate(state, data, key) -> metrics          # on a whole split

Each algorithm is a module with `make(config, spec) -> Algorithm`; the host loop imports it by the
config's `algorithm` name (`dlcore.algorithms.<name>`), so a new algorithm is a new file.
"""
from __future__ import annotations

import importlib
from typing import Any, Callable, NamedTuple

from dlcore.config import ConfigError


class Algorithm(NamedTuple):
    init: Callable[[Any], Any]
    step: Callable[[Any, Any, Any], tuple[Any, dict]]
    evaluate: Callable[[Any, Any, Any], dict]
    # meta-learning: the inner loop adapt(params, support, key) -> params, for users and tests
    adapt: Callable | None = None
    # summary.json name -> evaluation metric ('split/name') it repeats without the split prefix
    aliases: dict | None = None
    # RL: act(state) -> the greedy policy, obs [B, ...] -> actions [B, ...] (episode pictures)
    act: Callable | None = None


def get(name: str):
    """The algorithm module `dlcore.algorithms.<name>`."""
    if not isinstance(name, str) or not name.isidentifier() or name.startswith("_"):
        raise ConfigError(f"config key 'algorithm': no algorithm {name!r}")
    try:
        return importlib.import_module(f"dlcore.algorithms.{name}")
    except ModuleNotFoundError as e:
        if e.name != f"dlcore.algorithms.{name}":
            raise
        raise ConfigError(f"config key 'algorithm': no algorithm '{name}' "
                          f"(a module dlcore/algorithms/{name}.py)") from None
