"""The `deconv` family: a generator or decoder from a vector to an image with transposed
convolutions (DCGAN's generator, Radford et al. 2016; the decoders of convolutional VAEs and
autoencoders).

x [b, d] (flattened) -> Dense to start_shape (H0, W0, C0), [batch norm], activation -> one stage
per entry of `channels`: a stride-2 transposed convolution to that many channels, [batch norm],
activation -> a last stride-2 transposed convolution to the image's channels (no norm, no
activation: the algorithm applies sigmoid or tanh, or reads logits) -> flattened [b, num_outputs].

Each transposed convolution exactly doubles height and width, so the image is
H0 * 2**(len(channels) + 1) by W0 * 2**(len(channels) + 1) (7x7 -> 28x28 with the defaults) and its
channels are num_outputs / (H * W): 784 outputs make 28x28x1 images, 1568 make 28x28x2. The output
is the image [b, H, W, C] flattened row-major: `out.reshape(b, *output_shape(cfg, num_outputs))`
gives it back.
"""
from __future__ import annotations

import math
from typing import Sequence

import flax.linen as nn
import jax

from dlcore.config import ConfigError, check, one_of
from dlcore.models.mlp import ACTIVATIONS, KERNEL_INITS, _torch_uniform, positive_ints


def padding(kernel: int) -> tuple[int, int]:
    """The (low, high) padding, around the stride-dilated input, with which a stride-2 transposed
    convolution of this kernel size makes exactly twice the input's size: low + high = kernel.
    It is PyTorch's ConvTranspose2d(kernel, stride=2, padding=(kernel - 1) // 2,
    output_padding=kernel % 2): padding=1 for kernel 4. (Flax's padding 'SAME' doubles too, and
    agrees with this for even kernels; for odd ones it puts the extra row on the other side.)"""
    low = kernel - 1 - (kernel - 1) // 2
    return low, kernel - low


def conv_transpose(features: int, kernel: int, in_features: int, init: str, use_bias: bool,
                   name: str) -> nn.ConvTranspose:
    """A stride-2 transposed convolution that doubles height and width.

    transpose_kernel=True: the layer is the gradient (adjoint) of a stride-2 convolution, exactly
    PyTorch's ConvTranspose2d(in_features, features, kernel, stride=2, padding=(kernel - 1) // 2,
    output_padding=kernel % 2) -- ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1) for
    kernel 4 -- with the same weights: Flax's kernel [kh, kw, features, in_features] is
    PyTorch's weight [in, out, kh, kw] permuted (2, 3, 1, 0), no flip. As in PyTorch, the
    initializers see fan_in = features * kh * kw ('torch' is PyTorch's default initialization of
    ConvTranspose2d, bias included).
    """
    fan_in = features * kernel * kernel  # PyTorch's: weight.size(1) * receptive field
    bias_init = _torch_uniform(fan_in) if init == "torch" else nn.initializers.zeros
    return nn.ConvTranspose(features, (kernel, kernel), strides=(2, 2),
                            padding=[padding(kernel)] * 2, transpose_kernel=True,
                            use_bias=use_bias, kernel_init=KERNEL_INITS[init](fan_in),
                            bias_init=bias_init, name=name)


class Deconv(nn.Module):
    """x: [b, ...] (flattened) -> image [b, H, W, C] flattened to [b, num_outputs = H * W * C].

    Layers: dense (x -> H0 * W0 * C0), bn_dense, deconv_i and bn_i (stage i), head (the last
    transposed convolution, to C channels). Without batch norm every layer has a bias; with it,
    only head does (a bias before batch norm is cancelled by its mean). The activations after the
    dense layer and after each stage are sown into 'intermediates' as start and stage_i.
    """
    num_outputs: int
    start_shape: Sequence[int] = (7, 7, 128)
    channels: Sequence[int] = (64,)
    kernel_size: int = 4
    batch_norm: bool = True
    activation: str = "relu"
    initializer: str = "lecun_normal"

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        act = ACTIVATIONS[one_of(self.activation, "model.activation", ACTIVATIONS)]
        one_of(self.initializer, "model.init", KERNEL_INITS)
        cfg = {"start_shape": self.start_shape, "channels": self.channels,
               "kernel_size": self.kernel_size}
        image = output_shape(cfg, self.num_outputs)
        start, k, init = tuple(self.start_shape), self.kernel_size, self.initializer
        bn = lambda z, name: (z if not self.batch_norm else nn.BatchNorm(
            use_running_average=not train, momentum=0.9, name=name)(z))

        h = x.reshape(x.shape[0], -1)
        fan_in = h.shape[-1]
        h = nn.Dense(math.prod(start), use_bias=not self.batch_norm,
                     kernel_init=KERNEL_INITS[init](fan_in),
                     bias_init=_torch_uniform(fan_in) if init == "torch" else nn.initializers.zeros,
                     name="dense")(h)
        h = act(bn(h.reshape(h.shape[0], *start), "bn_dense"))
        self.sow("intermediates", "start", h)
        for i, feat in enumerate(self.channels):
            h = conv_transpose(feat, k, h.shape[-1], init, not self.batch_norm, f"deconv_{i}")(h)
            h = act(bn(h, f"bn_{i}"))
            self.sow("intermediates", f"stage_{i}", h)
        h = conv_transpose(image[2], k, h.shape[-1], init, True, "head")(h)
        assert h.shape[1:] == image, (h.shape, image)
        return h.reshape(h.shape[0], -1)


