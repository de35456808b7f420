"""Variational autoencoders (Kingma & Welling 2014): a Gaussian encoder q(z|x) = N(μ(x), diag σ²(x)),
a standard normal prior, a Bernoulli or Gaussian decoder p(x|z), trained on the evidence lower
bound with the reparameterisation trick and the analytic KL; β-VAE (Higgins et al. 2017) weighs the
KL by `beta`. Evaluation also estimates log p(x) by importance sampling (Burda et al. 2016).

    state = State(step, params {'encoder', 'decoder'[, 'log_variance']}, model_state, opt_state)
    batch = {'x': [b, *shape], ...}         # labels, if any, are ignored

Sections: `encoder` ([b, *shape] -> [b, 2·latent]: means, then log-variances), `decoder`
([b, latent] -> [b, prod(shape)]: Bernoulli logits or Gaussian means), `optim`, and `vae`:
    latent              the size of z
    likelihood          'bernoulli' (pixels in [0, 1]: binarized, or grey levels as in the Flax
                        example) or 'gaussian' (N(x; decoder(z), variance·I))
    variance            the Gaussian decoder's variance: 'learned' (one scalar parameter,
                        params['log_variance']) or a fixed number (unused by 'bernoulli')
    beta                the KL's weight in the training loss (1: the ELBO)
    eval_samples        k, the samples of z per example at evaluation
    eval_batch_size     examples per evaluation chunk (k decoder passes each)
Per-example metrics, in nats: training 'loss' (reconstruction + β·KL, one sample), 'nelbo'
(−ELBO, β = 1), 'kl', 'reconstruction' (−log p(x|z)); evaluation 'nelbo' (averaged over k samples)
and 'iw_nll' (−log of the mean importance weight over the k samples: an upper bound on −log p(x)
that tightens as k grows), 'kl'.
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
LIKELIHOODS = ("bernoulli", "gaussian")


def defaults() -> dict:
    return {"encoder": {"name": "mlp", "hidden": (500,)},
            "decoder": {"name": "mlp", "hidden": (500,)},
            "optim": optim.defaults(),
            "vae": {"latent": 20, "likelihood": "bernoulli", "variance": "learned", "beta": 1.0,
                    "eval_samples": 100, "eval_batch_size": 100}}


def kl_standard_normal(mean: jax.Array, log_var: jax.Array) -> jax.Array:
    """KL(N(mean, diag exp(log_var)) || N(0, I)) per example: [b, d] -> [b]."""
    return 0.5 * jnp.sum(mean ** 2 + jnp.exp(log_var) - log_var - 1.0, axis=-1)


def gaussian_log_density(z: jax.Array, mean, log_var) -> jax.Array:
    """log N(z; mean, diag exp(log_var)), summed over the last axis: [..., d] -> [...]."""
    return -0.5 * jnp.sum((z - mean) ** 2 * jnp.exp(-log_var) + log_var + gen.LOG_2PI, axis=-1)


def make(config: dict, data: Data, steps: int) -> Algorithm:
    shape = gen.require_examples(data.spec, "vae")
    own = config["vae"]
    latent = gen.positive_int(own["latent"], "vae.latent", "the latent size")
    likelihood = one_of(own["likelihood"], "vae.likelihood", LIKELIHOODS)
    variance, beta = own["variance"], own["beta"]
    learned = variance == "learned" and likelihood == "gaussian"
    check(variance == "learned" or (type(variance) in (int, float) and math.isfinite(variance) and variance > 0),
          "vae.variance", f"must be 'learned' or a number > 0; got {variance!r}")
    check(type(beta) in (int, float) and math.isfinite(beta) and beta >= 0, "vae.beta",
          f"must be a number >= 0; got {beta!r}")
    k = gen.positive_int(own["eval_samples"], "vae.eval_samples", "the samples per example")
    chunk = gen.eval_chunk(own["eval_batch_size"], "vae.eval_batch_size")
    encoder = gen.network(config["encoder"], "encoder", shape, 2 * latent)
    decoder = gen.network(config["decoder"], "decoder", (latent,), math.prod(shape))
    tx = optim.build(config["optim"], steps)

    def init(key: jax.Array) -> State:
        k_enc, k_dec = jax.random.split(key)
        (pe, se), (pd, sd) = gen.init(encoder, k_enc, shape), gen.init(decoder, k_dec, (latent,))
        params = {"encoder": pe, "decoder": pd}
        if learned:
            params["log_variance"] = jnp.zeros((), jnp.float32)
        return State(jnp.zeros((), jnp.int32), params, {"encoder": se, "decoder": sd},
                     tx.init(params))

    def encode(params, model_state, x, train=False, key=None):
        """([b, latent] means, [b, latent] log-variances, new encoder state)."""
        out, s = gen.apply(encoder, params["encoder"], model_state["encoder"], x, train, key)
        return out[:, :latent], out[:, latent:], s

    def decode(params, model_state, z, train=False, key=None):
        """([b, *shape] logits or means, new decoder state)."""
        out, s = gen.apply(decoder, params["decoder"], model_state["decoder"], z, train, key)
        return gen.as_examples(out, shape), s

    def log_likelihood(params, out, x):
        """log p(x | z) per example [b]."""
        if likelihood == "bernoulli":
            return gen.bernoulli_log_prob(out, x)
        lv = params["log_variance"] if learned else math.log(variance)
        return gen.gaussian_log_prob(out, x, lv)

    def loss_fn(params, model_state, x, key):
        k_z, k_enc, k_dec = jax.random.split(key, 3)
        mean, log_var, se = encode(params, model_state, x, True, k_enc)
        z = mean + jnp.exp(0.5 * log_var) * jax.random.normal(k_z, mean.shape)
        out, sd = decode(params, model_state, z, True, k_dec)
        rec, kl = -log_likelihood(params, out, x), kl_standard_normal(mean, log_var)
        metrics = {"nelbo": jnp.mean(rec + kl), "kl": jnp.mean(kl), "reconstruction": jnp.mean(rec)}
        return jnp.mean(rec + beta * kl), (metrics, {"encoder": se, "decoder": sd})

    step = gen.gradient_step(loss_fn, tx)

    def log_weights(state: State, x: jax.Array, key: jax.Array) -> tuple[jax.Array, jax.Array]:
        """(log p(x, z_i) − log q(z_i | x) [k, b] for k samples z_i ~ q(z|x), KL [b])."""
        mean, log_var, _ = encode(state.params, state.model_state, x)
        z = mean + jnp.exp(0.5 * log_var) * jax.random.normal(key, (k, *mean.shape))  # [k, b, d]
        out, _ = decode(state.params, state.model_state, z.reshape(-1, latent))
        log_px = log_likelihood(state.params, out, jnp.tile(x, (k,) + (1,) * (x.ndim - 1)))
        log_pz = gaussian_log_density(z, 0.0, 0.0)
        log_qz = gaussian_log_density(z, mean, log_var)
        return log_px.reshape(k, -1) + log_pz - log_qz, kl_standard_normal(mean, log_var)

    def evaluate(state: State, split: dict, key: jax.Array) -> dict:
        def per_example(x, key):
            lw, kl = log_weights(state, x, key)
            iw = jax.scipy.special.logsumexp(lw, axis=0) - math.log(k)
            return {"nelbo": -jnp.mean(lw, axis=0), "iw_nll": -iw, "kl": kl}
        return gen.chunked_mean(per_example, split["x"], chunk, key)

    def mean_of(params, out):
        """The decoder's mean image: sigmoid(logits) for Bernoulli pixels."""
        return jax.nn.sigmoid(out) if likelihood == "bernoulli" else out

    def sample(state: State, key: jax.Array, n: int) -> jax.Array:
        """n examples' means [n, *shape] decoded from z ~ N(0, I)."""
        out, _ = decode(state.params, state.model_state, jax.random.normal(key, (n, latent)))
        return mean_of(state.params, out)

    def pictures(s: Snapshot) -> list:
        from dlcore import plots
        test = s.data.splits["test"]
        x = jnp.asarray(test["x"][:16])
        mean, _, _ = encode(s.state.params, s.state.model_state, x)
        recon = mean_of(s.state.params, decode(s.state.params, s.state.model_state, mean)[0])
        paths = [plots.reconstructions(x, recon, s.out_dir / "reconstructions.png",
                                       f"{s.title}: test examples and their reconstructions "
                                       "(decoded posterior means)")]
        paths.append(plots.example_grid(
            [sample(s.state, jax.random.key(r), 16) for r in range(4)], s.out_dir / "samples.png",
            f"{s.title}: decoded z ~ N(0, I)"))
        t = jnp.linspace(0, 1, 10)[:, None]
        rows = [mean_of(s.state.params, decode(s.state.params, s.state.model_state,
                                               (1 - t) * mean[i] + t * mean[i + 1])[0])
                for i in range(0, 8, 2)]
        paths.append(plots.example_grid(rows, s.out_dir / "interpolations.png",
                                        f"{s.title}: straight lines between test codes"))
        codes = jax.jit(lambda xs: encode(s.state.params, s.state.model_state, xs)[0])(
            jnp.asarray(test["x"][:2000]))
        paths.append(plots.latent_map(codes, test.get("y"), s.out_dir / "latent.png",
                                      f"{s.title}: posterior means of test examples"))
        return paths

    return Algorithm(init, step, evaluate, headline=("test_nelbo", "test_iw_nll"),
                     pictures=pictures,
                     extras={"encoder": encoder, "decoder": decoder, "sample": sample,
                             "log_weights": log_weights})
