"""Generative adversarial networks (Goodfellow et al. 2014), with PacGAN's packing (Lin et al. 2018):
the discriminator judges `pack` samples at once, concatenated along their last axis, which
penalises a generator that collapses onto few modes.

    state = State(step, params {'generator', 'discriminator'}, model_state {...}, opt_state {...})
    batch = {'x': [b, *shape], ...}         # labels, if any, are ignored

One step updates both networks (`gan.updates`): 'alternating' steps the discriminator on the batch
against b fresh generated samples, then the generator, against the updated discriminator, on b more
(its batch-norm statistics are the ones it keeps); 'simultaneous' takes both networks' gradients
from one forward pass at the same parameters, the generator's through the b samples the
discriminator judged (ALI's algorithm, Dumoulin et al. 2017, which PacGAN's reference uses).
Sections: `generator` ([b, latent] -> [b, prod(shape)], reshaped to the example's shape, then
`gan.output`), `discriminator` ([b/pack, *packed shape] -> [b/pack, 1] logits), `optim` (both
networks; each network's learning rate may differ: `gan.generator_lr`, `gan.discriminator_lr`), and
`gan`:
    latent              the size of z ~ N(0, I) (`noise`: 'normal') or U(-1, 1)^latent ('uniform')
    pack                samples per discriminator input (1: a plain GAN); must divide the batch
    loss                'non_saturating' (the generator maximises log D(G(z))) or 'minimax'
                        (it minimises log(1 − D(G(z))), the original game)
    updates             'alternating' or 'simultaneous' (above)
    output              'identity', 'sigmoid' (pixels in [0, 1]) or 'tanh' on the generator's output
    generator_lr        None: optim.learning_rate; a number: the generator's own rate (TTUR,
    discriminator_lr    Heusel et al. 2017); 0 freezes that network (the optimal-discriminator
                        check trains D against a fixed G)
    eval_samples        generated samples scored at each evaluation
Metrics: 'd_loss', 'g_loss', 'd_real' and 'd_fake' (the discriminator's mean probability of
'real' on real and on generated inputs); evaluation adds whatever the data scores generated samples
with (spec['score_samples']: a mixture's modes, high-quality fraction and reverse KL).
"""
from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from dlcore import generative as gen, optim
from dlcore.config import check, one_of
from dlcore.core import Algorithm, Data, Snapshot

MODELS = ("generator", "discriminator")
LOSSES = ("non_saturating", "minimax")
UPDATES = ("alternating", "simultaneous")
OUTPUTS = {"identity": lambda x: x, "sigmoid": jax.nn.sigmoid, "tanh": jnp.tanh}


class State(NamedTuple):
    step: jax.Array
    params: Any       # {'generator': ..., 'discriminator': ...}
    model_state: Any  # {'generator': {...}, 'discriminator': {...}}: batch statistics
    opt_state: Any    # {'generator': ..., 'discriminator': ...}


def defaults() -> dict:
    return {"generator": {"name": "mlp", "hidden": (128, 128)},
            "discriminator": {"name": "mlp", "hidden": (128, 128)},
            "optim": optim.defaults(),
            "gan": {"latent": 2, "noise": "normal", "pack": 1, "loss": "non_saturating",
                    "updates": "alternating", "output": "identity", "generator_lr": None, "discriminator_lr": None, "eval_samples": 2500}}


def discriminator_loss(real_logits: jax.Array, fake_logits: jax.Array) -> jax.Array:
    """−E[log D(x)] − E[log(1 − D(G(z)))] with D = sigmoid(logits): [n], [m] -> scalar. Its
    minimiser over all functions is D* = p_data / (p_data + p_g)."""
    return jnp.mean(jax.nn.softplus(-real_logits)) + jnp.mean(jax.nn.softplus(fake_logits))


def generator_loss(fake_logits: jax.Array, loss: str) -> jax.Array:
    """'non_saturating': −E[log D(G(z))]; 'minimax': E[log(1 − D(G(z)))]. [m] -> scalar."""
    if loss == "non_saturating":
        return jnp.mean(jax.nn.softplus(-fake_logits))
    return -jnp.mean(jax.nn.softplus(fake_logits))


