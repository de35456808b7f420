"""A model of your own: any Flax module. `model.name = "my_models:ResLNMLP"` reaches it; its fields
are the `model` section's keys, and `num_outputs` is filled from the data."""
import flax.linen as nn
from flax import nnx


class ResLNMLP(nn.Module):
    """Pre-LayerNorm residual MLP: x [b, ...] -> logits [b, num_outputs]."""
    num_outputs: int
    width: int = 128
    depth: int = 3
    dropout: float = 0.1

    @nn.compact
    def __call__(self, x, train: bool = False):
        h = nn.Dense(self.width)(x.reshape(x.shape[0], -1))
        for _ in range(self.depth):
            z = nn.Dense(self.width)(nn.gelu(nn.LayerNorm()(h)))
            h = h + nn.Dropout(self.dropout, deterministic=not train)(z)
        return nn.Dense(self.num_outputs)(nn.LayerNorm()(h))


class NNXMLP(nnx.Module):
    """The same idea in Flax NNX: built with its shapes (`in_features` comes from the data)."""

    def __init__(self, in_features: int, num_outputs: int, width: int = 128, *, rngs: nnx.Rngs):
        self.hidden = nnx.Linear(in_features, width, rngs=rngs)
        self.norm = nnx.BatchNorm(width, rngs=rngs)
        self.drop = nnx.Dropout(0.1, rngs=rngs)
        self.out = nnx.Linear(width, num_outputs, rngs=rngs)

    def __call__(self, x):
        h = nnx.relu(self.norm(self.hidden(x.reshape(x.shape[0], -1))))
        return self.out(self.drop(h))
