"""Autoencoders, VAEs and GANs (dlcore.algorithms.{autoencoder,vae,gan}, dlcore.generative):
exact checks against closed forms (PCA, probabilistic PCA, the optimal discriminator), the pieces
against scipy, and one clear error for each bad setting."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats

from dlcore import experiment, generative as gen
from dlcore.algorithms import gan, vae
from dlcore.config import ConfigError
from dlcore.data import arrays


def build(config):
    return experiment.build(experiment.complete(config))


def train(alg, data, steps, key=0):
    """`steps` steps in one compiled scan, batches as the loop draws them."""
    split = jax.tree.map(jnp.asarray, data.splits["train"])

    @jax.jit
    def run(state):
        def body(state, i):
            batch = data.sample(split, i, jax.random.key(7))
            return alg.step(state, batch, jax.random.fold_in(jax.random.key(1), i))
        return jax.lax.scan(body, state, jnp.arange(steps))
    return run(alg.init(jax.random.key(key)))


def digits_eigenvalues(data):
    x = np.asarray(data.splits["train"]["x"], np.float64).reshape(len(data.splits["train"]["x"]), -1)
    return np.sort(np.linalg.eigvalsh(np.cov(x.T, bias=True)))[::-1]


LINEAR = {"encoder": {"name": "mlp", "hidden": ()}, "decoder": {"name": "mlp", "hidden": ()}}
FULL_BATCH = {"name": "digits", "batch_size": 1437}


def test_linear_autoencoder_reaches_the_pca_error():
    """A linear autoencoder with squared error learns the principal subspace: its error per example
    is the sum of the covariance's discarded eigenvalues."""
    q = 10
    alg, data = build({"algorithm": "autoencoder", "data": FULL_BATCH, **LINEAR,
                       "autoencoder": {"latent": q}, "loop": {"steps": 3000},
                       "optim": {"learning_rate": 1e-2, "schedule": "cosine",
                                 "end_learning_rate": 1e-4}})
    state, metrics = train(alg, data, 3000)
    pca = digits_eigenvalues(data)[q:].sum()
    got = float(alg.evaluate(state, data.splits["train"], jax.random.key(0))["loss"])
    print(f"linear autoencoder {got:.4f}, PCA {pca:.4f}")  # the README's figures (pytest -s)
    assert got == pytest.approx(pca, rel=0.01)
    assert got >= pca * (1 - 1e-4)  # nothing linear does better than PCA


def test_linear_gaussian_vae_reaches_the_probabilistic_pca_likelihood():
    """Tipping & Bishop (1999): the maximum log-likelihood of x ~ N(b, WWᵀ + σ²I) with q latent
    dimensions is −n/2 (d log 2π + Σ_{i≤q} log λ_i + (d − q) log σ² + d), σ² the mean discarded
    eigenvalue. A linear VAE with a learned variance can reach it (its optimal posterior is
    Gaussian with diagonal covariance at the rotation PPCA leaves free), so its ELBO comes within
    1 % and its importance-weighted estimate closer."""
    q = 10
    alg, data = build({"algorithm": "vae", "data": FULL_BATCH, **LINEAR,
                       "vae": {"latent": q, "likelihood": "gaussian", "eval_samples": 200,
                               "eval_batch_size": 1437}, "loop": {"steps": 3000},
                       "optim": {"learning_rate": 1e-2, "schedule": "cosine",
                                 "end_learning_rate": 1e-4}})
    state, _ = train(alg, data, 3000)
    lam = digits_eigenvalues(data)
    d = len(lam)
    s2 = lam[q:].mean()
    ppca = -0.5 * (d * math.log(2 * math.pi) + np.log(lam[:q]).sum() + (d - q) * math.log(s2) + d)
    got = alg.evaluate(state, data.splits["train"], jax.random.key(0))
    elbo, iw = -float(got["nelbo"]), -float(got["iw_nll"])
    print(f"ELBO {elbo:.2f}, IW log-likelihood {iw:.2f}, PPCA {ppca:.2f}")  # README (pytest -s)
    assert elbo == pytest.approx(ppca, rel=0.01)
    assert elbo <= iw <= ppca * (1 + 1e-3)
    assert iw == pytest.approx(ppca, rel=0.005)
    assert float(jnp.exp(state.params["log_variance"])) == pytest.approx(s2, rel=0.05)