def pack(x: jax.Array, m: int) -> jax.Array:
    """[b, *shape] -> [b/m, *shape[:-1], m·shape[-1]]: m consecutive samples side by side along
    their last axis (features of a vector, channels of an image)."""
    b, *shape = x.shape
    grouped = x.reshape(b // m, m, *shape)
    return jnp.moveaxis(grouped, 1, -2).reshape(b // m, *shape[:-1], m * shape[-1])


def optimizer(cfg: dict, lr, key: str, steps: int) -> optax.GradientTransformation:
    """The `optim` section's optimizer at learning rate `lr` (None: the section's own; 0: none,
    the parameters stay as they are)."""
    check(lr is None or (type(lr) in (int, float) and math.isfinite(lr) and lr >= 0), key,
          f"must be None or a number >= 0; got {lr!r}")
    if lr == 0:
        return optax.set_to_zero()
    return optim.build(cfg if lr is None else {**cfg, "learning_rate": float(lr)}, steps)


def make(config: dict, data: Data, steps: int) -> Algorithm:
    shape = gen.require_examples(data.spec, "gan")
    own = config["gan"]
    latent = gen.positive_int(own["latent"], "gan.latent", "the latent size")
    m = gen.positive_int(own["pack"], "gan.pack", "the samples per discriminator input")
    batch_size = config["data"].get("batch_size")
    if type(batch_size) is int:
        check(batch_size % m == 0, "gan.pack", f"{m} samples per discriminator input do not "
              f"divide the batch of {batch_size} (data.batch_size)")
    loss_name = one_of(own["loss"], "gan.loss", LOSSES)
    updates = one_of(own["updates"], "gan.updates", UPDATES)
    noise = one_of(own["noise"], "gan.noise", ("normal", "uniform"))
    output = OUTPUTS[one_of(own["output"], "gan.output", OUTPUTS)]
    n_eval = gen.positive_int(own["eval_samples"], "gan.eval_samples", "the samples scored")
    check(n_eval % m == 0, "gan.eval_samples", f"{n_eval} is not a multiple of gan.pack ({m})")
    packed = (*shape[:-1], m * shape[-1])
    generator = gen.network(config["generator"], "generator", (latent,), math.prod(shape))
    discriminator = gen.network(config["discriminator"], "discriminator", packed, 1)
    tx = {net: optimizer(config["optim"], own[f"{net}_lr"], f"gan.{net}_lr", steps)
          for net in MODELS}
    score = data.spec.get("score_samples")

    def init(key: jax.Array) -> State:
        k_g, k_d = jax.random.split(key)
        (pg, sg), (pd, sd) = gen.init(generator, k_g, (latent,)), gen.init(discriminator, k_d, packed)
        params = {"generator": pg, "discriminator": pd}
        return State(jnp.zeros((), jnp.int32), params, {"generator": sg, "discriminator": sd},
                     {k: tx[k].init(params[k]) for k in params})

    def draw_z(key, n):
        if noise == "normal":
            return jax.random.normal(key, (n, latent))
        return jax.random.uniform(key, (n, latent), minval=-1.0, maxval=1.0)

    def generate(params, model_state, key, n, train=False):
        """(n samples [n, *shape], the generator's new state). In training with pack m > 1,
        sample i·m + j comes from the j-th of m generator batches of n/m, each normalised by its
        own batch statistics (their running averages averaged): PacGAN's reference draws each
        slot of the packed inputs as a batch of its own."""
        k_z, k_net = jax.random.split(key)
        z = draw_z(k_z, n)
        if not train or m == 1:
            out, s = gen.apply(generator, params["generator"], model_state["generator"], z,
                               train, k_net)
            return output(gen.as_examples(out, shape)), s
        # a loop, not a vmap: m is small, and m plain matrix products ran faster than one batched
        slots = [gen.apply(generator, params["generator"], model_state["generator"], z[j::m],
                           True, k_j) for j, k_j in enumerate(jax.random.split(k_net, m))]
        out = jnp.stack([o for o, _ in slots], axis=1).reshape(n, -1)  # sample i·m + j: slot j
        return output(gen.as_examples(out, shape)), jax.tree.map(
            lambda *a: sum(a) / m, *[s for _, s in slots])

    def judge(params, model_state, x, train=False, key=None):
        """(logits [n/pack] of packed x [n, *shape], the discriminator's new state)."""
        out, s = gen.apply(discriminator, params["discriminator"], model_state["discriminator"],
                           pack(x, m), train, key)
        return out.reshape(-1), s

    def d_losses(params, model_state, x, fake, key):
        """The discriminator's loss on real x against fake, and (real logits, fake logits, its
        new state)."""
        k_real, k_fake = jax.random.split(key)
        real_logits, s = judge(params, model_state, x, True, k_real)
        fake_logits, s = judge(params, {**model_state, "discriminator": s}, fake, True, k_fake)
        return discriminator_loss(real_logits, fake_logits), (real_logits, fake_logits, s)

    def alternating(state: State, x: jax.Array, key: jax.Array):
        """The discriminator steps on x against n fresh samples; then the generator, against
        the updated discriminator, on n more."""
        k_fake, k_d, k_fake2, k_g = jax.random.split(key, 4)
        fake, _ = generate(state.params, state.model_state, k_fake, x.shape[0], True)
        fake = jax.lax.stop_gradient(fake)

        def d_loss_fn(p):
            return d_losses({**state.params, "discriminator": p}, state.model_state, x, fake, k_d)

        (d_loss, (real_logits, fake_logits, d_state)), d_grads = jax.value_and_grad(
            d_loss_fn, has_aux=True)(state.params["discriminator"])
        d_params, d_opt = update("discriminator", d_grads, state)
        after_d = {**state.params, "discriminator": d_params}
        model_state = {**state.model_state, "discriminator": d_state}

        def g_loss_fn(p):
            params = {**after_d, "generator": p}
            samples, g_state = generate(params, model_state, k_fake2, x.shape[0], True)
            logits, _ = judge(params, model_state, samples, True, k_g)
            return generator_loss(logits, loss_name), g_state

        (g_loss, g_state), g_grads = jax.value_and_grad(g_loss_fn, has_aux=True)(
            state.params["generator"])
        g_params, g_opt = update("generator", g_grads, state)
        return (State(state.step + 1, {"generator": g_params, "discriminator": d_params},
                      {**model_state, "generator": g_state},
                      {"generator": g_opt, "discriminator": d_opt}),
                scalars(d_loss, g_loss, real_logits, fake_logits))

    def simultaneous(state: State, x: jax.Array, key: jax.Array):
        """Both networks' gradients from one forward pass at the same parameters, the generator's
        through the same n samples the discriminator judged (ALI's algorithm, which PacGAN's
        reference trains with), then both step."""
        k_fake, k_d = jax.random.split(key)

        def losses(pd, pg):
            params = {"generator": pg, "discriminator": pd}
            fake, g_state = generate(params, state.model_state, k_fake, x.shape[0], True)
            d_loss, (real_logits, fake_logits, d_state) = d_losses(
                params, state.model_state, x, fake, k_d)
            return (d_loss, generator_loss(fake_logits, loss_name)), (
                real_logits, fake_logits, {"generator": g_state, "discriminator": d_state})

        (d_loss, g_loss), vjp, (real_logits, fake_logits, model_state) = jax.vjp(
            losses, state.params["discriminator"], state.params["generator"], has_aux=True)
        one, zero = jnp.ones_like(d_loss), jnp.zeros_like(d_loss)
        d_params, d_opt = update("discriminator", vjp((one, zero))[0], state)
        g_params, g_opt = update("generator", vjp((zero, one))[1], state)
        return (State(state.step + 1, {"generator": g_params, "discriminator": d_params},
                      model_state, {"generator": g_opt, "discriminator": d_opt}),
                scalars(d_loss, g_loss, real_logits, fake_logits))

    def update(net: str, grads, state: State):
        """(new params, new optimizer state) of one network."""
        updates, opt = tx[net].update(grads, state.opt_state[net], state.params[net])
        return optax.apply_updates(state.params[net], updates), opt

    def scalars(d_loss, g_loss, real_logits, fake_logits) -> dict:
        return {"d_loss": d_loss, "g_loss": g_loss,
                "d_real": jnp.mean(jax.nn.sigmoid(real_logits)),
                "d_fake": jnp.mean(jax.nn.sigmoid(fake_logits))}

    def step(state: State, batch: dict, key: jax.Array) -> tuple[State, dict]:
        return (simultaneous if updates == "simultaneous" else alternating)(state, batch["x"], key)

    def sample(state: State, key: jax.Array, n: int) -> jax.Array:
        """n generated examples [n, *shape] (batch norm with its running statistics)."""
        return generate(state.params, state.model_state, key, n)[0]

    def evaluate(state: State, split: dict, key: jax.Array) -> dict:
        """The discriminator on the split's examples (up to eval_samples of them) against as many
        generated ones, and the data's own scores of eval_samples generated examples."""
        fake = sample(state, key, n_eval)
        n_real = min(n_eval, split["x"].shape[0])
        real = split["x"][:n_real - n_real % m]
        real_logits, _ = judge(state.params, state.model_state, real)
        fake_logits, _ = judge(state.params, state.model_state, fake)
        out = {"d_loss": discriminator_loss(real_logits, fake_logits),
               "d_real": jnp.mean(jax.nn.sigmoid(real_logits)),
               "d_fake": jnp.mean(jax.nn.sigmoid(fake_logits))}
        return {**out, **(score(fake) if score else {})}

    def pictures(s: Snapshot) -> list:
        """samples.png: generated samples at initialisation, at every kept checkpoint and at the
        end (2-D data: point clouds over the data's modes; images: one row per state)."""
        from dlcore import plots
        key = jax.random.key(0)
        draw = jax.jit(sample, static_argnums=2)  # one compile for every state drawn
        kept = [(step, state) for step, state in (s.history() if s.history else [])
                if step != int(s.state.step)][-4:]
        states = [(0, s.initial), *kept, (int(s.state.step), s.state)]
        if shape == (2,):
            panels = [("data", s.data.splits["test"]["x"][:n_eval])]
            panels += [(f"step {step}", draw(state, key, n_eval)) for step, state in states]
            return [plots.points(panels, s.out_dir / "samples.png",
                                 f"{s.title}: generated samples as training went",
                                 s.data.spec.get("modes"))]
        rows = [draw(state, key, 12) for _, state in states]
        return [plots.example_grid(rows, s.out_dir / "samples.png",
                                   f"{s.title}: generated examples as training went",
                                   [f"step {step}" for step, _ in states])]

    headline = ("test_modes", "test_high_quality", "test_reverse_kl") if score else (
        "test_d_real", "test_d_fake")
    return Algorithm(init, step, evaluate, headline=headline, pictures=pictures,
                     extras={"generator": generator, "discriminator": discriminator,
                             "sample": sample})
