"""Deep Q-learning (Mnih et al. 2015) with a replay buffer and a target network held in the state;
double DQN (van Hasselt et al. 2016) with `dqn.double`.

    state = State(step, params, target_params, opt_state, buffer, runner)
    step(state, None, key): dqn.train_frequency steps of each of data.num_envs environments,
        acting ε-greedily, their transitions written into the ring buffer; then, once
        dqn.learning_starts environment steps are done, one Adam step on a minibatch of
        dqn.batch_size transitions drawn uniformly from the buffer:
            y = r + γ (1 - terminated) Q_target(s', argmax_a Q(s', a) if double else argmax Q_target)
            loss = mean((Q(s, a) - y)²)
        and every dqn.target_network_frequency environment steps
            target <- tau · online + (1 - tau) · target.
ε falls linearly from dqn.start_e to dqn.end_e over dqn.exploration_fraction of the run's
environment steps. Defaults: CleanRL's dqn.py on CartPole-v1. Only `terminated` stops the
bootstrap: a transition cut by the time limit keeps γ·Q(s') of its final observation.
"""
from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from dlcore import optim, rl
from dlcore.config import check
from dlcore.core import Algorithm, Data
from dlcore.models.policy import QNetwork


class Buffer(NamedTuple):
    obs: jax.Array         # [N, *obs_shape]
    action: jax.Array      # i32[N]
    reward: jax.Array      # f32[N]
    next_obs: jax.Array    # [N, *obs_shape] the observation reached (the final one at an end)
    terminated: jax.Array  # bool[N]
    position: jax.Array    # i32[] where the next transitions go
    size: jax.Array        # i32[] transitions held (<= N)


class State(NamedTuple):
    step: jax.Array
    params: Any
    target_params: Any
    opt_state: Any
    buffer: Buffer
    runner: rl.Runner


def defaults() -> dict:
    """The sections DQN reads (CleanRL dqn.py, CartPole-v1)."""
    return {"model": rl.model_defaults(hidden=(120, 84), activation="relu"),
            "rl": rl.defaults("gamma", "normalize_observations"),
            "dqn": {"buffer_size": 10000, "batch_size": 128, "learning_starts": 10000,
                    "train_frequency": 10, "target_network_frequency": 500, "tau": 1.0,
                    "start_e": 1.0, "end_e": 0.05, "exploration_fraction": 0.5, "double": False},
            "optim": optim.defaults(name="adam", learning_rate=2.5e-4)}


def validate(d: dict, per_step: int) -> None:
    for key in ("buffer_size", "batch_size", "train_frequency", "target_network_frequency"):
        check(isinstance(d[key], int) and d[key] > 0, f"dqn.{key}",
              f"must be a positive integer; got {d[key]}")
    check(d["buffer_size"] % per_step == 0, "dqn.buffer_size",
          f"must be a multiple of the {per_step} transitions one step adds "
          f"(dqn.train_frequency x data.num_envs); got {d['buffer_size']}")
    check(0 < d["tau"] <= 1, "dqn.tau", f"must be in (0, 1]; got {d['tau']}")
    check(0 <= d["end_e"] <= d["start_e"] <= 1, "dqn.end_e",
          f"need 0 <= end_e <= start_e <= 1; got {d['end_e']}, {d['start_e']}")
    check(0 < d["exploration_fraction"] <= 1, "dqn.exploration_fraction",
          f"must be in (0, 1]; got {d['exploration_fraction']}")


def epsilon(d: dict, env_steps, total_env_steps: int):
    """The exploration rate after `env_steps` environment steps (linear, then flat)."""
    duration = d["exploration_fraction"] * total_env_steps
    frac = jnp.clip(env_steps / duration, 0.0, 1.0)
    return d["start_e"] + frac * (d["end_e"] - d["start_e"])


