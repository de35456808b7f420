"""Recurrent networks (Elman RNN, LSTM, GRU) with a hand-written `lax.scan` (Flax Linen).

Gate weights are fused and the input projection of all time steps is one matmul before the scan,
so only h @ W_h stays inside the recurrence: on CPU that is where the time goes. The equations,
gate order (LSTM i,f,g,o; GRU r,z,n) and the two GRU biases match torch.nn.RNN/LSTM/GRU.
Parameters per layer and direction: w_i [features, G*H], w_h [H, G*H], b_i, b_h [G*H].
"""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from dlcore.config import one_of
from dlcore.models.mlp import KERNEL_INITS, _torch_uniform, dense

GATES = {"rnn": 1, "lstm": 4, "gru": 3}
HEADS = ("last", "mean", "flatten", "sequence")


def _orthogonal_per_gate(gates: int):
    """Orthogonal [H, H] block per gate: one orthogonal [H, G*H] matrix would not make each gate's
    recurrence norm-preserving."""
    def init(key, shape, dtype=jnp.float32):
        blocks = [nn.initializers.orthogonal()(k, (shape[0], shape[0]), dtype)
                  for k in jax.random.split(key, gates)]
        return jnp.concatenate(blocks, axis=-1)
    return init


def _step(cell: str, w_h: jax.Array, b_h: jax.Array):
    """One time step: (carry, (x_t W_i + b_i, mask_t, perturbation_t)) -> (carry, output_t)."""
    def step(carry, inputs):
        xp, m, p = inputs                       # [b, G*H]; [b, 1] or None; [b, H] or None
        h = carry[0]
        hp = h @ w_h + b_h
        if cell == "rnn":
            new = (jnp.tanh(xp + hp),)
        elif cell == "lstm":
            i, f, g, o = jnp.split(xp + hp, 4, axis=-1)
            c = nn.sigmoid(f) * carry[1] + nn.sigmoid(i) * jnp.tanh(g)
            new = (nn.sigmoid(o) * jnp.tanh(c), c)
        else:  # gru: b_hn sits inside r * (...), so the two biases cannot be merged
            xr, xz, xn = jnp.split(xp, 3, axis=-1)
            hr, hz, hn = jnp.split(hp, 3, axis=-1)
            r, z = nn.sigmoid(xr + hr), nn.sigmoid(xz + hz)
            new = ((1 - z) * jnp.tanh(xn + r * hn) + z * h,)
        if p is not None:  # inside the recurrence, feeding step t+1: dL/dp_t = dL/dh_t
            new = (new[0] + p,) + new[1:]
        if m is None:
            return new, new[0]
        # padded steps keep the carry: the final state is the one at step length-1
        new = tuple(jnp.where(m, n, o) for n, o in zip(new, carry))
        return new, jnp.where(m, new[0], 0.0)
    return step


class _Recurrence(nn.Module):
    """One layer, one direction: x [b, T, F] -> outputs [b, T, H] (zero at padded steps)."""
    cell: str
    hidden_size: int
    initializer: str
    forget_bias: float
    unroll: int

    @nn.compact
    def __call__(self, x, mask=None, perturbation=None):
        H, G, F = self.hidden_size, GATES[self.cell], x.shape[-1]
        if self.initializer == "torch":
            w_i_init = w_h_init = b_init = _torch_uniform(H)
        else:
            w_i_init = KERNEL_INITS[self.initializer](F)
            w_h_init, b_init = _orthogonal_per_gate(G), nn.initializers.zeros

        def b_i_init(key, shape, dtype=jnp.float32):
            b = b_init(key, shape, dtype)
            return b.at[H:2 * H].add(self.forget_bias) if self.cell == "lstm" else b

        w_i = self.param("w_i", w_i_init, (F, G * H))
        w_h = self.param("w_h", w_h_init, (H, G * H))
        b_i = self.param("b_i", b_i_init, (G * H,))
        b_h = self.param("b_h", b_init, (G * H,))
        xs = jnp.swapaxes(x, 0, 1) @ w_i + b_i              # time-major [T, b, G*H]: one matmul
        t_major = lambda a: None if a is None else jnp.swapaxes(a, 0, 1)
        carry = (jnp.zeros((x.shape[0], H), xs.dtype),) * (2 if self.cell == "lstm" else 1)
        _, out = jax.lax.scan(_step(self.cell, w_h, b_h), carry,
                              (xs, t_major(mask), t_major(perturbation)), unroll=self.unroll)
        return jnp.swapaxes(out, 0, 1)


