"""dlcore's GAN and VAE steps against hand-written `jax.jit` ones, and seeds in one program.

    python benchmarks/generative_speed.py [--steps 100] [--repeats 5] [--seeds 4]
                                          [--steps-per-call 1,100]

Three measurements, in this one process (every ratio is against a figure of the same run):

1. GAN, PacGAN's ring protocol: 8-mode ring mixture (sigma 0.01, 100,000 points in stored order;
   200,000 for PacGAN's pack 2),
   generator MLP 2 -> 4 x (Dense 400, batch norm, ReLU) -> 2, discriminator maxout MLP (3 layers
   of 200 units x 5 pieces) -> 1 logit, non-saturating loss, Adam lr 1e-4 b1 0.8, batch 100.
   Three steps: 'alt' (dlcore's default: the discriminator's update, then the generator's, pack
   1), and 'sim', PacGAN's reference (both gradients from one forward pass, then both updates;
   pack 1, and pack 2 with 100 packed inputs, each slot a generator batch of its own), which is
   what ring/gan and ring/pacgan2 run.
2. VAE, the Flax examples/vae protocol: the 4,000 training digits of `mnist_digits` (grey levels,
   stored order, batch 128), encoder 784 -> 500 -> 2 x 20, decoder 20 -> 500 -> 784 Bernoulli
   logits, one-sample ELBO with the analytic KL, Adam lr 1e-3.
3. Seeds: the GAN (pack 1) for `--seeds` seeds as one `jax.vmap`-ped program against the same
   number of single-seed runs one after another, `--steps` steps each at the largest
   `--steps-per-call`; total wall time of each way, compile excluded (reported apart: the first
   call of each program).

The configs are those of experiments/ring/gan.py (and pacgan2; 'alt' with dlcore's default
updates) and experiments/mnist_digits/vae.py, written out here (the VAE's data with binarize 'none' and stored order, as in Flax's example).

dlcore's contenders are `dlcore.experiment.build(config)`'s algorithm and data, driven as
`dlcore.loop` drives them (`dlcore_driver` copies the compiled call of loop._train, section 3:
`loop.steps_per_call` steps per jitted call, a `lax.scan` when more than one, the batch
`data.sample(train, t, key)` taken inside, the step key fold_in(key, t), the metrics summed on the
device, the carry donated); the host side of the loop (logging, evaluation, checkpoints) is not
timed. The hand-written contenders are plain Flax Linen modules and optax in this file, the data
on the device, the batch cut inside the jitted step, the state donated, the losses summed on the
device, `steps_per_call` steps per call as dlcore is driven. Each contender is compiled and warmed
up once (untimed), then timed for `--steps` steps, `--repeats` times in turn (contenders
interleaved, so drift in machine speed hits all alike); medians. ratio = dlcore's steps/s over
the hand-written's at the same steps per call (>= 1: dlcore is as fast). Parameter counts are
checked equal, and each contender's mean losses over its last timed repeat are
printed (different random streams: the same range is expected, not the same numbers).

Measured (2-core CPU, jax 0.10.2, 2026-12-03, `--steps 200 --repeats 7`, about 4 minutes):
GAN 'alt' pack 1 ratio 0.97 at 1 step/call and 0.99 at 100 (~104 steps/s); 'sim' pack 1 0.99 and
0.94 (~147 steps/s), pack 2 0.98 and 0.98 (~130 steps/s); VAE 0.97 and 0.98 (~345 steps/s); 4
seeds vmapped 1.08x the sequential speed. Ratios moved by about 0.05 between runs.
"""
from __future__ import annotations

import argparse
import statistics
import time
from functools import partial

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from dlcore import experiment
from dlcore.core import split_keys

BATCH = {"gan": 100, "vae": 128}


