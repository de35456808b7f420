"""Models: any Flax module, Linen or NNX, behind one pair of pure functions.

    model = build(cfg, input_shape, num_outputs)      # cfg: the `model` config section
    variables = model.init(key, x)                    # {'params': ..., other collections}
    out, state = model.apply(variables, x, train, key)  # state: the non-parameter collections
                                                      # after the call (batch statistics)

`model.name` resolves (dlcore.names) to

* a family: a module with `defaults() -> dict` (every key its section has besides `name` and
  `input_shape`) and `build(cfg, input_shape, num_outputs) -> module`. dlcore's families are
  `dlcore/models/<name>.py` (mlp, logreg, cnn, rnn); a family may also offer
  `pictures(model, state, data, out_dir, title) -> [paths]` (a CNN's filters, say);
* a Flax Linen `nn.Module` class: the section's other keys are its fields;
* a Flax NNX `nnx.Module` class: the section's other keys are its constructor's arguments, and it
  becomes pure functions through `nnx.split`/`nnx.merge` (the `NNX` adapter below);
* from Python, a Linen module or an NNX module itself (an NNX instance already holds its
  parameters: they are every seed's initial parameters; pass the class for seeds that differ).

Fields or arguments named `num_outputs`, `input_shape` or `in_features` (the flattened input size)
are filled from the data. Every section also has `input_shape` (None accepts any): the data's
example shape is checked against it before anything compiles, naming both.
"""
from __future__ import annotations

import dataclasses
import inspect
import math
from typing import Any, Callable, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from dlcore import names
from dlcore.config import ConfigError

FROM_DATA = ("num_outputs", "input_shape", "in_features")
REQUIRED = "<required>"  # a default marking a key the section must set


class Model(NamedTuple):
    """init(key, x) -> variables; apply(variables, x, train=False, key=None) -> (out, state).
    module: the Flax module behind them (for pictures and analysis); family: where it came from."""
    init: Callable
    apply: Callable
    module: Any
    family: Any = None


# --- families and classes: defaults ----------------------------------------------------------------

def family(name: Any):
    """The family, Linen class, NNX class or module object that `model.name` stands for."""
    return names.resolve(name, "models", "model.name", "build")


