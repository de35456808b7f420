"""Minimal end-to-end-jitted PPO on CartPole-v1 (PureJaxRL shape, CleanRL hyperparameters).

Self-contained baseline: its own jnp CartPole (Gymnasium CartPole-v1 dynamics, auto-reset,
500-step time limit), flax.linen actor/critic, optax adam. `make_train(cfg)(key)` is one
`lax.scan` over updates, so `jax.jit(jax.vmap(make_train(cfg)))(keys)` trains many seeds at once.

    python benchmarks/ppo_minimal.py --seeds 8 --num-envs 4 --total-timesteps 500000
"""
import argparse
import time
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

# ----------------------------------------------------------------------------- CartPole-v1


class EnvState(NamedTuple):
    obs: jax.Array  # (4,) x, x_dot, theta, theta_dot
    t: jax.Array  # steps taken in the current episode


def env_reset(key):
    return EnvState(jax.random.uniform(key, (4,), minval=-0.05, maxval=0.05), jnp.int32(0))


def env_step(key, state, action):
    """Gymnasium CartPole-v1 (euler) step; auto-resets when the episode ends."""
    x, x_dot, th, th_dot = state.obs
    force = jnp.where(action == 1, 10.0, -10.0)
    cos, sin = jnp.cos(th), jnp.sin(th)
    temp = (force + 0.05 * th_dot**2 * sin) / 1.1  # polemass_length=0.05, total_mass=1.1
    th_acc = (9.8 * sin - cos * temp) / (0.5 * (4.0 / 3.0 - 0.1 * cos**2 / 1.1))
    x_acc = temp - 0.05 * th_acc * cos / 1.1
    obs = jnp.stack([x + 0.02 * x_dot, x_dot + 0.02 * x_acc, th + 0.02 * th_dot, th_dot + 0.02 * th_acc])
    t = state.t + 1
    terminated = (jnp.abs(obs[0]) > 2.4) | (jnp.abs(obs[2]) > 12 * 2 * jnp.pi / 360)
    done = terminated | (t >= 500)  # like CleanRL: done = terminated | truncated
    reset = env_reset(key)
    new = jax.tree.map(lambda r, s: jnp.where(done, r, s), reset, EnvState(obs, t))
    return new, jnp.float32(1.0), done


# ----------------------------------------------------------------------------- networks


def dense(n, scale):
    return nn.Dense(n, kernel_init=nn.initializers.orthogonal(scale), bias_init=nn.initializers.zeros)


class ActorCritic(nn.Module):
    num_actions: int = 2

    @nn.compact
    def __call__(self, x):
        a = nn.tanh(dense(64, np.sqrt(2))(x))
        a = nn.tanh(dense(64, np.sqrt(2))(a))
        logits = dense(self.num_actions, 0.01)(a)
        v = nn.tanh(dense(64, np.sqrt(2))(x))
        v = nn.tanh(dense(64, np.sqrt(2))(v))
        return logits, dense(1, 1.0)(v)[..., 0]


# ----------------------------------------------------------------------------- PPO

CONFIG = dict(
    num_envs=4, num_steps=128, total_timesteps=500_000, lr=2.5e-4, gamma=0.99, gae_lambda=0.95,
    num_minibatches=4, update_epochs=4, clip_coef=0.2, ent_coef=0.01, vf_coef=0.5, max_grad_norm=0.5,
)


class Transition(NamedTuple):
    obs: jax.Array
    action: jax.Array
    logp: jax.Array
    value: jax.Array
    reward: jax.Array
    done: jax.Array


