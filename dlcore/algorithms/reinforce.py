"""REINFORCE with a learned baseline (Williams 1992; Sutton & Barto 2018, §13.4).

    state = State(step, params, opt_state, runner)   (dlcore.rl.ActorCriticState)
    step(state, None, key): every one of data.num_envs environments is reset and plays ONE whole
        episode (the rollout is the environment's step limit long; the steps after an episode's
        end are masked out), then one gradient step on
        loss = -mean_t((G_t - V(s_t)) · log π(a_t|s_t)) + reinforce.vf_coef · mean_t((G_t - V(s_t))²)
        - reinforce.ent_coef · entropy,   G_t = Σ_k γ^k r_{t+k} to the episode's end.

Monte-Carlo returns are unbiased; the baseline V only lowers their variance (it gets no gradient
through the policy term). A time-limit truncation bootstraps G from V(final observation), as
dlcore.rl does everywhere. There is no `rl.num_steps`: an episode decides the length.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from dlcore import optim, rl
from dlcore.core import Algorithm, Data
from dlcore.rl import ActorCriticState as State


def defaults() -> dict:
    """The sections REINFORCE reads."""
    return {"model": rl.model_defaults(), "rl": rl.defaults("gamma", "normalize_observations"),
            "reinforce": {"vf_coef": 0.5, "ent_coef": 0.0, "normalize_advantages": True},
            "optim": optim.defaults(name="adam", learning_rate=1e-3, schedule="linear")}


def make(config: dict, data: Data, steps: int) -> Algorithm:
    spec = data.spec
    rl.require_env(spec, "reinforce")
    cfg, r = rl.validate(config["rl"]), config["reinforce"]
    net = rl.actor_critic(config["model"], spec)
    apply = lambda params, obs: net.apply(params, obs)
    tx = optim.build(config["optim"], steps)
    env, env_params = rl.environment(spec)
    discrete, num_envs, horizon = spec["discrete"], spec["num_envs"], spec["max_steps"]
    norm = cfg["normalize_observations"]

    init = rl.actor_critic_init(net, tx, spec)

    def episodes(params, runner: rl.Runner, key):
        """One episode per environment from a fresh reset: the trajectory [horizon, E, ...]."""
        k_reset, k_roll = jax.random.split(key)
        fresh = rl.runner_init(env, env_params, num_envs, k_reset)
        runner = runner._replace(obs=fresh.obs, env_state=fresh.env_state)
        stats = runner.obs_stats

        def one(carry, k):
            runner, alive = carry
            k_act, k_env = jax.random.split(k)
            pi, _ = apply(params, rl.normalize(stats, runner.obs, norm))
            action = rl.sample_action(pi, k_act, discrete)
            runner, tr = rl.env_step(env, env_params, runner, rl.clip_action(action, spec), k_env,
                                     alive)
            return (runner, alive & ~tr["done"]), {**tr, "action": action, "alive": alive}
        (runner, _), traj = jax.lax.scan(one, (runner, jnp.ones(num_envs, bool)),
                                         jax.random.split(k_roll, horizon))
        return rl.with_obs_stats(runner, traj, norm), traj, stats

    def loss_fn(params, traj, stats):
        t, e = traj["reward"].shape
        obs = rl.normalize(stats, traj["obs"], norm).reshape((t * e, *traj["obs"].shape[2:]))
        pi, value = apply(params, obs)
        _, next_value = apply(params, rl.normalize(stats, traj["next_obs"], norm).reshape(obs.shape))
        value, next_value = value.reshape(t, e), jax.lax.stop_gradient(next_value.reshape(t, e))
        ret = rl.discounted_returns(traj["reward"], next_value, traj["terminated"], traj["done"],
                                    cfg["gamma"])
        mask = traj["alive"].astype(jnp.float32)
        count = jnp.maximum(mask.sum(), 1.0)
        mean = lambda x: jnp.sum(x * mask) / count
        adv = jax.lax.stop_gradient(ret - value)
        if r["normalize_advantages"]:
            adv = (adv - mean(adv)) / (jnp.sqrt(mean((adv - mean(adv)) ** 2)) + 1e-8)
        logp = rl.log_prob(pi, traj["action"].reshape((t * e, *traj["action"].shape[2:])),
                           discrete).reshape(t, e)
        policy_loss = -mean(adv * logp)
        value_loss = mean((ret - value) ** 2)
        ent = mean(rl.entropy(pi, discrete).reshape(t, e))
        loss = policy_loss + r["vf_coef"] * value_loss - r["ent_coef"] * ent
        return loss, {"loss": loss, "policy_loss": policy_loss, "value_loss": value_loss,
                      "entropy": ent}

    def step(state: State, batch, key: jax.Array) -> tuple[State, dict]:
        del batch  # the step collects its own experience
        runner, traj, stats = episodes(state.params, state.runner, key)
        grads, metrics = jax.grad(loss_fn, has_aux=True)(state.params, traj, stats)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        state = State(state.step + 1, optax.apply_updates(state.params, updates), opt_state, runner)
        return state, {**metrics, **rl.episode_metrics(runner)}

    greedy = rl.actor_critic_greedy(apply, spec, cfg)
    return Algorithm(init, step, rl.evaluator(greedy, spec), headline=rl.HEADLINE,
                     pictures=rl.pictures(greedy, spec), extras={"act": greedy})