def gan_config(pack: int, steps: int, updates: str = "simultaneous") -> dict:
    """experiments/ring/gan.py's config (pacgan2's for pack 2: 100 packed inputs a step), with
    `updates`; 'alternating' keeps dlcore's default networks' initializer and momentum."""
    reference = updates == "simultaneous"
    init = {"init": "normal_002"} if reference else {}
    return {"algorithm": "gan",
            "data": {"name": "mixture", "kind": "ring",
                     "batch_size": BATCH["gan"] * (pack if reference else 1),
                     "num_samples": 100_000 * (pack if reference else 1)},
            "generator": {"name": "mlp", "hidden": (400, 400, 400, 400), "batch_norm": True,
                          "batch_norm_momentum": 0.95 if reference else 0.9, **init},
            "discriminator": {"name": "maxout", **init},  # defaults: 3 x 200 units, 5 pieces
            "gan": {"pack": pack, "updates": updates},
            "optim": {"name": "adam", "learning_rate": 1e-4, "b1": 0.8},
            "loop": {"steps": steps}}


def vae_config(steps: int) -> dict:
    return {"algorithm": "vae", "data": {"name": "mnist_digits", "binarize": "none",
                                         "batch_size": BATCH["vae"]},
            "encoder": {"name": "mlp", "hidden": (500,)},
            "decoder": {"name": "mlp", "hidden": (500,)},
            "vae": {"latent": 20, "likelihood": "bernoulli"},
            "optim": {"name": "adam", "learning_rate": 1e-3}, "loop": {"steps": steps}}


def count(tree) -> int:
    return sum(int(np.prod(a.shape)) for a in jax.tree.leaves(tree))


# --- dlcore, driven as dlcore.loop drives it ------------------------------------------------------

def dlcore_driver(algorithm, data, k: int, vmapped: bool):
    """(train_call, start): loop._train's compiled call, without a device mesh (its sharding
    constraints are then the identity); keep in step with dlcore/loop.py.
    train_call(carry, train_split, key_data, key_step) -> carry runs k steps;
    start(seeds) -> (carry, keys, metric names) for a list of seeds (vmapped: one program)."""
    key = jax.random.key(0)
    state = jax.eval_shape(algorithm.init, key)
    batch = jax.eval_shape(data.sample, data.splits["train"], 0, key)
    names = sorted(jax.eval_shape(algorithm.step, state, batch, key)[1])
    over_seeds = (lambda f, *a, **kw: jax.vmap(f, *a, **kw)) if vmapped else (lambda f, **kw: f)

    def one_update(state, acc, t, train_split, key_data, key_step):
        batch = data.sample(train_split, t, key_data)
        state, metrics = algorithm.step(state, batch, jax.random.fold_in(key_step, t))
        vec = jnp.stack([jnp.asarray(metrics[n], jnp.float32) for n in names])
        bad = (acc["bad"] < 0) & ~jnp.isfinite(jnp.sum(vec))
        return state, {"sum": acc["sum"] + vec, "bad": jnp.where(bad, t, acc["bad"])}

    update = over_seeds(one_update, in_axes=(0, 0, None, None, 0, 0))

    @partial(jax.jit, donate_argnums=0)
    def train_call(carry, train_split, key_data, key_step):
        def body(carry, _):
            state, acc, t = carry
            state, acc = update(state, acc, t, train_split, key_data, key_step)
            return (state, acc, t + 1), None
        if k == 1:
            return body(carry, None)[0]
        return jax.lax.scan(body, carry, None, length=k)[0]

    def zero_acc(n_seeds):
        lead = (n_seeds,) if vmapped else ()
        return {"sum": jnp.zeros(lead + (len(names),), jnp.float32),
                "bad": jnp.full(lead, -1, jnp.int32)}

    def start(seeds):
        keys = [split_keys(jax.random.key(s)) for s in seeds]
        keys = jax.tree.map(lambda *a: jnp.stack(a), *keys) if vmapped else keys[0]
        states = jax.jit(over_seeds(algorithm.init))(keys["init"])
        return (states, zero_acc(len(seeds)), jnp.zeros((), jnp.int32)), keys, names

    return train_call, start


