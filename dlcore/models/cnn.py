"""Convolutional networks for 1-D signals and 2-D images, plain or residual (Flax Linen).

Layouts are channels-last, as in Flax: [batch, *spatial, channels]. Each stage's output is sown into
the 'intermediates' collection (`apply(..., mutable=["intermediates"])`) so that what the layers
compute can be inspected and drawn.
"""
from __future__ import annotations

from functools import partial
from typing import Sequence

import flax.linen as nn
import jax

from dlcore.config import check, one_of
# Aliased: the CNN field `dense` (the head's hidden widths) would read like this helper otherwise.
from dlcore.models.mlp import ACTIVATIONS, KERNEL_INITS, _torch_uniform, dense as dense_layer

SPATIAL = {1: "length", 2: "height, width", 3: "depth, height, width"}


def conv(features: int, kernel: int, stride: int, padding: int | str, in_features: int,
         dims: int, init: str, use_bias: bool, name: str) -> nn.Conv:
    """A Conv layer with the named initializer ('torch': PyTorch's ConvNd default, bias too)."""
    fan_in = in_features * kernel ** dims
    bias_init = _torch_uniform(fan_in) if init == "torch" else nn.initializers.zeros
    pad = [(padding, padding)] * dims if isinstance(padding, int) else padding
    return nn.Conv(features, (kernel,) * dims, strides=(stride,) * dims, padding=pad,
                   use_bias=use_bias, kernel_init=KERNEL_INITS[init](fan_in),
                   bias_init=bias_init, name=name)