def test_discriminator_converges_to_the_optimal_one():
    """With the generator fixed (learning rate 0), the discriminator's minimiser is
    D*(x) = p_data(x) / (p_data(x) + p_g(x)) (Goodfellow et al. 2014, Prop. 1)."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((20000, 1)).astype(np.float32)
    data = arrays.arrays(x, np.zeros(20000, np.int32), batch_size=500, test_fraction=0.1)
    alg, _ = experiment.build(experiment.complete({
        "algorithm": "gan", "data": {"name": data},
        "generator": {"name": "mlp", "hidden": ()},
        "discriminator": {"name": "mlp", "hidden": (32, 32), "activation": "tanh"},
        "gan": {"latent": 1, "generator_lr": 0.0}, "optim": {"learning_rate": 3e-3},
        "loop": {"steps": 1500}}))
    state, _ = train(alg, data, 1500)
    g = state.params["generator"]["head"]
    w, b = float(g["kernel"][0, 0]), float(g["bias"][0])  # G(z) = w z + b: p_g = N(b, w²)
    grid = np.linspace(-1.5, 1.5, 13, dtype=np.float32)[:, None]
    logits, _ = gen.apply(alg.extras["discriminator"], state.params["discriminator"], {}, grid,
                          False)
    p_data = scipy.stats.norm.pdf(grid[:, 0])
    p_g = scipy.stats.norm.pdf(grid[:, 0], b, abs(w))
    np.testing.assert_allclose(jax.nn.sigmoid(logits[:, 0]), p_data / (p_data + p_g), atol=0.04)


def test_gan_learns_the_ring_and_scores_its_modes():
    """A short PacGAN2 run on the ring: finite losses, a discriminator near chance, and the
    mixture's own scores (modes, high-quality fraction, reverse KL) in the evaluation."""
    alg, data = build({"algorithm": "gan", "data": {"name": "mixture", "num_samples": 5000},
                       "gan": {"pack": 2}, "optim": {"learning_rate": 1e-3, "b1": 0.5},
                       "loop": {"steps": 1500}})
    state, metrics = train(alg, data, 1500)
    assert np.isfinite(np.asarray(metrics["d_loss"])).all()
    got = alg.evaluate(state, data.splits["test"], jax.random.key(0))
    assert {"modes", "high_quality", "reverse_kl", "d_loss", "d_real", "d_fake"} <= set(got)
    assert int(got["modes"]) >= 4
    assert alg.headline == ("test_modes", "test_high_quality", "test_reverse_kl")


def test_pack_puts_samples_side_by_side():
    x = jnp.arange(12.0).reshape(6, 2)
    np.testing.assert_array_equal(gan.pack(x, 2), [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11]])
    img = jnp.arange(4 * 3 * 3 * 1.0).reshape(4, 3, 3, 1)
    packed = gan.pack(img, 2)
    assert packed.shape == (2, 3, 3, 2)
    np.testing.assert_array_equal(packed[1, ..., 0], img[2, ..., 0])
    np.testing.assert_array_equal(packed[1, ..., 1], img[3, ..., 0])
    np.testing.assert_array_equal(gan.pack(x, 1), x)


def test_losses_against_their_definitions():
    real, fake = jnp.array([0.3, -1.2, 2.0]), jnp.array([-0.5, 0.7])
    sig = jax.nn.sigmoid
    want = -np.mean(np.log(sig(real))) - np.mean(np.log(1 - sig(fake)))
    assert float(gan.discriminator_loss(real, fake)) == pytest.approx(want, rel=1e-5)
    assert float(gan.generator_loss(fake, "non_saturating")) == pytest.approx(
        -np.mean(np.log(sig(fake))), rel=1e-5)
    assert float(gan.generator_loss(fake, "minimax")) == pytest.approx(
        np.mean(np.log(1 - sig(fake))), rel=1e-5)


def test_likelihoods_and_kl_against_scipy():
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(3, 4, 2)).astype(np.float32)
    mean = rng.normal(size=(3, 4, 2)).astype(np.float32)
    lv = np.float32(-0.7)
    want = scipy.stats.norm.logpdf(x, mean, np.exp(0.5 * lv)).reshape(3, -1).sum(1)
    np.testing.assert_allclose(gen.gaussian_log_prob(mean, x, lv), want, rtol=1e-5)
    bits = (x > 0.5).astype(np.float32)
    want = scipy.stats.bernoulli.logpmf(bits, 1 / (1 + np.exp(-mean))).reshape(3, -1).sum(1)
    np.testing.assert_allclose(gen.bernoulli_log_prob(mean, bits), want, rtol=1e-5)
    m, v = rng.normal(size=(5, 3)), rng.normal(size=(5, 3))
    # KL(N(m, s²) || N(0, 1)) per dimension: log(1/s) + (s² + m²)/2 − 1/2
    s = np.exp(0.5 * v)
    want = (np.log(1 / s) + (s ** 2 + m ** 2) / 2 - 0.5).sum(1)
    np.testing.assert_allclose(vae.kl_standard_normal(jnp.asarray(m), jnp.asarray(v)), want,
                               rtol=1e-5)
    z = rng.normal(size=(5, 3))
    np.testing.assert_allclose(vae.gaussian_log_density(jnp.asarray(z), jnp.asarray(m), jnp.asarray(v)),
                               scipy.stats.norm.logpdf(z, m, s).sum(1), rtol=1e-5)


