"""Advantage actor-critic, synchronous (A2C: Mnih et al. 2016's A3C without the asynchrony).

    state = State(step, params, opt_state, runner)   (dlcore.rl.ActorCriticState)
    step(state, None, key): a rollout of rl.num_steps steps of data.num_envs environments,
        GAE(λ) targets (a2c.gae_lambda = 1: n-step returns), then ONE gradient step on
        loss = -mean(A · log π(a|s)) + a2c.vf_coef · mean((R - V(s))²) - a2c.ent_coef · entropy.

Defaults follow Stable-Baselines3's A2C (RMSprop 7e-4, α 0.99, ε 1e-5; 5 steps; value 0.5;
entropy 0; gradient norm 0.5) with rl-baselines3-zoo's CartPole setting of 8 environments. The
truncation bootstrap and the greedy evaluation are dlcore.rl's.
"""
from __future__ import annotations

import jax
import optax

from dlcore import optim, rl
from dlcore.config import check
from dlcore.core import Algorithm, Data
from dlcore.rl import ActorCriticState as State


def defaults() -> dict:
    """The sections A2C reads (Stable-Baselines3's A2C settings)."""
    return {"model": rl.model_defaults(), "rl": rl.defaults(num_steps=5),
            "a2c": {"gae_lambda": 1.0, "ent_coef": 0.0, "vf_coef": 0.5,
                    "normalize_advantages": False},
            "optim": optim.defaults(name="rmsprop", learning_rate=7e-4, rms_decay=0.99, eps=1e-5,
                                    clip_norm=0.5)}


def make(config: dict, data: Data, steps: int) -> Algorithm:
    spec = data.spec
    rl.require_env(spec, "a2c")
    cfg, a = rl.validate(config["rl"]), config["a2c"]
    check(0 <= a["gae_lambda"] <= 1, "a2c.gae_lambda", f"must be in [0, 1]; got {a['gae_lambda']}")
    net = rl.actor_critic(config["model"], spec)
    apply = lambda params, obs: net.apply(params, obs)
    tx = optim.build(config["optim"], steps)
    discrete = spec["discrete"]
    init = rl.actor_critic_init(net, tx, spec)

    def loss_fn(params, data):
        pi, value = apply(params, data["obs"])
        adv = data["advantage"]
        if a["normalize_advantages"]:
            adv = (adv - adv.mean()) / (adv.std() + 1e-8)
        policy_loss = -(adv * rl.log_prob(pi, data["action"], discrete)).mean()
        value_loss = ((data["target"] - value) ** 2).mean()
        ent = rl.entropy(pi, discrete).mean()
        loss = policy_loss + a["vf_coef"] * value_loss - a["ent_coef"] * ent
        return loss, {"loss": loss, "policy_loss": policy_loss, "value_loss": value_loss,
                      "entropy": ent}

    def step(state: State, batch, key: jax.Array) -> tuple[State, dict]:
        del batch  # the step collects its own experience
        runner, data = rl.collect(apply, state.params, state.runner, key, spec, cfg,
                                  a["gae_lambda"])
        data = jax.tree.map(lambda x: x.reshape((-1, *x.shape[2:])), data)
        grads, metrics = jax.grad(loss_fn, has_aux=True)(state.params, data)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        state = State(state.step + 1, optax.apply_updates(state.params, updates), opt_state, runner)
        return state, {**metrics, **rl.episode_metrics(runner)}

    greedy = rl.actor_critic_greedy(apply, spec, cfg)
    return Algorithm(init, step, rl.evaluator(greedy, spec), headline=rl.HEADLINE,
                     pictures=rl.pictures(greedy, spec), extras={"act": greedy})