def make(config: dict, data: Data, steps: int) -> Algorithm:
    spec = data.spec
    rl.require_env(spec, "dqn")
    rl.require_discrete(spec, "dqn")
    cfg, d = rl.validate(config["rl"]), config["dqn"]
    num_envs = spec["num_envs"]
    per_step = d["train_frequency"] * num_envs  # environment steps (transitions) per step
    validate(d, per_step)
    total = steps * per_step
    hidden, activation = rl.network_settings(config["model"])
    net = QNetwork(spec["num_outputs"], hidden=hidden, activation=activation)
    tx = optim.build(config["optim"], steps)
    env, env_params = rl.environment(spec)
    norm = cfg["normalize_observations"]
    n = d["buffer_size"]

    def init(key: jax.Array) -> State:
        k_net, k_env = jax.random.split(key)
        obs_shape = spec["input_shape"]
        params = net.init(k_net, jnp.zeros((1, *obs_shape)))
        buffer = Buffer(jnp.zeros((n, *obs_shape)), jnp.zeros(n, jnp.int32), jnp.zeros(n),
                        jnp.zeros((n, *obs_shape)), jnp.zeros(n, bool), jnp.zeros((), jnp.int32),
                        jnp.zeros((), jnp.int32))
        runner = rl.runner_init(env, env_params, num_envs, k_env)
        return State(jnp.zeros((), jnp.int32), params, params, tx.init(params), buffer, runner)

    def add(buffer: Buffer, traj: dict) -> Buffer:
        """Write the trajectory's per_step transitions at the ring position."""
        flat = {k: traj[k].reshape((per_step, *traj[k].shape[2:]))
                for k in ("obs", "action", "reward", "next_obs", "terminated")}
        put = lambda a, v: jax.lax.dynamic_update_slice_in_dim(a, v.astype(a.dtype),
                                                               buffer.position, 0)
        return Buffer(*(put(getattr(buffer, k), flat[k]) for k in flat),
                      (buffer.position + per_step) % n, jnp.minimum(buffer.size + per_step, n))

    def loss_fn(params, target_params, mb, stats):
        obs, next_obs = (rl.normalize(stats, mb[k], norm) for k in ("obs", "next_obs"))
        q = jnp.take_along_axis(net.apply(params, obs), mb["action"][:, None], 1)[:, 0]
        q_next = net.apply(target_params, next_obs)
        if d["double"]:  # the online network chooses, the target network scores
            best = jnp.argmax(net.apply(params, next_obs), -1)
            q_next = jnp.take_along_axis(q_next, best[:, None], 1)[:, 0]
        else:
            q_next = q_next.max(-1)
        y = mb["reward"] + cfg["gamma"] * (1.0 - mb["terminated"]) * q_next
        loss = jnp.mean((q - jax.lax.stop_gradient(y)) ** 2)
        return loss, {"loss": loss, "q": q.mean()}

    def step(state: State, batch, key: jax.Array) -> tuple[State, dict]:
        del batch  # the step collects its own experience
        k_roll, k_sample = jax.random.split(key)
        done_before = state.step * per_step
        eps = epsilon(d, done_before, total)
        stats = state.runner.obs_stats

        def act(obs, k):
            k_explore, k_random = jax.random.split(k)
            greedy = jnp.argmax(net.apply(state.params, rl.normalize(stats, obs, norm)), -1)
            random = jax.random.randint(k_random, greedy.shape, 0, spec["num_outputs"])
            explore = jax.random.uniform(k_explore, greedy.shape) < eps
            return jnp.where(explore, random, greedy), {}
        runner, traj = rl.rollout(env, env_params, act, state.runner, k_roll, d["train_frequency"])
        runner = rl.with_obs_stats(runner, traj, norm)
        buffer = add(state.buffer, traj)

        idx = jax.random.randint(k_sample, (d["batch_size"],), 0, jnp.maximum(buffer.size, 1))
        mb = {k: getattr(buffer, k)[idx] for k in ("obs", "action", "reward", "next_obs",
                                                    "terminated")}
        mb["terminated"] = mb["terminated"].astype(jnp.float32)
        grads, metrics = jax.grad(loss_fn, has_aux=True)(state.params, state.target_params, mb,
                                                         runner.obs_stats)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        learning = done_before + per_step > d["learning_starts"]
        # before learning starts nothing changes (the whole update is computed and discarded:
        # under vmap a lax.cond would compute both branches anyway)
        keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(learning, a, b), new, old)
        params = keep(optax.apply_updates(state.params, updates), state.params)
        opt_state = keep(opt_state, state.opt_state)
        # a target update whenever the environment-step count crosses a multiple of the frequency
        f = d["target_network_frequency"]
        sync = learning & ((done_before + per_step) // f > done_before // f)
        target = jax.tree.map(lambda o, t: jnp.where(sync, d["tau"] * o + (1 - d["tau"]) * t, t),
                              params, state.target_params)
        state = State(state.step + 1, params, target, opt_state, buffer, runner)
        return state, {**metrics, "epsilon": eps, **rl.episode_metrics(runner)}

    def greedy(state: State):
        def policy(obs):
            return jnp.argmax(net.apply(state.params, rl.normalize(state.runner.obs_stats, obs,
                                                                   norm)), -1)
        return policy

    return Algorithm(init, step, rl.evaluator(greedy, spec), headline=rl.HEADLINE,
                     pictures=rl.pictures(greedy, spec), extras={"act": greedy})