def test_importance_weighted_bound_is_tighter_and_equals_the_elbo_with_one_sample():
    cfg = {"algorithm": "vae", "data": {"name": "digits", "batch_size": 64},
           "encoder": {"name": "mlp", "hidden": (32,)}, "decoder": {"name": "mlp", "hidden": (32,)},
           "vae": {"latent": 4, "eval_samples": 50}, "loop": {"steps": 100}}
    alg, data = build(cfg)
    state, _ = train(alg, data, 100)
    got = alg.evaluate(state, data.splits["test"], jax.random.key(0))
    assert float(got["iw_nll"]) < float(got["nelbo"])
    one, _ = build({**cfg, "vae": {"latent": 4, "eval_samples": 1}})
    got = one.evaluate(state, data.splits["test"], jax.random.key(0))
    assert float(got["iw_nll"]) == pytest.approx(float(got["nelbo"]), rel=1e-6)


def test_denoising_autoencoder_trains_on_noise_and_evaluates_without():
    cfg = {"algorithm": "autoencoder", "data": {"name": "digits", "batch_size": 64},
           "autoencoder": {"latent": 8, "noise": 0.3}, "loop": {"steps": 5}}
    alg, data = build(cfg)
    plain, _ = build({**cfg, "autoencoder": {"latent": 8, "noise": 0.0}})
    state = alg.init(jax.random.key(0))
    batch = {"x": jnp.asarray(data.splits["train"]["x"][:64])}
    noisy_loss = alg.step(state, batch, jax.random.key(1))[1]["loss"]
    clean_loss = plain.step(state, batch, jax.random.key(1))[1]["loss"]
    assert float(noisy_loss) != pytest.approx(float(clean_loss))
    a = alg.evaluate(state, data.splits["test"], jax.random.key(0))
    b = plain.evaluate(state, data.splits["test"], jax.random.key(5))
    assert float(a["loss"]) == pytest.approx(float(b["loss"]), rel=1e-6)


@pytest.mark.parametrize("m", [1, 2])
def test_simultaneous_step_is_the_hand_written_one(m):
    """gan.updates 'simultaneous' (ALI's algorithm, PacGAN's reference): each network steps along
    the gradient of its own loss at the same parameters, through one generated batch; with pack m
    each slot of the packed inputs is a generator batch of its own, normalised by its own batch
    statistics, and the running statistics are their average."""
    n, lr = 8, 0.1
    alg, data = build({
        "algorithm": "gan", "data": {"name": "mixture", "num_samples": 1000, "batch_size": n},
        "generator": {"name": "mlp", "hidden": (16, 16), "batch_norm": True,
                      "batch_norm_momentum": 0.95, "init": "normal_002"},
        "discriminator": {"name": "maxout", "hidden": (8,), "pieces": 3},
        "gan": {"pack": m, "updates": "simultaneous"},
        "optim": {"name": "sgd", "learning_rate": lr, "momentum": 0.0}, "loop": {"steps": 1}})
    state = alg.init(jax.random.key(0))
    x = jnp.asarray(data.splits["train"]["x"][:n])
    key = jax.random.key(3)
    new, metrics = jax.jit(alg.step)(state, {"x": x}, key)

    G, D = alg.extras["generator"], alg.extras["discriminator"]
    z = jax.random.normal(jax.random.split(jax.random.split(key)[0])[0], (n, 2))

    def fake(pg):  # slot j holds samples j, j + m, ...: generator batches z[j::m]
        outs = [gen.apply(G, pg, state.model_state["generator"], z[j::m], True,
                          jax.random.key(0)) for j in range(m)]
        stats = jax.tree.map(lambda *a: sum(a) / m, *[s for _, s in outs])
        return jnp.stack([o for o, _ in outs], 1).reshape(n, 2), stats

    def logits(pd, v):
        return gen.apply(D, pd, {}, gan.pack(v, m), True, jax.random.key(0))[0][:, 0]

    pg, pd = state.params["generator"], state.params["discriminator"]
    d_loss = lambda pd: (jnp.mean(jax.nn.softplus(-logits(pd, x)))  # noqa: E731
                         + jnp.mean(jax.nn.softplus(logits(pd, fake(pg)[0]))))
    g_loss = lambda pg: jnp.mean(jax.nn.softplus(-logits(pd, fake(pg)[0])))  # noqa: E731
    for got, p, loss in ((new.params["discriminator"], pd, d_loss),
                         (new.params["generator"], pg, g_loss)):
        want = jax.tree.map(lambda a, g: a - lr * g, p, jax.grad(loss)(p))
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6), got, want)
    np.testing.assert_allclose(metrics["d_loss"], d_loss(pd), rtol=1e-5)
    np.testing.assert_allclose(metrics["g_loss"], g_loss(pg), rtol=1e-5)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6),
                 new.model_state["generator"], fake(pg)[1])


