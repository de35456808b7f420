"""Gymnasium adapter: the same PPO agent trained on a Gymnasium (non-JAX) environment with a host
loop. Environments step in Python; acting and learning are the jitted functions dlcore's PPO
uses inside its end-to-end program (dlcore.algorithms.ppo.parts, dlcore.rl.targets).

    summary = train(config, env_id="CartPole-v1", seed=0)

`config` is a PPO experiment's config (e.g. experiments/cartpole/ppo.py): data.num_envs
environments in a `gymnasium.vector.SyncVectorEnv` that resets an environment in the same step
its episode ends (`AutoresetMode.SAME_STEP`; the observation reached is `info['final_obs']`, used
to bootstrap truncated episodes exactly as dlcore.rl does), rl.num_steps steps per iteration,
loop.steps iterations. Nothing is checkpointed: this path exists to run agents on environments
that only exist outside JAX, and to measure what the end-to-end JAX path saves.
"""
from __future__ import annotations

import collections
import time

import jax
import jax.numpy as jnp
import numpy as np

from dlcore import rl
from dlcore.config import ConfigError, check


def _gymnasium():
    try:
        import gymnasium
    except ImportError:
        raise ConfigError("training on a Gymnasium environment needs gymnasium: "
                          "pip install gymnasium") from None
    return gymnasium


def vector_env(env_id: str, num_envs: int, seed: int):
    """A SyncVectorEnv of `num_envs` copies of `env_id`, auto-resetting in the same step."""
    gym = _gymnasium()
    try:
        gym.spec(env_id)
    except gym.error.Error as e:
        raise ConfigError(f"unknown Gymnasium environment '{env_id}' ({e})") from None
    envs = gym.vector.SyncVectorEnv([lambda: gym.make(env_id) for _ in range(num_envs)],
                                    autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
    envs.action_space.seed(seed)
    return envs


def train(config: dict, env_id: str = "CartPole-v1", seed: int = 0, log_every: int = 0) -> dict:
    """Train config's PPO on Gymnasium's `env_id`; returns {'final_return' (mean of the last 100
    training episodes), 'returns' (that mean after every iteration), 'env_steps', 'seconds',
    'env_steps_per_second' (after the first iteration, which compiles)}."""
    from dlcore.algorithms import ppo
    check(config["algorithm"] == "ppo", "algorithm",
          f"the Gymnasium host loop trains ppo; got '{config['algorithm']}'")
    cfg, p = rl.validate(config["rl"]), config["ppo"]
    num_envs, num_steps, iterations = (config["data"]["num_envs"], cfg["num_steps"],
                                       config["loop"]["steps"])
    envs = vector_env(env_id, num_envs, seed)
    spec = rl.env_spec(f"gymnasium:{env_id}", envs.single_observation_space,
                       envs.single_action_space, num_envs)
    net, tx, update = ppo.parts(config, spec, iterations)
    apply = lambda params, obs: net.apply(params, obs)
    norm = cfg["normalize_observations"]

    @jax.jit
    def act(params, stats, obs, key):
        pi, value = apply(params, rl.normalize(stats, obs, norm))
        action = rl.sample_action(pi, key, spec["discrete"])
        return rl.clip_action(action, spec), action, rl.log_prob(pi, action, spec["discrete"]), value

    @jax.jit
    def learn(params, opt_state, stats, traj, key):
        batch = rl.targets(apply, params, stats, traj, cfg, p["gae_lambda"])
        params, opt_state, metrics = update(params, opt_state, batch, key)
        stats = rl.obs_stats_update(stats, traj["obs"].reshape((-1, *spec["input_shape"]))) \
            if norm else stats
        return params, opt_state, stats, metrics

    keys = jax.random.split(jax.random.key(seed), 3)
    params = net.init(keys[0], jnp.zeros((1, *spec["input_shape"])))
    opt_state, stats = tx.init(params), rl.obs_stats_init(spec["input_shape"])
    obs, _ = envs.reset(seed=seed)
    running, recent, curve = np.zeros(num_envs), collections.deque(maxlen=rl.WINDOW), []
    t_start, t_timed = time.perf_counter(), None
    try:
        for it in range(iterations):
            traj = collections.defaultdict(list)
            for t in range(num_steps):
                key = jax.random.fold_in(jax.random.fold_in(keys[1], it), t)
                env_action, action, logp, value = jax.device_get(act(params, stats, obs, key))
                nxt, reward, terminated, truncated, info = envs.step(env_action)
                done = terminated | truncated
                reached = nxt.copy()
                if done.any():  # the observation each finished episode reached, not its reset
                    reached[done] = np.stack(info["final_obs"][done])
                for name, v in (("obs", obs), ("action", action), ("logp", logp),
                                ("value", value), ("reward", reward), ("terminated", terminated),
                                ("done", done), ("next_obs", reached)):
                    traj[name].append(v)
                running += reward
                recent.extend(running[done])
                running[done] = 0.0
                obs = nxt
            traj = {k: np.stack(v) if k == "action" else np.stack(v).astype(np.float32)
                    for k, v in traj.items()}
            params, opt_state, stats, metrics = learn(params, opt_state, stats, traj,
                                                      jax.random.fold_in(keys[2], it))
            curve.append(float(np.mean(recent)) if recent else 0.0)
            if it == 0:
                jax.block_until_ready(params)
                t_timed = time.perf_counter()
            if log_every and (it + 1) % log_every == 0:
                print(f"iteration {it + 1}/{iterations}: return {curve[-1]:.1f}", flush=True)
    finally:
        envs.close()
    t_end = time.perf_counter()
    timed_steps = (iterations - 1) * num_envs * num_steps
    return {"env": env_id, "final_return": curve[-1], "returns": curve,
            "env_steps": iterations * num_envs * num_steps, "seconds": t_end - t_start,
            "env_steps_per_second": timed_steps / (t_end - t_timed) if iterations > 1 else None}