class Runner:
    """One contender: `call(carry) -> carry` runs k steps; the carry lives on between repeats.
    The first call (compile + k steps) is timed apart, as `first_call`."""

    def __init__(self, call, carry, k: int, losses):
        self.call, self.k, self.losses = call, k, losses
        t0 = time.perf_counter()
        self.carry = jax.block_until_ready(call(carry))
        self.first_call = time.perf_counter() - t0

    def run(self, steps: int) -> float:
        """Seconds for `steps` steps; then the mean losses of those steps (untimed)."""
        t0 = time.perf_counter()
        for _ in range(steps // self.k):
            self.carry = self.call(self.carry)
        jax.block_until_ready(self.carry)
        seconds = time.perf_counter() - t0
        self.last_losses, self.carry = self.losses(self.carry, steps)
        return seconds


def dlcore_runner(config: dict, k: int, seed: int = 0) -> tuple[Runner, int]:
    """(Runner, parameter count) of dlcore's algorithm for `config`, seed `seed`."""
    algorithm, data = experiment.build(config)
    train_call, start = dlcore_driver(algorithm, data, k, vmapped=False)
    carry, keys, names = start([seed])
    params = count(carry[0].params)
    split = jax.device_put(data.splits["train"])

    def losses(carry, steps):  # what the loop does at a log step: read the sums, start again
        sums = jax.device_get(carry[1]["sum"])
        acc = {"sum": jnp.zeros_like(carry[1]["sum"]), "bad": jnp.full_like(carry[1]["bad"], -1)}
        return {n: float(s) / steps for n, s in zip(names, sums)}, (carry[0], acc, carry[2])

    call = partial(train_call, train_split=split, key_data=keys["data"], key_step=keys["step"])
    runner = Runner(call, carry, k, losses)
    runner.carry = losses(runner.carry, k)[1]  # the first call's sums are no timed repeat's
    return runner, params


# --- hand-written: one file's worth of Flax and optax --------------------------------------------

class Generator(nn.Module):
    momentum: float = 0.9

    @nn.compact
    def __call__(self, z, train: bool):
        h = z
        for _ in range(4):
            h = nn.Dense(400)(h)
            h = nn.relu(nn.BatchNorm(use_running_average=not train, momentum=self.momentum)(h))
        return nn.Dense(2)(h)


class Discriminator(nn.Module):
    @nn.compact
    def __call__(self, x):
        h = x
        for _ in range(3):  # maxout: each of 200 units is the max of 5 affine pieces
            h = nn.Dense(200 * 5)(h).reshape(x.shape[0], 200, 5).max(-1)
        return nn.Dense(1)(h)[:, 0]


class VAE(nn.Module):
    """Flax examples/vae: Dense 500, ReLU, mean and log-variance heads; Dense 500, ReLU, logits."""
    latent: int = 20

    @nn.compact
    def __call__(self, x, key):
        h = nn.relu(nn.Dense(500)(x))
        mean, logvar = nn.Dense(self.latent)(h), nn.Dense(self.latent)(h)
        z = mean + jnp.exp(0.5 * logvar) * jax.random.normal(key, mean.shape)
        logits = nn.Dense(x.shape[-1])(nn.relu(nn.Dense(500)(z)))
        return logits, mean, logvar


def jitted_steps(step, k: int):
    """carry = (state, t, loss sums) -> the carry after k steps of step(state, t) -> (state,
    losses): one step per jitted call, or k as one lax.scan; the carry donated. The losses are
    summed on the device, to be logged as means (what dlcore's loop does too)."""
    def one(carry, _):
        state, t, sums = carry
        state, losses = step(state, t)
        return (state, t + 1, jax.tree.map(jnp.add, sums, losses)), None

    def call(carry):
        return one(carry, None)[0] if k == 1 else jax.lax.scan(one, carry, None, length=k)[0]
    return jax.jit(call, donate_argnums=0)


def handwritten_runner(init, step, k: int) -> tuple[Runner, int]:
    state = init()
    params = count(state[0])
    shapes = jax.eval_shape(step, state, jnp.zeros((), jnp.int32))[1]
    zeros = lambda: jax.tree.map(jnp.zeros_like, shapes)  # noqa: E731

    def losses(carry, steps):  # the means since the last read, and the sums started again
        return {n: float(v) / steps for n, v in carry[2].items()}, (*carry[:2], zeros())

    runner = Runner(jitted_steps(step, k), (state, jnp.zeros((), jnp.int32), zeros()), k, losses)
    runner.carry = losses(runner.carry, k)[1]
    return runner, params


def handwritten_gan(pack: int, k: int, updates: str, seed: int = 0):
    """PacGAN's ring step written out: 'alternating' (the discriminator steps on a batch of 100
    against 100 generated samples, then the generator on 100 more; `pack` consecutive samples
    side by side) or 'simultaneous' (PacGAN's reference: 100 packed inputs, each slot a generator
    batch of its own; both gradients at the same parameters, then both steps)."""
    b = BATCH["gan"]
    rng = np.random.default_rng(seed)
    n = 100_000 * (pack if updates == "simultaneous" else 1)  # as gan_config's data
    angles = 2 * np.pi * rng.integers(8, size=n) / 8
    x = np.stack([np.cos(angles), np.sin(angles)], 1) + 0.01 * rng.standard_normal((n, 2))
    x = jnp.asarray(x, jnp.float32)
    G, D = Generator(0.95 if updates == "simultaneous" else 0.9), Discriminator()
    tx = optax.adam(1e-4, b1=0.8)
    key = jax.random.key(seed)

    def init():
        g = G.init(jax.random.fold_in(key, 1), jnp.zeros((1, 2)), False)
        d = D.init(jax.random.fold_in(key, 2), jnp.zeros((1, 2 * pack)))["params"]
        return (g["params"], d), g["batch_stats"], (tx.init(g["params"]), tx.init(d))

    def generate(g, stats, z):
        out, new = G.apply({"params": g, "batch_stats": stats}, z, True, mutable=["batch_stats"])
        return out, new["batch_stats"]

    def alternating(state, t):
        (g, d), stats, (g_opt, d_opt) = state
        real = jax.lax.dynamic_slice_in_dim(x, (t * b) % x.shape[0], b)
        k1, k2 = jax.random.split(jax.random.fold_in(key, t))
        fake, _ = generate(g, stats, jax.random.normal(k1, (b, 2)))

        def d_loss(d):  # pack: `pack` consecutive samples side by side, one input
            real_logits = D.apply({"params": d}, real.reshape(b // pack, 2 * pack))
            fake_logits = D.apply({"params": d}, fake.reshape(b // pack, 2 * pack))
            return jnp.mean(jax.nn.softplus(-real_logits)) + jnp.mean(jax.nn.softplus(fake_logits))

        dl, grads = jax.value_and_grad(d_loss)(d)
        updates, d_opt = tx.update(grads, d_opt, d)
        d = optax.apply_updates(d, updates)

        def g_loss(g):
            fake, new = generate(g, stats, jax.random.normal(k2, (b, 2)))
            logits = D.apply({"params": d}, fake.reshape(b // pack, 2 * pack))
            return jnp.mean(jax.nn.softplus(-logits)), new

        (gl, stats), grads = jax.value_and_grad(g_loss, has_aux=True)(g)
        updates, g_opt = tx.update(grads, g_opt, g)
        g = optax.apply_updates(g, updates)
        return ((g, d), stats, (g_opt, d_opt)), {"d_loss": dl, "g_loss": gl}

    def simultaneous(state, t):
        (g, d), stats, (g_opt, d_opt) = state
        real = jax.lax.dynamic_slice_in_dim(x, (t * b * pack) % x.shape[0], b * pack)
        z = jax.random.normal(jax.random.fold_in(key, t), (pack, b, 2))

        def losses(d, g):
            slots = [generate(g, stats, z[j]) for j in range(pack)]  # each its own batch
            fake = jnp.concatenate([f for f, _ in slots], axis=1)    # [b, 2 * pack]
            real_logits = D.apply({"params": d}, real.reshape(b, 2 * pack))
            fake_logits = D.apply({"params": d}, fake)
            new = jax.tree.map(lambda *a: sum(a) / pack, *[s for _, s in slots])
            return (jnp.mean(jax.nn.softplus(-real_logits)) + jnp.mean(jax.nn.softplus(fake_logits)),
                    jnp.mean(jax.nn.softplus(-fake_logits))), new

        # one forward pass, a backward pass per loss (two value_and_grads would run it twice)
        (dl, gl), vjp, stats = jax.vjp(losses, d, g, has_aux=True)
        d_grads = vjp((jnp.ones_like(dl), jnp.zeros_like(gl)))[0]
        g_grads = vjp((jnp.zeros_like(dl), jnp.ones_like(gl)))[1]
        updates, d_opt = tx.update(d_grads, d_opt, d)
        d = optax.apply_updates(d, updates)
        updates, g_opt = tx.update(g_grads, g_opt, g)
        g = optax.apply_updates(g, updates)
        return ((g, d), stats, (g_opt, d_opt)), {"d_loss": dl, "g_loss": gl}

    return handwritten_runner(init, simultaneous if updates == "simultaneous" else alternating, k)


def handwritten_vae(k: int, seed: int = 0):
    from dlcore.data import mnist_digits  # the same digits (any 4,000 x 784 would time the same)
    x = mnist_digits.arrays()["x"].reshape(5000, -1)
    x = jnp.asarray(x[np.random.default_rng(seed).permutation(5000)[:4000]])  # classes mixed
    b, model, tx = BATCH["vae"], VAE(), optax.adam(1e-3)
    key = jax.random.key(seed)

    def init():
        params = model.init(key, x[:1], key)["params"]
        return params, tx.init(params)

    def step(state, t):
        params, opt_state = state
        batch = x[(t * b + jnp.arange(b)) % x.shape[0]]  # 128 does not divide 4,000: wrap around

        def loss_fn(params):
            logits, mean, logvar = model.apply({"params": params}, batch,
                                               jax.random.fold_in(key, t))
            rec = optax.sigmoid_binary_cross_entropy(logits, batch).sum(-1)
            kl = -0.5 * jnp.sum(1 + logvar - mean ** 2 - jnp.exp(logvar), -1)
            return jnp.mean(rec + kl)

        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), {"nelbo": loss}

    return handwritten_runner(init, step, k)


# --- timing -----------------------------------------------------------------------------------

def interleave(runners: dict, steps: int, repeats: int) -> dict:
    """{name: median steps/s}: every runner `steps` steps, in turn, `repeats` times."""
    rates = {name: [] for name in runners}
    for _ in range(repeats):
        for name, r in runners.items():
            rates[name].append(steps / r.run(steps))
    return {name: statistics.median(v) for name, v in rates.items()}


def fmt(losses: dict) -> str:
    return ", ".join(f"{n} {v:.3f}" for n, v in sorted(losses.items()))


def step_comparison(title, dlcore_make, hand_make, ks, steps, repeats, rows) -> dict:
    """Each k: the hand-written and dlcore runners, interleaved; rows += (title, name, steps/s,
    ratio); returns the parameter counts {'dlcore', 'hand'}."""
    runners, params = {}, {}
    for k in ks:
        runners[f"hand-written jax.jit, {k}/call"], params["hand"] = hand_make(k)
        runners[f"dlcore, steps_per_call={k}"], params["dlcore"] = dlcore_make(k)
    print(f"{title}: parameters dlcore {params['dlcore']:,}, hand-written {params['hand']:,}; "
          f"first calls (compile) " + ", ".join(f"{n} {r.first_call:.1f} s"
                                                for n, r in runners.items()), flush=True)
    rates = interleave(runners, steps, repeats)
    for name, r in runners.items():
        base = rates[f"hand-written jax.jit, {r.k}/call"]
        rows.append((title, name, rates[name], rates[name] / base))
        print(f"  {name}: {rates[name]:.1f} steps/s; mean losses {fmt(r.last_losses)}", flush=True)
    return params


def seeds_comparison(steps: int, repeats: int, n: int, k: int, rows) -> None:
    """n seeds vmapped in one program against n single-seed runs in turn, k steps per call. The
    sequential runs share one compiled program, as compile is excluded anyway."""
    algorithm, data = experiment.build(gan_config(1, steps))
    split = jax.device_put(data.splits["train"])
    runners = {}
    for vmapped, seeds in ((True, [list(range(n))]), (False, [[s] for s in range(n)])):
        call, start = dlcore_driver(algorithm, data, k, vmapped)
        for s in seeds:
            carry, keys, _ = start(s)
            runners[(vmapped, s[0])] = Runner(
                partial(call, train_split=split, key_data=keys["data"], key_step=keys["step"]),
                carry, k, lambda c, _: ({}, c))
    compile_v, compile_s = runners[(True, 0)].first_call, runners[(False, 0)].first_call
    vm, seq = [], []
    for _ in range(repeats):
        vm.append(runners[(True, 0)].run(steps))
        seq.append(sum(runners[(False, s)].run(steps) for s in range(n)))
    vm, seq = statistics.median(vm), statistics.median(seq)
    print(f"seeds: {n} x {steps} steps, {k}/call: vmapped {vm:.2f} s (first call "
          f"{compile_v:.1f} s), sequential {seq:.2f} s (first call {compile_s:.1f} s per program)",
          flush=True)
    rows.append((f"GAN ring, {n} seeds", "sequential runs", n * steps / seq, 1.0))
    rows.append((f"GAN ring, {n} seeds", "one vmapped program", n * steps / vm, seq / vm))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=100, help="timed steps per repeat and contender")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--seeds", type=int, default=4)
    p.add_argument("--steps-per-call", default="1,100",
                   help="values of loop.steps_per_call (1: the default; ring/gan has 100)")
    args = p.parse_args()
    ks = [int(k) for k in args.steps_per_call.split(",")]
    if any(args.steps % k for k in ks):
        p.error(f"--steps ({args.steps}) must be a multiple of each steps per call {ks}")
    print(f"{args.steps} steps x {args.repeats} repeats, {jax.default_backend()} backend, "
          f"jax {jax.__version__}", flush=True)
    rows = []
    for updates, pack in (("alternating", 1), ("simultaneous", 1), ("simultaneous", 2)):
        params = step_comparison(
            f"GAN ring, {updates[:3]}, pack {pack}",
            lambda k: dlcore_runner(gan_config(pack, args.steps, updates), k),
            lambda k: handwritten_gan(pack, k, updates), ks, args.steps, args.repeats, rows)
        assert params["dlcore"] == params["hand"], params
    params = step_comparison("VAE mnist_digits", lambda k: dlcore_runner(vae_config(args.steps), k),
                             handwritten_vae, ks, args.steps, args.repeats, rows)
    assert params["dlcore"] == params["hand"], params
    seeds_comparison(args.steps, args.repeats, args.seeds, max(ks), rows)

    print(f"\n{'measurement':22s} {'contender':32s} {'steps/s':>9s} {'ratio':>6s}")
    for section, name, rate, ratio in rows:
        print(f"{section:22s} {name:32s} {rate:9.1f} {ratio:6.2f}")
    print("ratio: against the hand-written step at the same steps per call; for seeds, "
          "sequential time / vmapped time (steps/s counts every seed's steps)")


if __name__ == "__main__":
    main()