class RNN(nn.Module):
    """x: [b, T, features] or [b, T] (one feature added) -> [b, num_outputs],
    or [b, T, num_outputs] for head='sequence' (zero at padded steps).

    lengths: optional [b] valid steps per sequence, padding at the end; padded steps keep the state.
    perturbation: optional [b, T, hidden_size] added to the first layer's forward h_t inside the
    recurrence; grad w.r.t. it is dL/dh_t through time (vanishing gradients). LSTM: h, not c.
    head: last (forward state at length-1, backward at 0) | mean (over valid steps) |
    flatten (all T outputs, then dense: fixed T) | sequence (dense at every step).
    initializer: 'torch' as torch.nn.GRU/LSTM/RNN; otherwise that KERNEL_INITS entry for input
    kernels, orthogonal recurrent kernels, zero biases. forget_bias: added to the LSTM b_i (f gate).
    """
    num_outputs: int
    cell: str = "gru"
    hidden_size: int = 64
    layers: int = 1
    bidirectional: bool = False
    head: str = "last"
    dropout: float = 0.0
    initializer: str = "torch"
    forget_bias: float = 0.0
    unroll: int = 1

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False, lengths=None,
                 perturbation=None) -> jax.Array:
        one_of(self.cell, "model.cell", GATES)
        one_of(self.head, "model.head", HEADS)
        one_of(self.initializer, "model.init", KERNEL_INITS)
        if x.ndim not in (2, 3):
            raise ValueError(f"RNN expects x of shape [batch, time, features] (or [batch, time]); "
                             f"got shape {tuple(x.shape)}")
        x = x[..., None] if x.ndim == 2 else x
        b, T = x.shape[:2]
        H, D = self.hidden_size, 2 if self.bidirectional else 1
        if perturbation is not None and perturbation.shape != (b, T, H):
            raise ValueError(f"perturbation must have shape [batch, time, hidden_size] = "
                             f"{(b, T, H)}; got {tuple(perturbation.shape)}")
        t = jnp.arange(T)[None, :]
        if lengths is None:
            mask, last = None, jnp.full((b,), T - 1)
            rev = jnp.broadcast_to(T - 1 - t, (b, T))
        else:
            lengths = jnp.asarray(lengths)
            mask = (t < lengths[:, None])[..., None]        # [b, T, 1]
            last = jnp.maximum(lengths - 1, 0)
            rev = jnp.where(t < lengths[:, None], lengths[:, None] - 1 - t, t)  # own inverse
        reverse = lambda a: jnp.take_along_axis(a, rev[..., None], axis=1)

        seq = x
        for layer in range(self.layers):
            if layer > 0 and self.dropout > 0:
                seq = nn.Dropout(self.dropout, deterministic=not train)(seq)
            outs = []
            for direction in ("fwd", "bwd")[:D]:
                rec = _Recurrence(self.cell, H, self.initializer, self.forget_bias, self.unroll,
                                  name=f"layer_{layer}_{direction}")
                if direction == "fwd":
                    outs.append(rec(seq, mask, perturbation if layer == 0 else None))
                else:  # each sequence reversed within its length, so padding stays at the end
                    outs.append(reverse(rec(reverse(seq), mask)))
            seq = jnp.concatenate(outs, axis=-1)            # [b, T, D*H]
        self.sow("intermediates", "outputs", seq)
        if self.dropout > 0:
            seq = nn.Dropout(self.dropout, deterministic=not train)(seq)

        if self.head == "sequence":
            y = dense(self.num_outputs, D * H, self.initializer, name="head")(seq)
            return y if mask is None else jnp.where(mask, y, 0.0)
        if self.head == "flatten":
            built = self.variables.get("params", {}).get("head")
            if built is not None and built["kernel"].shape[0] != T * D * H:
                raise ValueError(f"head='flatten' was built for sequences of length "
                                 f"{built['kernel'].shape[0] // (D * H)}; got length {T}")
            feats = seq.reshape(b, T * D * H)
        elif self.head == "mean":  # padded outputs are zero, so the sum runs over valid steps
            n = T if lengths is None else jnp.maximum(lengths, 1)[:, None]
            feats = seq.sum(axis=1) / n
        else:
            fwd = jnp.take_along_axis(seq[..., :H], last[:, None, None], axis=1)[:, 0]
            feats = jnp.concatenate([fwd, seq[:, 0, H:]], axis=-1)  # backward ends at step 0
        return dense(self.num_outputs, feats.shape[-1], self.initializer, name="head")(feats)


# --- the `rnn` family: its config section, and its picture ------------------------------------------

def defaults() -> dict:
    """The `model` section's keys (besides name and input_shape)."""
    return {"cell": "gru", "hidden_size": 64, "layers": 1, "bidirectional": False,
            "head": "last", "dropout": 0.0, "init": "torch", "forget_bias": 0.0, "unroll": 1}


def build(cfg: dict, input_shape: tuple, num_outputs: int) -> RNN:
    """The RNN of a `model` section; ConfigError for any impossible value."""
    from dlcore.config import check
    from dlcore.models.mlp import check_dropout
    check_dropout(cfg["dropout"])
    one_of(cfg["cell"], "model.cell", tuple(GATES))
    one_of(cfg["head"], "model.head", HEADS)
    for key in ("hidden_size", "layers", "unroll"):
        check(type(cfg[key]) is int and 0 < cfg[key] < 2**31, f"model.{key}",
              f"must be a positive integer (below 2^31); got {cfg[key]!r}")
    return RNN(num_outputs=num_outputs, cell=cfg["cell"], hidden_size=cfg["hidden_size"],
               layers=cfg["layers"], bidirectional=cfg["bidirectional"], head=cfg["head"],
               dropout=cfg["dropout"], initializer=one_of(cfg["init"], "model.init", KERNEL_INITS),
               forget_bias=cfg["forget_bias"], unroll=cfg["unroll"])


def pictures(model, variables: dict, initial: dict, data, out_dir, title: str) -> list:
    """grad_through_time.png: ||dL/dh_t|| against t, at initialisation and after training."""
    from dlcore import analysis, plots
    test = data.splits["test"]
    batch = {"x": test["x"][:256], "y": test["y"][:256]}
    curves = {label: analysis.grad_through_time(model.module, v, batch, data.spec["task"])
              for label, v in (("at initialisation", initial), ("after training", variables))}
    return [plots.grad_through_time(curves, out_dir / "grad_through_time.png",
                                    f"{title}: gradient through time")]
