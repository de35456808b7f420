"""Proximal Policy Optimization (Schulman et al. 2017), CleanRL's ppo.py details.

    state = State(step, params, opt_state, runner)   runner: dlcore.rl.Runner (E environments)
    step(state, None, key): one iteration = a rollout of rl.num_steps steps of data.num_envs
        environments, GAE(λ) targets, then ppo.update_epochs passes over the batch in
        ppo.num_minibatches shuffled minibatches.

Per minibatch (Huang et al. 2022, "The 37 implementation details of PPO"):
    advantages normalised (ppo.normalize_advantages);
    policy loss  max(-A·r, -A·clip(r, 1-ε, 1+ε)), r = π(a|s) / π_old(a|s), ε = ppo.clip_coef;
    value loss   ½ max((V - R)², (V_old + clip(V - V_old, -ε, ε) - R)²) (ppo.clip_value);
    loss = policy - ppo.ent_coef · entropy + ppo.vf_coef · value.
The learning rate anneals linearly to 0 over the run (optim.schedule='linear'); gradients are
clipped to optim.clip_norm. Unlike CleanRL, a truncated episode (CartPole's 500-step limit) is
bootstrapped from its final observation (dlcore.rl.gae).
"""
from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from dlcore import optim, rl
from dlcore.config import check
from dlcore.core import Algorithm, Data
from dlcore.models.policy import ActorCritic
from dlcore.rl import ActorCriticState as State


def defaults() -> dict:
    """The sections PPO reads: CleanRL's ppo.py settings for CartPole."""
    return {"model": rl.model_defaults(), "rl": rl.defaults(),
            "ppo": {"update_epochs": 4, "num_minibatches": 4, "gae_lambda": 0.95,
                    "clip_coef": 0.2, "clip_value": True, "ent_coef": 0.01, "vf_coef": 0.5,
                    "normalize_advantages": True},
            "optim": optim.defaults(name="adam", learning_rate=2.5e-4, eps=1e-5,
                                    schedule="linear", clip_norm=0.5)}


def validate(p: dict, batch: int) -> None:
    """ConfigError for impossible settings; batch = num_envs x num_steps transitions."""
    for key in ("update_epochs", "num_minibatches"):
        check(isinstance(p[key], int) and p[key] > 0, f"ppo.{key}",
              f"must be a positive integer; got {p[key]}")
    check(batch // p["num_minibatches"] > 0, "ppo.num_minibatches",
          f"{p['num_minibatches']} minibatches of a batch of {batch} transitions "
          "(data.num_envs x rl.num_steps) leaves a minibatch size of zero")
    check(batch % p["num_minibatches"] == 0, "ppo.num_minibatches",
          f"must divide the batch of {batch} transitions (data.num_envs x rl.num_steps)")
    check(0 <= p["gae_lambda"] <= 1, "ppo.gae_lambda", f"must be in [0, 1]; got {p['gae_lambda']}")
    check(p["clip_coef"] > 0, "ppo.clip_coef", f"must be > 0; got {p['clip_coef']}")


class Parts(NamedTuple):
    """PPO without its environments, for host loops (dlcore.gym): the network, the optimizer and
    update(params, opt_state, batch, key) -> (params, opt_state, metrics), batch from
    dlcore.rl.targets ([T, E, ...])."""
    net: ActorCritic
    tx: optax.GradientTransformation
    update: Any


def parts(config: dict, spec: dict, steps: int) -> Parts:
    """PPO's update for `steps` iterations of the environments in `spec`."""
    cfg, p = rl.validate(config["rl"]), config["ppo"]
    size = spec["num_envs"] * cfg["num_steps"]  # transitions per iteration
    validate(p, size)
    net = rl.actor_critic(config["model"], spec)
    apply = lambda params, obs: net.apply(params, obs)
    tx = optim.build(config["optim"], steps * p["update_epochs"] * p["num_minibatches"])
    discrete, eps = spec["discrete"], p["clip_coef"]

    def loss_fn(params, mb):
        pi, value = apply(params, mb["obs"])
        logp = rl.log_prob(pi, mb["action"], discrete)
        log_ratio = logp - mb["logp"]
        ratio = jnp.exp(log_ratio)
        adv = mb["advantage"]
        if p["normalize_advantages"]:
            adv = (adv - adv.mean()) / (adv.std() + 1e-8)
        policy_loss = jnp.maximum(-adv * ratio, -adv * jnp.clip(ratio, 1 - eps, 1 + eps)).mean()
        value_loss = (value - mb["target"]) ** 2
        if p["clip_value"]:
            clipped = mb["value"] + jnp.clip(value - mb["value"], -eps, eps)
            value_loss = jnp.maximum(value_loss, (clipped - mb["target"]) ** 2)
        value_loss = 0.5 * value_loss.mean()
        ent = rl.entropy(pi, discrete).mean()
        loss = policy_loss - p["ent_coef"] * ent + p["vf_coef"] * value_loss
        return loss, {"loss": loss, "policy_loss": policy_loss, "value_loss": value_loss,
                      "entropy": ent, "approx_kl": ((ratio - 1) - log_ratio).mean(),
                      "clip_fraction": (jnp.abs(ratio - 1) > eps).mean()}

    def minibatch_step(carry, mb):
        params, opt_state = carry
        grads, metrics = jax.grad(loss_fn, has_aux=True)(params, mb)
        updates, opt_state = tx.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), metrics

    def update(params, opt_state, data: dict, key: jax.Array):
        """ppo.update_epochs passes over the batch in ppo.num_minibatches shuffled minibatches."""
        data = jax.tree.map(lambda x: x.reshape((size, *x.shape[2:])), data)

        def epoch(carry, k):
            perm = jax.random.permutation(k, size)
            shuffled = jax.tree.map(
                lambda x: x[perm].reshape((p["num_minibatches"], -1, *x.shape[1:])), data)
            return jax.lax.scan(minibatch_step, carry, shuffled)
        (params, opt_state), metrics = jax.lax.scan(
            epoch, (params, opt_state), jax.random.split(key, p["update_epochs"]))
        return params, opt_state, {k: v.mean() for k, v in metrics.items()}
    return Parts(net, tx, update)


def make(config: dict, data: Data, steps: int) -> Algorithm:
    spec = data.spec
    rl.require_env(spec, "ppo")
    cfg, p = rl.validate(config["rl"]), config["ppo"]
    net, tx, update = parts(config, spec, steps)
    apply = lambda params, obs: net.apply(params, obs)
    init = rl.actor_critic_init(net, tx, spec)

    def step(state: State, batch, key: jax.Array) -> tuple[State, dict]:
        del batch  # the step collects its own experience
        k_roll, k_perm = jax.random.split(key)
        runner, data = rl.collect(apply, state.params, state.runner, k_roll, spec, cfg,
                                  p["gae_lambda"])
        params, opt_state, metrics = update(state.params, state.opt_state, data, k_perm)
        state = State(state.step + 1, params, opt_state, runner)
        return state, {**metrics, **rl.episode_metrics(runner)}

    greedy = rl.actor_critic_greedy(apply, spec, cfg)
    return Algorithm(init, step, rl.evaluator(greedy, spec), headline=rl.HEADLINE,
                     pictures=rl.pictures(greedy, spec), extras={"act": greedy})