def make_train(cfg):
    E, T = cfg["num_envs"], cfg["num_steps"]
    num_updates = cfg["total_timesteps"] // (E * T)
    batch = E * T
    mb = batch // cfg["num_minibatches"]
    net = ActorCritic()

    def lr_schedule(count):  # count = optimizer steps; anneal once per update as in CleanRL
        update = count // (cfg["num_minibatches"] * cfg["update_epochs"])
        return cfg["lr"] * (1.0 - update / num_updates)

    tx = optax.chain(optax.clip_by_global_norm(cfg["max_grad_norm"]), optax.adam(lr_schedule, eps=1e-5))

    def train(key):
        key, k_init, k_env = jax.random.split(key, 3)
        params = net.init(k_init, jnp.zeros((4,)))
        opt_state = tx.init(params)
        env_state = jax.vmap(env_reset)(jax.random.split(k_env, E))
        ep_ret = jnp.zeros(E)

        def env_step_fn(carry, _):
            params, env_state, ep_ret, key = carry
            key, k_act, k_env = jax.random.split(key, 3)
            logits, value = net.apply(params, env_state.obs)
            action = jax.random.categorical(k_act, logits)
            logp = jax.nn.log_softmax(logits)[jnp.arange(E), action]
            next_state, reward, done = jax.vmap(env_step)(jax.random.split(k_env, E), env_state, action)
            ep_ret = ep_ret + reward
            finished = (jnp.where(done, ep_ret, 0.0).sum(), done.sum())
            trans = Transition(env_state.obs, action, logp, value, reward, done)
            return (params, next_state, jnp.where(done, 0.0, ep_ret), key), (trans, finished)

        def gae(traj, last_value):
            def step(carry, tr):
                adv, next_value = carry
                nonterminal = 1.0 - tr.done
                delta = tr.reward + cfg["gamma"] * next_value * nonterminal - tr.value
                adv = delta + cfg["gamma"] * cfg["gae_lambda"] * nonterminal * adv
                return (adv, tr.value), adv

            _, advs = jax.lax.scan(step, (jnp.zeros_like(last_value), last_value), traj, reverse=True)
            return advs, advs + traj.value

        def loss_fn(params, tr, adv, ret):
            logits, value = net.apply(params, tr.obs)
            logp_all = jax.nn.log_softmax(logits)
            logp = jnp.take_along_axis(logp_all, tr.action[:, None], axis=1)[:, 0]
            ratio = jnp.exp(logp - tr.logp)
            adv = (adv - adv.mean()) / (adv.std() + 1e-8)
            pg_loss = jnp.maximum(-adv * ratio, -adv * jnp.clip(ratio, 1 - cfg["clip_coef"], 1 + cfg["clip_coef"])).mean()
            v_clipped = tr.value + jnp.clip(value - tr.value, -cfg["clip_coef"], cfg["clip_coef"])
            v_loss = 0.5 * jnp.maximum((value - ret) ** 2, (v_clipped - ret) ** 2).mean()
            entropy = -(jnp.exp(logp_all) * logp_all).sum(-1).mean()
            return pg_loss - cfg["ent_coef"] * entropy + cfg["vf_coef"] * v_loss

        def update_fn(carry, _):
            params, opt_state, env_state, ep_ret, key = carry
            (params, env_state, ep_ret, key), (traj, (ret_sum, n_done)) = jax.lax.scan(
                env_step_fn, (params, env_state, ep_ret, key), None, T)
            _, last_value = net.apply(params, env_state.obs)
            advs, rets = gae(traj, last_value)
            data = jax.tree.map(lambda x: x.reshape((batch,) + x.shape[2:]), (traj, advs, rets))

            def epoch_fn(carry, _):
                params, opt_state, key = carry
                key, k_perm = jax.random.split(key)
                perm = jax.random.permutation(k_perm, batch)
                mbs = jax.tree.map(lambda x: x[perm].reshape((cfg["num_minibatches"], mb) + x.shape[1:]), data)

                def minibatch_fn(carry, mb_data):
                    params, opt_state = carry
                    loss, grads = jax.value_and_grad(loss_fn)(params, *mb_data)
                    updates, opt_state = tx.update(grads, opt_state)
                    return (optax.apply_updates(params, updates), opt_state), loss

                (params, opt_state), losses = jax.lax.scan(minibatch_fn, (params, opt_state), mbs)
                return (params, opt_state, key), losses

            (params, opt_state, key), losses = jax.lax.scan(
                epoch_fn, (params, opt_state, key), None, cfg["update_epochs"])
            n = n_done.sum()
            metrics = dict(mean_return=jnp.where(n > 0, ret_sum.sum() / jnp.maximum(n, 1), jnp.nan),
                           episodes=n, loss=losses.mean())
            return (params, opt_state, env_state, ep_ret, key), metrics

        runner = (params, opt_state, env_state, ep_ret, key)
        return jax.lax.scan(update_fn, runner, None, num_updates)

    return train


# ----------------------------------------------------------------------------- main


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--seeds", type=int, default=1)
    p.add_argument("--num-envs", type=int, default=CONFIG["num_envs"])
    p.add_argument("--total-timesteps", type=int, default=CONFIG["total_timesteps"])
    args = p.parse_args()
    cfg = dict(CONFIG, num_envs=args.num_envs, total_timesteps=args.total_timesteps)
    keys = jax.random.split(jax.random.PRNGKey(0), args.seeds)

    train = jax.jit(jax.vmap(make_train(cfg)))
    t0 = time.perf_counter()
    compiled = train.lower(keys).compile()
    t1 = time.perf_counter()
    _, metrics = jax.block_until_ready(compiled(keys))
    t2 = time.perf_counter()

    steps = args.seeds * (cfg["total_timesteps"] // (cfg["num_envs"] * cfg["num_steps"])) * cfg["num_envs"] * cfg["num_steps"]
    ret = np.asarray(metrics["mean_return"])  # (seeds, updates); NaN where no episode finished
    final = np.array([r[~np.isnan(r)][-10:].mean() for r in ret])  # last 10 updates with episodes
    print(f"compile {t1 - t0:.1f}s  run {t2 - t1:.1f}s  {steps / (t2 - t1):,.0f} env steps/s "
          f"({args.seeds} seeds x {cfg['num_envs']} envs, {steps:,} steps)")
    print(f"final mean return {final.mean():.1f} +- {final.std():.1f}  per seed: {[round(float(x), 1) for x in final]}")


if __name__ == "__main__":
    main()