def test_seeds_vmap_through_the_gan_step():
    alg, data = build({"algorithm": "gan", "data": {"name": "mixture", "num_samples": 1000},
                       "loop": {"steps": 3}})
    states = jax.vmap(alg.init)(jax.random.split(jax.random.key(0), 3))
    batch = data.sample(jax.tree.map(jnp.asarray, data.splits["train"]), 0, jax.random.key(0))
    new, metrics = jax.jit(jax.vmap(alg.step, (0, None, 0)))(
        states, batch, jax.random.split(jax.random.key(1), 3))
    assert metrics["d_loss"].shape == (3,)
    one, m0 = jax.jit(alg.step)(jax.tree.map(lambda a: a[1], states), batch,
                       jax.random.split(jax.random.key(1), 3)[1])
    np.testing.assert_allclose(metrics["d_loss"][1], m0["d_loss"], rtol=1e-5)


@pytest.mark.parametrize("config, key", [
    ({"algorithm": "vae", "vae": {"latent": 0}}, "vae.latent"),
    ({"algorithm": "autoencoder", "autoencoder": {"latent": -3}}, "autoencoder.latent"),
    ({"algorithm": "autoencoder", "autoencoder": {"noise": -0.1}}, "autoencoder.noise"),
    ({"algorithm": "vae", "vae": {"likelihood": "poisson"}}, "vae.likelihood"),
    ({"algorithm": "vae", "vae": {"variance": 0.0}}, "vae.variance"),
    ({"algorithm": "gan", "gan": {"pack": 3}}, "gan.pack"),  # 3 does not divide the batch of 64
    ({"algorithm": "gan", "gan": {"loss": "wasserstein"}}, "gan.loss"),
    ({"algorithm": "gan", "gan": {"updates": "both"}}, "gan.updates"),
    ({"algorithm": "gan", "gan": {"discriminator_lr": -1.0}}, "gan.discriminator_lr"),
    # 8x8 digits for a decoder that makes 28x28 images
    ({"algorithm": "vae", "decoder": {"name": "deconv"}}, "decoder.start_shape"),
    ({"algorithm": "gan", "generator": {"name": "mlp", "hidden": (0,)}}, "generator.hidden"),
])
def test_bad_settings_get_one_clear_error(config, key):
    with pytest.raises(ConfigError, match=f"'{key}'") as e:
        build({"data": {"name": "digits", "batch_size": 64}, **config})
    assert "\n" not in str(e.value)


def test_tasks_are_not_examples():
    with pytest.raises(ConfigError, match="learns from batches of examples"):
        build({"algorithm": "vae", "data": {"name": "sinusoid"}})


def test_a_model_section_switches_family_with_its_keys():
    """`--set decoder.name=deconv` brings the deconv family's keys into the decoder section."""
    config = experiment.apply_overrides(
        experiment.complete({"algorithm": "vae", "data": {"name": "mnist_digits"}}),
        ["decoder.name=deconv", "decoder.start_shape=[7,7,32]"])
    assert config["decoder"]["name"] == "deconv" and tuple(config["decoder"]["start_shape"]) == (7, 7, 32)
    assert "hidden" not in config["decoder"] and config["encoder"]["hidden"] == (500,)
    with pytest.raises(ConfigError, match="'decoder.hiden'"):
        experiment.complete({"algorithm": "vae", "data": {"name": "digits"},
                             "decoder": {"hiden": (3,)}})


def test_report_draws_the_samples_of_every_kept_checkpoint(tmp_path, capsys):
    """`dlcore report` on a GAN run: samples.png from initialisation through every kept checkpoint
    (Snapshot.history restores them, read-only, oldest first)."""
    from dlcore import cli
    config = experiment.load("ring/gan", quick=True, overrides=[
        "loop.steps=30", "loop.checkpoint_every=10", "loop.keep_checkpoints=3"])
    experiment.run(config, tmp_path / "run", progress=False)
    run = experiment.load_run(tmp_path / "run")
    history = run.history()
    assert [step for step, _ in history] == [10, 20, 30]
    assert int(history[0][1].step) == 10 and int(history[-1][1].step) == 30
    assert not np.allclose(history[0][1].params["generator"]["head"]["kernel"],
                           history[-1][1].params["generator"]["head"]["kernel"])
    cli.main(["report", str(tmp_path / "run")])
    assert (tmp_path / "run" / "plots" / "samples.png").stat().st_size > 0
