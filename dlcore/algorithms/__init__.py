"""Training algorithms, one file each. An algorithm module defines

    defaults() -> {section: {key: default}}   # the config sections it reads ('model', 'optim', ...)
    make(config, data, steps) -> Algorithm    # config: the completed sections; data: dlcore.core.Data

and `Algorithm(init, step, evaluate, headline, pictures, extras)` is the one contract of dlcore
(dlcore.core). `algorithm` in a config resolves (dlcore.names) to `dlcore.algorithms.<name>`, to
your own module, or to a `make` function or an `Algorithm` value of yours. Algorithms import no
other algorithm and not the loop; what several share lives in a module they all use (dlcore.meta,
dlcore.rl, dlcore.optim, dlcore.models). A module may also declare `HYPER`, the config keys its
state carries as traced hyperparameters (dlcore.sweep).
"""
from dlcore.core import Algorithm

__all__ = ["Algorithm"]