def defaults(name: Any) -> dict:
    """The full `model` section for `name`: {'name', ...its keys..., 'input_shape': None}."""
    fam = family(name)
    if hasattr(fam, "defaults") and hasattr(fam, "build") and not inspect.isclass(fam):
        own = fam.defaults()
    elif _is_linen_class(fam):
        own = {f.name: _default(f) for f in dataclasses.fields(fam)
               if f.init and f.name not in ("parent", "name", *FROM_DATA)}
    elif _is_nnx_class(fam):
        own = {p.name: (REQUIRED if p.default is p.empty else p.default)
               for p in list(inspect.signature(fam.__init__).parameters.values())[1:]
               if p.name not in ("rngs", *FROM_DATA) and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
    else:  # a module instance or a Model from Python: nothing to configure
        own = {}
    return {"name": name, **own, "input_shape": None}


def _default(field) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return REQUIRED


def _is_linen_class(x) -> bool:
    return inspect.isclass(x) and issubclass(x, nn.Module)


def _is_nnx_class(x) -> bool:
    from flax import nnx
    return inspect.isclass(x) and issubclass(x, nnx.Module)


# --- building ----------------------------------------------------------------------------------------

def build(cfg: dict, input_shape: tuple, num_outputs: int, input_dtype=jnp.float32,
          example: Any = None) -> Model:
    """The model of a `model` section for examples of `input_shape` (of `input_dtype`: int32 for
    token ids); every value is checked, and init is traced once (abstractly, nothing compiles) so
    a model that cannot take the data fails here with one clear ConfigError. example: an input
    to trace with when inputs are no single array (a dlcore.graphs.Graph); input_shape is then
    the shape of one node's features."""
    check_input_shape(cfg, input_shape)
    fam = family(cfg["name"])
    missing = [k for k, v in cfg.items() if isinstance(v, str) and v == REQUIRED]
    if missing:
        raise ConfigError(f"config key 'model.{missing[0]}': '{cfg['name']}' needs a value for it")
    given = {k: v for k, v in cfg.items() if k not in ("name", "input_shape")}
    from_data = {"num_outputs": int(num_outputs), "input_shape": tuple(input_shape),
                 "in_features": int(math.prod(input_shape))}
    if isinstance(fam, Model):
        model = fam
    elif hasattr(fam, "build") and not inspect.isclass(fam):
        model = wrap(fam.build(cfg, tuple(input_shape), num_outputs), fam)
    elif _is_linen_class(fam) or _is_nnx_class(fam):
        takes = ({f.name for f in dataclasses.fields(fam)} if _is_linen_class(fam)
                 else set(inspect.signature(fam.__init__).parameters))
        kwargs = {**given, **{k: v for k, v in from_data.items() if k in takes}}
        model = wrap(fam(**kwargs) if _is_linen_class(fam)
                     else (lambda rngs: fam(**kwargs, rngs=rngs)), fam)
    else:
        model = wrap(fam, None)
    x = jnp.zeros((1, *input_shape), input_dtype) if example is None else example
    try:
        variables = jax.eval_shape(model.init, jax.random.key(0), x)
        out = jax.eval_shape(lambda v: model.apply(v, x, False, None)[0], variables)
    except (ValueError, TypeError) as e:
        raise ConfigError(f"model '{cfg['name']}' cannot take inputs of shape "
                          f"{tuple(input_shape)}: {str(e).splitlines()[0]}") from None
    _check_outputs(cfg["name"], out, int(num_outputs))
    return model


def _check_outputs(name: Any, out, num_outputs: int) -> None:
    """ConfigError unless the model's output ends in an axis of num_outputs (when > 0): a model
    of yours that fixes its own width (10 classes) would otherwise train on data with another
    count, cross-entropy reading past its logits or leaving some unused, silently."""
    if num_outputs <= 0 or not hasattr(out, "shape") or len(out.shape) == 0:
        return  # a trunk (num_outputs 0), or outputs that are no single array (a dict, a tuple)
    if out.shape[-1] != num_outputs:  # (an abstract value: chex's asserts want arrays)
        raise ConfigError(f"model '{name}' gives outputs of shape {tuple(out.shape)} for one "
                          f"example, but the data needs {num_outputs} outputs (its last axis); "
                          "a model of yours takes `num_outputs` from the data")


def wrap(module: Any, fam: Any = None) -> Model:
    """A Linen module, an NNX module, or a function rngs -> NNX module, as a Model."""
    from flax import nnx
    if isinstance(module, Model):
        return module
    if isinstance(module, nn.Module):
        return _linen(module, fam)
    if isinstance(module, nnx.Module):
        return NNX(lambda rngs: module, fam).model()
    if callable(module):
        return NNX(module, fam).model()
    raise ConfigError(f"config key 'model.name': {type(module).__name__} is not a Flax module")


def _linen(module: nn.Module, fam) -> Model:
    params = inspect.signature(type(module).__call__).parameters
    mode = ("train" if "train" in params else "deterministic" if "deterministic" in params else None)

    def flag(train):
        return {} if mode is None else {mode: train if mode == "train" else not train}

    def init(key, x):
        # parameters declared with logical axis names (nn.with_logical_partitioning) come back
        # as plain arrays; dlcore.parallel reads the names from `logical_axes`
        return nn.meta.unbox(module.init({"params": key, "dropout": key}, x, **flag(False)))

    def apply(variables, x, train: bool = False, key=None):
        state = {k: v for k, v in variables.items() if k != "params"}
        if not train:
            return module.apply(variables, x, **flag(False)), state
        return module.apply(variables, x, **flag(True), rngs={"dropout": key},
                            mutable=list(state))
    return Model(init, apply, module, fam)


class NNX:
    """A Flax NNX module as pure functions. `construct(rngs) -> nnx.Module` builds it; its
    parameters (nnx.Param) become 'params' and its other variables (batch statistics) 'state', as
    plain dicts (nnx.to_pure_dict), so states vmap, shard and checkpoint like a Linen model's.
    Random streams are not carried in the state: each call seeds every stream from its key.
    Train and evaluation modes are NNX's own (`module.train()` / `module.eval()`)."""

    def __init__(self, construct: Callable, fam: Any = None):
        from flax import nnx
        self.construct, self.fam = construct, fam
        abstract = nnx.eval_shape(lambda: construct(nnx.Rngs(0)))
        # nnx.split's stub is a variadic tuple; with three filters it is exactly four values
        self.graphdef, self.params, self.rngs, self.rest = nnx.split(  # type: ignore[misc]
            abstract, nnx.Param, nnx.RngState, ...)
        self.module = abstract

    def _split(self, module):
        from flax import nnx
        _, params, _, rest = nnx.split(module, nnx.Param, nnx.RngState, ...)
        return {"params": nnx.to_pure_dict(params), "state": nnx.to_pure_dict(rest)}

    @staticmethod
    def _fill(template, pure):
        from flax import nnx
        state = jax.tree.map(lambda a: a, template)  # fresh variables at this trace level
        nnx.replace_by_pure_dict(state, pure)
        return state

    def _merge(self, variables, key):
        from flax import nnx
        key = jax.random.key(0) if key is None else key
        rng = jax.tree.map(lambda a: key if jax.dtypes.issubdtype(a.dtype, jax.dtypes.prng_key)
                           else jnp.zeros(a.shape, a.dtype), nnx.to_pure_dict(self.rngs))
        return nnx.merge(self.graphdef, self._fill(self.params, variables["params"]),
                         self._fill(self.rngs, rng), self._fill(self.rest, variables["state"]))

    def model(self) -> Model:
        from flax import nnx

        def init(key, x):
            del x  # an NNX module is built with its shapes
            return self._split(self.construct(nnx.Rngs(params=key, dropout=key, default=key)))

        def apply(variables, x, train: bool = False, key=None):
            module = self._merge(variables, key)
            module.train() if train else module.eval()
            out = module(x)
            return out, {"state": self._split(module)["state"]}
        return Model(init, apply, self.module, self.fam)


def logical_axes(model: Model, x) -> Any:
    """The logical axis names of a Linen model's parameters, a pytree like `variables['params']`
    of PartitionSpecs (PartitionSpec() for parameters declared without names). x: an example
    batch (shapes suffice)."""
    boxed = jax.eval_shape(lambda: model.module.init({"params": jax.random.key(0),
                                                      "dropout": jax.random.key(0)}, x))
    return nn.get_partition_spec(boxed)["params"]


def variables_of(state) -> dict:
    """A supervised-style state's variables: {'params': ..., **state.model_state}."""
    return {"params": state.params, **state.model_state}


def check_input_shape(cfg: dict, input_shape: tuple) -> None:
    """ConfigError naming both shapes when the data does not match `model.input_shape`."""
    expected = cfg.get("input_shape")
    if expected is None:
        return
    expected = (expected,) if isinstance(expected, int) else expected
    if not (isinstance(expected, (list, tuple)) and all(type(d) is int and d > 0 for d in expected)):
        raise ConfigError(f"config key 'model.input_shape': must be a list of positive integers "
                          f"(the shape of one example) or None; got {cfg['input_shape']!r}")
    if tuple(expected) != tuple(input_shape):
        raise ConfigError(
            f"the data gives examples of shape {tuple(input_shape)}, but model.input_shape expects "
            f"{tuple(expected)}; if the model should take this data, set "
            f"model.input_shape={list(input_shape)}")
