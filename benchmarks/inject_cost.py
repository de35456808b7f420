"""What injecting the optimizer's numbers into its state costs (dlcore.optim.build uses
optax.inject_hyperparams so that sweeps can change them): a PPO-sized update, 16 Adam steps of the
CartPole actor-critic (64-64 tanh) per jitted call, plain optax chain against dlcore.optim.build,
interleaved, median of the repeats.

    python benchmarks/inject_cost.py [--repeats 7] [--calls 400]
"""
from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import optax

from dlcore import optim
from dlcore.models.policy import ActorCritic


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--calls", type=int, default=400)
    args = p.parse_args()
    net = ActorCritic(num_actions=2, discrete=True, hidden=(64, 64), activation="tanh")
    params = net.init(jax.random.key(0), jnp.zeros((1, 4)))
    steps = 976 * 16
    contenders = {
        "plain optax": optax.chain(optax.clip_by_global_norm(0.5), optax.scale_by_adam(eps=1e-5),
                                   optax.scale_by_learning_rate(
                                       optax.linear_schedule(2.5e-4, 0.0, steps))),
        "dlcore.optim.build": optim.build(optim.defaults(
            name="adam", learning_rate=2.5e-4, eps=1e-5, schedule="linear", clip_norm=0.5), steps),
    }
    obs = jax.random.normal(jax.random.key(1), (128, 4))

    def loss(p):
        pi, v = net.apply(p, obs)
        return jnp.mean(v ** 2) + jnp.mean(pi ** 2)

    def make(tx):
        @jax.jit
        def run(p, s):
            def body(c, _):
                p, s = c
                u, s = tx.update(jax.grad(loss)(p), s, p)
                return (optax.apply_updates(p, u), s), None
            return jax.lax.scan(body, (p, s), None, length=16)[0]
        return run

    runs = {n: make(tx) for n, tx in contenders.items()}
    states = {n: jax.block_until_ready(runs[n](params, tx.init(params)))  # compiled, untimed
              for n, tx in contenders.items()}
    times = {n: [] for n in contenders}
    for _ in range(args.repeats):
        for n in contenders:
            state, t0 = states[n], time.perf_counter()
            for _ in range(args.calls):
                state = runs[n](*state)
            states[n] = jax.block_until_ready(state)
            times[n].append((time.perf_counter() - t0) / args.calls * 1e6)
    med = {n: statistics.median(v) for n, v in times.items()}
    for n, v in med.items():
        print(f"{n:20s} {v:8.0f} us per 16 updates")
    print(f"ratio dlcore.optim.build / plain optax: {med['dlcore.optim.build'] / med['plain optax']:.2f}")


if __name__ == "__main__":
    main()