def conv_sizes(sizes: tuple, kernel: int, stride: int, padding: int | str) -> tuple:
    """Spatial sizes after a convolution (PyTorch's formula; 'SAME' gives ceil(n / stride))."""
    if padding == "SAME":
        return tuple(-(-n // stride) for n in sizes)
    p = 0 if padding == "VALID" else padding
    return tuple((n + 2 * p - kernel) // stride + 1 for n in sizes)


class CNN(nn.Module):
    """x: [b, *spatial, channels] or [b, *spatial] (a channel axis of 1 is added) -> [b, num_outputs].

    One stage per entry of channels/kernel_sizes/strides: conv-[bn]-act or, with `residual`, a
    ResNet basic block conv(stride)-[bn]-act-conv-[bn] + shortcut, then act; then optional pooling
    (window = stride = pool_size). The head flattens (or pools over space), then dense hidden
    layers (act, dropout) and the output layer. Integer padding p adds p zeros on each side
    (PyTorch's padding=p). Layers: conv_i, bn_i, conv_i_2, bn_i_2, shortcut_i, shortcut_bn_i,
    dense_j, head; `params["conv_0"]["kernel"]` is [*kernel, in_ch, out_ch] (first-layer filters).
    num_outputs 0: no output layer; the features after the head and dense layers are the output
    (a trunk for another network: dlcore.algorithms.simclr).
    """
    num_outputs: int
    dims: int = 2
    channels: Sequence[int] = (32, 64)
    kernel_sizes: Sequence[int] = (3, 3)
    strides: Sequence[int] = (1, 1)
    padding: int | str = "SAME"
    pool: str = "none"
    pool_size: int = 2
    residual: bool = False
    batch_norm: bool = False
    activation: str = "relu"
    head: str = "flatten"
    dense: Sequence[int] = ()
    dropout: float = 0.0
    initializer: str = "lecun_normal"

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        act = ACTIVATIONS[one_of(self.activation, "model.activation", ACTIVATIONS)]
        one_of(self.pool, "model.pool", ("none", "max", "avg"))
        one_of(self.head, "model.head", ("flatten", "avg", "max"))
        one_of(self.initializer, "model.init", KERNEL_INITS)
        check(self.dims in SPATIAL, "model.dims", f"must be 1, 2 or 3; got {self.dims}")
        pad = self.padding
        check(pad in ("SAME", "VALID") or (type(pad) is int and pad >= 0), "model.padding",
              f"must be 'SAME', 'VALID' or an integer >= 0; got {pad!r}")
        lengths = {k: len(getattr(self, k)) for k in ("channels", "kernel_sizes", "strides")}
        if len(set(lengths.values())) != 1:
            raise ValueError(f"CNN needs one kernel size and one stride per stage; got {lengths}")
        if x.ndim not in (self.dims + 1, self.dims + 2):
            names = SPATIAL[self.dims]
            raise ValueError(f"CNN with dims={self.dims} expects inputs [batch, {names}, channels] "
                             f"(or [batch, {names}]); got shape {x.shape}")
        h = x[..., None] if x.ndim == self.dims + 1 else x
        # A conv bias is redundant before batch norm, which subtracts the mean (its gradient is 0).
        layer = partial(conv, dims=self.dims, init=self.initializer, use_bias=not self.batch_norm)
        bn = lambda z, name: (z if not self.batch_norm else nn.BatchNorm(
            use_running_average=not train, momentum=0.9, name=name)(z))

        for i, (feat, k, s) in enumerate(zip(self.channels, self.kernel_sizes, self.strides)):
            self._check_stage(i, h.shape[1:-1], k, s)
            z = bn(layer(feat, k, s, pad, h.shape[-1], name=f"conv_{i}")(h), f"bn_{i}")
            if self.residual:
                z = bn(layer(feat, k, 1, pad, feat, name=f"conv_{i}_2")(act(z)), f"bn_{i}_2")
                # Projection shortcut only where the identity cannot be added (ResNet option B).
                if z.shape != h.shape:
                    h = layer(feat, 1, s, "VALID", h.shape[-1], name=f"shortcut_{i}")(h)
                    h = bn(h, f"shortcut_bn_{i}")
                z = z + h
            h = act(z)
            if self.pool != "none":
                window = (self.pool_size,) * self.dims
                h = (nn.max_pool if self.pool == "max" else nn.avg_pool)(h, window, strides=window)
            self.sow("intermediates", f"stage_{i}", h)

        space = tuple(range(1, h.ndim - 1))
        h = (h.reshape(h.shape[0], -1) if self.head == "flatten"
             else h.mean(space) if self.head == "avg" else h.max(space))
        drop = lambda z: nn.Dropout(self.dropout, deterministic=not train)(z) if self.dropout else z
        h = h if self.dense else drop(h)  # else the last hidden layer's dropout feeds the output
        for j, width in enumerate(self.dense):
            h = drop(act(dense_layer(width, h.shape[-1], self.initializer, name=f"dense_{j}")(h)))
        if self.num_outputs == 0:
            return h
        return dense_layer(self.num_outputs, h.shape[-1], self.initializer, name="head")(h)

    def _check_stage(self, i: int, sizes: tuple, kernel: int, stride: int) -> None:
        """Fail clearly, before Flax does obscurely, where a stage would leave no spatial extent."""
        where = f"CNN stage {i} (kernel {kernel}, stride {stride}, padding {self.padding!r})"
        out = conv_sizes(sizes, kernel, stride, self.padding)
        if self.residual and min(out) >= 1:
            out, short = conv_sizes(out, kernel, 1, self.padding), conv_sizes(sizes, 1, stride, 0)
            if min(out) >= 1 and out != short:
                raise ValueError(f"{where}: the residual branch gives spatial size {out}, the "
                                 f"shortcut {short}; use padding 'SAME' or (kernel - 1) // 2")
        pooled = tuple(n // self.pool_size for n in out) if self.pool != "none" else out
        if min(pooled) < 1:
            raise ValueError(f"{where} turns spatial size {sizes} into {pooled}"
                             + (f" (pool {self.pool_size} after {out})" if pooled != out else "")
                             + "; use smaller kernels/strides, more padding or fewer stages")


# --- the `cnn` family: its config section, and its picture ------------------------------------------

def defaults() -> dict:
    """The `model` section's keys (besides name and input_shape)."""
    return {"dims": 2, "channels": (32, 64), "kernel_sizes": (3, 3), "strides": (1, 1),
            "padding": "SAME", "pool": "none", "pool_size": 2, "residual": False,
            "batch_norm": False, "activation": "relu", "head": "flatten", "dense": (),
            "dropout": 0.0, "init": "lecun_normal"}


def build(cfg: dict, input_shape: tuple, num_outputs: int) -> CNN:
    """The CNN of a `model` section; ConfigError for any impossible value."""
    from dlcore.models.mlp import check_dropout, positive_ints
    check_dropout(cfg["dropout"])
    one_of(cfg["activation"], "model.activation", ACTIVATIONS)
    one_of(cfg["dims"], "model.dims", (1, 2))
    one_of(cfg["pool"], "model.pool", ("none", "max", "avg"))
    one_of(cfg["head"], "model.head", ("flatten", "avg", "max"))
    lists = [positive_ints(cfg, k) for k in ("channels", "kernel_sizes", "strides")]
    check(len({len(v) for v in lists}) == 1, "model.channels",
          f"channels, kernel_sizes and strides need one entry per conv stage; got lengths "
          f"{[len(v) for v in lists]}")
    pad = cfg["padding"]
    pad = int(pad) if isinstance(pad, str) and pad.isdigit() else pad  # from --set
    check(pad in ("SAME", "VALID") or (type(pad) is int and 0 <= pad < 2**31), "model.padding",
          f"must be SAME, VALID or an integer >= 0; got {pad!r}")
    check(type(cfg["pool_size"]) is int and 0 < cfg["pool_size"] < 2**31, "model.pool_size",
          f"must be a positive integer (the pooling window and stride); got {cfg['pool_size']!r}")
    return CNN(num_outputs=num_outputs, dims=cfg["dims"], channels=lists[0],
               kernel_sizes=lists[1], strides=lists[2], padding=pad, pool=cfg["pool"],
               pool_size=cfg["pool_size"], residual=cfg["residual"],
               batch_norm=cfg["batch_norm"], activation=cfg["activation"], head=cfg["head"],
               dense=positive_ints(cfg, "dense", allow_empty=True), dropout=cfg["dropout"],
               initializer=one_of(cfg["init"], "model.init", KERNEL_INITS))


def pictures(model, variables: dict, initial: dict, data, out_dir, title: str) -> list:
    """filters.png: the first layer's filters."""
    import numpy as np
    from dlcore import plots
    kernel = np.asarray(variables["params"]["conv_0"]["kernel"])
    return [plots.filters(kernel, out_dir / "filters.png", f"{title}: first-layer filters")]