# --- the `deconv` family: its config section, and its image size ------------------------------------

def defaults() -> dict:
    """The `model` section's keys (besides name and input_shape)."""
    return {"start_shape": (7, 7, 128), "channels": (64,), "kernel_size": 4, "batch_norm": True,
            "activation": "relu", "init": "lecun_normal"}


def output_size(cfg: dict) -> tuple[int, int]:
    """(H, W) of the images a `model` section makes: start_shape's height and width doubled
    len(channels) + 1 times; ConfigError naming the key for a bad start_shape or channels.
    Keys the section lacks take their defaults. Pure: builds nothing."""
    cfg = {**defaults(), **cfg}
    start = cfg["start_shape"]
    check(isinstance(start, (list, tuple)) and len(start) == 3
          and all(type(v) is int and 0 < v < 2**31 for v in start), "model.start_shape",
          f"must be [height, width, channels], three positive integers (the image the dense "
          f"layer makes, before the transposed convolutions); got {start!r}")
    channels = positive_ints(cfg, "channels", allow_empty=True)
    scale = 2 ** (len(channels) + 1)
    size = (start[0] * scale, start[1] * scale)
    check(size[0] * size[1] < 2**31, "model.channels",
          f"{len(channels)} stage(s) after start_shape {list(start)} make "
          f"{size[0]}x{size[1]} images, too large; use fewer stages or a smaller start_shape")
    return size


def output_shape(cfg: dict, num_outputs: int) -> tuple[int, int, int]:
    """(H, W, C) of the images a `model` section makes for `num_outputs` outputs; ConfigError
    naming model.start_shape and the sizes unless num_outputs is a positive multiple of H * W."""
    cfg = {**defaults(), **cfg}
    h, w = output_size(cfg)
    c, rest = divmod(int(num_outputs), h * w)
    if c < 1 or rest:
        start, n = list(cfg["start_shape"]), len(cfg["channels"])
        raise ConfigError(
            f"config key 'model.start_shape': start_shape {start} with {n} channels stage(s) "
            f"makes {h}x{w} images ({start[0]}x{start[1]} doubled {n + 1} times), so it needs "
            f"num_outputs = {h * w} * image channels ({h * w} for {h}x{w}x1, {h * w * 3} for "
            f"{h}x{w}x3); got {num_outputs}. For HxW images set start_shape to "
            f"[H/{2 ** (n + 1)}, W/{2 ** (n + 1)}, ...] (each entry of channels doubles once more)")
    return h, w, c


def build(cfg: dict, input_shape: tuple, num_outputs: int) -> Deconv:
    """The generator of a `model` section; ConfigError for any impossible value."""
    output_shape(cfg, num_outputs)  # start_shape, channels and the image size
    k = cfg["kernel_size"]
    check(type(k) is int and 2 <= k < 2**31, "model.kernel_size",
          f"must be an integer >= 2 (the transposed convolutions' kernel height and width); "
          f"got {k!r}")
    check(isinstance(cfg["batch_norm"], bool), "model.batch_norm",
          f"must be true or false; got {cfg['batch_norm']!r}")
    return Deconv(num_outputs=num_outputs, start_shape=tuple(cfg["start_shape"]),
                  channels=tuple(cfg["channels"]), kernel_size=k, batch_norm=cfg["batch_norm"],
                  activation=one_of(cfg["activation"], "model.activation", ACTIVATIONS),
                  initializer=one_of(cfg["init"], "model.init", KERNEL_INITS))
