"""Autoencoders: an encoder to a `latent`-dimensional code and a decoder back, trained to
reconstruct their input; with `noise` > 0 a denoising autoencoder (Vincent et al. 2008): the input
is corrupted, the target is the clean example.

    state = State(step, params {'encoder', 'decoder'}, model_state {'encoder', 'decoder'}, opt_state)
    batch = {'x': [b, *shape], ...}         # labels, if any, are ignored

Sections: `encoder` and `decoder` name model families (any dlcore model or Flax module: the
encoder maps [b, *shape] -> [b, latent], the decoder [b, latent] -> [b, prod(shape)], reshaped to
the example's shape), `optim`, and `autoencoder`:
    latent              the code's size
    loss                'squared_error': ||x - x̂||² summed over the example (so a linear
                        autoencoder's optimum is PCA's: the sum of the discarded eigenvalues of
                        the data's covariance); 'bernoulli': binary cross-entropy of the decoder's
                        logits, summed over pixels in [0, 1]
    noise               std of the Gaussian noise added to training inputs (0: plain autoencoder)
    eval_batch_size     examples per evaluation chunk
Metrics: 'loss' (per example, as above) and 'mse' (the mean squared error per value, of the
reconstruction: x̂ for squared_error, sigmoid(logits) for bernoulli).
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from dlcore import generative as gen, optim
from dlcore.config import check, one_of
from dlcore.core import Algorithm, Data, Snapshot
from dlcore.generative import State

MODELS = ("encoder", "decoder")
LOSSES = ("squared_error", "bernoulli")


def defaults() -> dict:
    return {"encoder": {"name": "mlp", "hidden": (256,)},
            "decoder": {"name": "mlp", "hidden": (256,)},
            "optim": optim.defaults(),
            "autoencoder": {"latent": 32, "loss": "squared_error", "noise": 0.0,
                            "eval_batch_size": 1000}}


def make(config: dict, data: Data, steps: int) -> Algorithm:
    shape = gen.require_examples(data.spec, "autoencoder")
    own = config["autoencoder"]
    latent = gen.positive_int(own["latent"], "autoencoder.latent", "the code's size")
    loss_name = one_of(own["loss"], "autoencoder.loss", LOSSES)
    noise = own["noise"]
    check(isinstance(noise, (int, float)) and not isinstance(noise, bool) and noise >= 0,
          "autoencoder.noise", f"must be a number >= 0; got {noise!r}")
    chunk = gen.eval_chunk(own["eval_batch_size"], "autoencoder.eval_batch_size")
    encoder = gen.network(config["encoder"], "encoder", shape, latent)
    size = math.prod(shape)
    decoder = gen.network(config["decoder"], "decoder", (latent,), size)
    tx = optim.build(config["optim"], steps)

    def init(key: jax.Array) -> State:
        k_enc, k_dec = jax.random.split(key)
        (pe, se), (pd, sd) = gen.init(encoder, k_enc, shape), gen.init(decoder, k_dec, (latent,))
        params = {"encoder": pe, "decoder": pd}
        return State(jnp.zeros((), jnp.int32), params, {"encoder": se, "decoder": sd},
                     tx.init(params))

    def forward(params, model_state, x, train, key):
        """(decoder output [b, *shape], new model state)."""
        k_enc, k_dec = (None, None) if key is None else jax.random.split(key)
        z, se = gen.apply(encoder, params["encoder"], model_state["encoder"], x, train, k_enc)
        out, sd = gen.apply(decoder, params["decoder"], model_state["decoder"], z, train, k_dec)
        return gen.as_examples(out, shape), {"encoder": se, "decoder": sd}

    def losses(out, x):
        """(loss [b], squared error per value [b])."""
        recon = out if loss_name == "squared_error" else jax.nn.sigmoid(out)
        err = gen.per_example_sum((recon - x) ** 2)
        loss = err if loss_name == "squared_error" else -gen.bernoulli_log_prob(out, x)
        return loss, err / size

    def loss_fn(params, model_state, x, key):
        k_noise, k_net = jax.random.split(key)
        noisy = x + noise * jax.random.normal(k_noise, x.shape) if noise else x
        out, new_state = forward(params, model_state, noisy, True, k_net)
        loss, mse = losses(out, x)
        return jnp.mean(loss), ({"mse": jnp.mean(mse)}, new_state)

    step = gen.gradient_step(loss_fn, tx)

    def evaluate(state: State, split: dict, key: jax.Array) -> dict:
        def per_example(x, k):
            loss, mse = losses(forward(state.params, state.model_state, x, False, None)[0], x)
            return {"loss": loss, "mse": mse}
        return gen.chunked_mean(per_example, split["x"], chunk, key)

    def reconstruct(state: State, x: jax.Array) -> jax.Array:
        """[b, *shape] -> reconstructions [b, *shape] (probabilities for the bernoulli loss)."""
        out = forward(state.params, state.model_state, x, False, None)[0]
        return out if loss_name == "squared_error" else jax.nn.sigmoid(out)

    def encode(state: State, x: jax.Array) -> jax.Array:
        """[b, *shape] -> codes [b, latent]."""
        return gen.apply(encoder, state.params["encoder"], state.model_state["encoder"], x,
                         False)[0]

    def pictures(s: Snapshot) -> list:
        from dlcore import plots
        test = s.data.splits["test"]
        x = jnp.asarray(test["x"][:16])
        paths = [plots.reconstructions(x, reconstruct(s.state, x), s.out_dir / "reconstructions.png",
                                       f"{s.title}: test examples (top) and reconstructions")]
        codes = jax.jit(encode)(s.state, jnp.asarray(test["x"][:2000]))
        paths.append(plots.latent_map(codes, test.get("y", None), s.out_dir / "latent.png",
                                      f"{s.title}: test codes"))
        return paths

    return Algorithm(init, step, evaluate, headline=("test_loss", "test_mse"), pictures=pictures,
                     extras={"encoder": encoder, "decoder": decoder, "reconstruct": reconstruct,
                             "encode": encode})
