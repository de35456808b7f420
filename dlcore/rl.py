"""Deep RL: what the value-based and policy-gradient algorithms share.

An RL algorithm is the usual bundle (dlcore.algorithms): `init(key) -> state` and
`step(state, None, key) -> (state, metrics)`, where one step collects experience from `num_envs`
JAX environments *inside* the step and makes one update. So a whole training run is one
`lax.scan` of steps (`make_train(config) -> train(key)`, the PureJaxRL shape), `jax.vmap(train)`
trains many seeds at once, and the host loop (dlcore.loop) drives the same functions with
checkpoints, resume and bounded logging.

    Runner(obs [E, ...], env_state (leaves [E, ...]), episodes: Episodes, obs_stats: ObsStats)

* Episodes: each environment's running return and the returns of the last `window` (100) finished
  episodes, in a fixed-size ring, so memory never grows with training length. Its mean is the
  `return` metric and the `final_return` of summary.json.
* Truncation: environments keep `terminated` (a natural end: bootstrap nothing) and `truncated`
  (the time limit: the episode was cut, bootstrap from the state it reached) apart. Every step
  records `next_obs`, the observation the transition reached (`info['final_observation']`, not
  the auto-reset one), so targets use V(next_obs) and mask only on `terminated`.
* Observation normalisation (`rl.normalize_observations`): running mean and variance of the
  observations seen so far, updated after each rollout, frozen within one.
"""
from __future__ import annotations

import os
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from dlcore.config import ConfigError, check

WINDOW = 100  # final_return: the mean over each seed's last 100 training episodes (CleanRL's report)


def defaults(*keys: str, **overrides) -> dict:
    """The `rl` section shared by the RL algorithms (each has its own section too), or the subset
    named by `keys`."""
    cfg = dict(gamma=0.99, num_steps=128, normalize_observations=False)
    cfg = {k: cfg[k] for k in keys} if keys else cfg
    unknown = set(overrides) - set(cfg)
    assert not unknown, f"unknown rl keys {unknown}"
    cfg.update(overrides)
    return cfg


def validate(cfg: dict) -> dict:
    check(isinstance(cfg["gamma"], (int, float)) and 0.0 <= cfg["gamma"] <= 1.0, "rl.gamma",
          f"must be in [0, 1]; got {cfg['gamma']}")
    if "num_steps" in cfg:
        check(isinstance(cfg["num_steps"], int) and cfg["num_steps"] > 0, "rl.num_steps",
              f"must be a positive integer; got {cfg['num_steps']}")
    return cfg


def require_env(spec: dict, algorithm: str) -> None:
    """ConfigError unless the data is an environment (dlcore.data.env)."""
    if "env" not in spec:
        raise ConfigError(f"config key 'data.name': {algorithm} learns from an environment; "
                          "set data.name=env and data.env=<id> (e.g. CartPole-v1)")


def environment(spec: dict):
    """(env, env_params) named by the data spec (dlcore.envs)."""
    from dlcore import envs
    return envs.make(spec["env"])


def require_discrete(spec: dict, algorithm: str) -> None:
    """ConfigError for an algorithm that needs discrete actions given a continuous-action env."""
    if not spec["discrete"]:
        raise ConfigError(f"config key 'data.name': {algorithm} needs discrete actions, and "
                          f"'{spec['env']}' has continuous actions (shape {spec['action_shape']}); "
                          "use ppo, a2c or reinforce for it")


# --- episode statistics: a fixed-size ring of the last finished episodes ------------------------

class Episodes(NamedTuple):
    ret: jax.Array          # f32[E] return of each environment's running episode so far
    length: jax.Array       # i32[E]
    recent: jax.Array       # f32[WINDOW] returns of the last finished episodes (a ring)
    recent_length: jax.Array  # i32[WINDOW]
    count: jax.Array        # i32[] episodes finished so far


def episodes_init(num_envs: int) -> Episodes:
    return Episodes(jnp.zeros(num_envs), jnp.zeros(num_envs, jnp.int32), jnp.zeros(WINDOW),
                    jnp.zeros(WINDOW, jnp.int32), jnp.zeros((), jnp.int32))


def episodes_update(ep: Episodes, reward: jax.Array, done: jax.Array,
                    alive: jax.Array | None = None) -> Episodes:
    """After one step of every environment: reward, done [E] (alive [E]: steps that count)."""
    alive = jnp.ones_like(done) if alive is None else alive
    ret = ep.ret + reward * alive
    length = ep.length + alive.astype(jnp.int32)
    finished = done & alive
    # the finished episodes go to consecutive ring slots, in environment order
    slot = (ep.count + jnp.cumsum(finished) - 1) % WINDOW
    slot = jnp.where(finished, slot, WINDOW)  # out of range: dropped
    recent = ep.recent.at[slot].set(ret, mode="drop")
    recent_length = ep.recent_length.at[slot].set(length, mode="drop")
    count = ep.count + finished.sum(dtype=jnp.int32)
    return Episodes(jnp.where(finished, 0.0, ret), jnp.where(finished, 0, length), recent,
                    recent_length, count)


def recent_mean(ep: Episodes) -> tuple[jax.Array, jax.Array]:
    """(mean return, mean length) of the last min(count, WINDOW) finished episodes; 0 if none."""
    n = jnp.minimum(ep.count, WINDOW)
    mask = jnp.arange(WINDOW) < n
    denom = jnp.maximum(n, 1)
    return (jnp.sum(jnp.where(mask, ep.recent, 0.0)) / denom,
            jnp.sum(jnp.where(mask, ep.recent_length, 0)) / denom)


# --- observation normalisation -------------------------------------------------------------------

class ObsStats(NamedTuple):
    mean: jax.Array   # f32[*obs_shape]
    var: jax.Array
    count: jax.Array  # f32[]


def obs_stats_init(obs_shape: tuple) -> ObsStats:
    return ObsStats(jnp.zeros(obs_shape), jnp.ones(obs_shape), jnp.asarray(1e-4))


def obs_stats_update(stats: ObsStats, obs: jax.Array) -> ObsStats:
    """Merge a batch obs [N, *obs_shape] into the running moments (Chan et al.'s parallel update)."""
    n = obs.shape[0]
    mean, var = obs.mean(0), obs.var(0)
    total = stats.count + n
    delta = mean - stats.mean
    new_mean = stats.mean + delta * n / total
    m2 = stats.var * stats.count + var * n + delta**2 * stats.count * n / total
    return ObsStats(new_mean, m2 / total, total)


def normalize(stats: ObsStats, obs: jax.Array, enabled: bool) -> jax.Array:
    if not enabled:
        return obs
    return jnp.clip((obs - stats.mean) / jnp.sqrt(stats.var + 1e-8), -10.0, 10.0)


# --- the environments' side of the state, and rollouts ------------------------------------------

class Runner(NamedTuple):
    obs: jax.Array      # [E, *obs_shape] the observation each environment shows now
    env_state: Any      # leaves [E, ...]
    episodes: Episodes
    obs_stats: ObsStats


def runner_init(env, env_params, num_envs: int, key: jax.Array) -> Runner:
    """`num_envs` environments reset from independent keys."""
    obs, env_state = jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(key, num_envs),
                                                            env_params)
    return Runner(obs, env_state, episodes_init(num_envs), obs_stats_init(obs.shape[1:]))


def env_step(env, env_params, runner: Runner, action: jax.Array, key: jax.Array,
             alive: jax.Array | None = None) -> tuple[Runner, dict]:
    """Step every environment once; returns the new runner and the transition
    {obs, action, reward, terminated, truncated, done, next_obs}, each [E, ...]."""
    keys = jax.random.split(key, runner.obs.shape[0])
    obs, env_state, reward, terminated, truncated, info = jax.vmap(
        env.step, in_axes=(0, 0, 0, None))(keys, runner.env_state, action, env_params)
    done = terminated | truncated
    transition = {"obs": runner.obs, "action": action, "reward": reward.astype(jnp.float32),
                  "terminated": terminated, "truncated": truncated, "done": done,
                  "next_obs": info["final_observation"]}
    episodes = episodes_update(runner.episodes, reward, done, alive)
    return Runner(obs, env_state, episodes, runner.obs_stats), transition


def rollout(env, env_params, act: Callable, runner: Runner, key: jax.Array,
            num_steps: int) -> tuple[Runner, dict]:
    """`num_steps` steps of every environment: act(obs [E, ...], key) -> (action [E, ...], extras
    {name: [E, ...]}). Returns the runner and the trajectory: each transition field [T, E, ...]."""
    def one(runner, key):
        k_act, k_env = jax.random.split(key)
        action, extras = act(runner.obs, k_act)
        runner, transition = env_step(env, env_params, runner, action, k_env)
        return runner, {**transition, **extras}
    return jax.lax.scan(one, runner, jax.random.split(key, num_steps))


def with_obs_stats(runner: Runner, traj: dict, enabled: bool) -> Runner:
    """The runner with its observation statistics updated by a trajectory's observations."""
    if not enabled:
        return runner
    obs = traj["obs"].reshape((-1, *traj["obs"].shape[2:]))
    return runner._replace(obs_stats=obs_stats_update(runner.obs_stats, obs))


def episode_metrics(runner: Runner) -> dict:
    """The per-step RL metrics: mean return and length of the last 100 episodes, episodes so far."""
    ret, length = recent_mean(runner.episodes)
    return {"return": ret, "episode_length": length.astype(jnp.float32),
            "episodes": runner.episodes.count.astype(jnp.float32)}


def collect(apply: Callable, params, runner: Runner, key: jax.Array, spec: dict, cfg: dict,
            lam: float) -> tuple[Runner, dict]:
    """An actor-critic's rollout of `rl.num_steps` steps and its GAE(λ) targets.

    apply(params, obs [B, ...]) -> (pi, value [B]). Returns the runner (observation statistics
    updated after the rollout) and the batch {obs (normalised with the statistics the rollout
    used), action, logp, value, advantage, target}, each [T, E, ...]."""
    env, env_params = environment(spec)
    norm = cfg["normalize_observations"]
    stats = runner.obs_stats  # frozen within the rollout, so the stored log-probs stay exact

    def act(obs, k):
        pi, value = apply(params, normalize(stats, obs, norm))
        action = sample_action(pi, k, spec["discrete"])
        # the environment gets the action clipped to its bounds; the update needs the sample
        return clip_action(action, spec), {"action": action, "logp": log_prob(pi, action, spec["discrete"]),
                                           "value": value}
    runner, traj = rollout(env, env_params, act, runner, key, cfg["num_steps"])
    return with_obs_stats(runner, traj, norm), targets(apply, params, stats, traj, cfg, lam)


def targets(apply: Callable, params, stats: ObsStats, traj: dict, cfg: dict, lam: float) -> dict:
    """An actor-critic's training batch from a trajectory {obs, action, logp, value, reward,
    terminated, done, next_obs} ([T, E, ...], raw observations): {obs (normalised with `stats`,
    those the rollout acted on), action, logp, value, advantage, target}, each [T, E, ...]."""
    norm = cfg["normalize_observations"]
    t, e = traj["reward"].shape
    flat = traj["next_obs"].reshape((t * e, *traj["next_obs"].shape[2:]))
    _, next_value = apply(params, normalize(stats, flat, norm))
    adv, target = gae(traj["reward"], traj["value"], next_value.reshape(t, e), traj["terminated"],
                      traj["done"], cfg["gamma"], lam)
    return {"obs": normalize(stats, traj["obs"], norm), "action": traj["action"],
            "logp": traj["logp"], "value": traj["value"], "advantage": adv, "target": target}


# --- targets --------------------------------------------------------------------------------------

def gae(reward, value, next_value, terminated, done, gamma: float, lam: float):
    """Generalised advantage estimation (Schulman et al. 2016) over a trajectory, all [T, E].

    next_value: V of the state each step reached (of the final observation when truncated), so a
    truncated episode is bootstrapped and a terminated one is not; `done` cuts the λ-sum between
    episodes. Returns (advantages, returns = advantages + value), both [T, E]."""
    delta = reward + gamma * (1.0 - terminated) * next_value - value

    def back(next_adv, x):
        d, dn = x
        adv = d + gamma * lam * (1.0 - dn) * next_adv
        return adv, adv
    _, adv = jax.lax.scan(back, jnp.zeros_like(delta[0]),
                          (delta, done.astype(delta.dtype)), reverse=True)
    return adv, adv + value


def discounted_returns(reward, next_value, terminated, done, gamma: float):
    """Monte-Carlo returns G_t = r_t + γ G_{t+1} within episodes, all [T, E]. Where the sum is cut
    without a natural end (a truncation, or the trajectory's last step) G bootstraps from
    next_value; at a termination it stops."""
    def back(g_next, x):
        r, v, term, dn = x
        g = r + gamma * jnp.where(dn, (1.0 - term) * v, g_next)
        return g, g
    _, g = jax.lax.scan(back, next_value[-1],
                        (reward, next_value, terminated.astype(reward.dtype), done), reverse=True)
    return g


# --- action distributions: categorical (logits) or diagonal Gaussian (mean, log_std) ------------

def sample_action(pi, key, discrete: bool):
    if discrete:
        return jax.random.categorical(key, pi)
    mean, log_std = pi
    return mean + jnp.exp(log_std) * jax.random.normal(key, mean.shape)


def log_prob(pi, action, discrete: bool):
    if discrete:
        logp = jax.nn.log_softmax(pi)
        return jnp.take_along_axis(logp, action[..., None].astype(jnp.int32), -1)[..., 0]
    mean, log_std = pi
    z = (action - mean) / jnp.exp(log_std)
    return jnp.sum(-0.5 * z**2 - log_std - 0.5 * jnp.log(2 * jnp.pi), -1)


def entropy(pi, discrete: bool):
    if discrete:
        logp = jax.nn.log_softmax(pi)
        return -jnp.sum(jnp.exp(logp) * logp, -1)
    mean, log_std = pi
    return jnp.sum(log_std + 0.5 * jnp.log(2 * jnp.pi * jnp.e), -1) * jnp.ones(mean.shape[:-1])


def greedy_action(pi, discrete: bool):
    return jnp.argmax(pi, -1) if discrete else pi[0]


def clip_action(action, spec: dict):
    """Continuous actions clipped to the action space's bounds before the environment sees them
    (the policy's own log-probability is of the unclipped sample)."""
    if spec["discrete"]:
        return action
    return jnp.clip(action, spec["action_low"], spec["action_high"])


# --- evaluation -----------------------------------------------------------------------------------

def greedy_returns(env, env_params, act: Callable, episode_ids: jax.Array, eval_seed: int,
                   max_steps: int) -> jax.Array:
    """Return of one greedy episode per id [n] (act(obs [B, ...]) -> actions [B, ...]), each from
    the reset drawn from fold_in(key(eval_seed), id): the same episodes for every seed and run."""
    def one(episode):
        key = jax.random.fold_in(jax.random.key(eval_seed), episode)
        obs, state = env.reset(key, env_params)

        def body(carry, k):
            obs, state, ret, alive = carry
            action = act(obs[None])[0]
            obs, state, reward, terminated, truncated, _ = env.step(k, state, action, env_params)
            ret = ret + reward * alive
            return (obs, state, ret, alive & ~(terminated | truncated)), None
        carry = (obs, state, jnp.zeros(()), jnp.ones((), bool))
        (_, _, ret, _), _ = jax.lax.scan(body, carry, jax.random.split(key, max_steps))
        return ret
    return jax.vmap(one)(episode_ids)


def greedy_episode(env, env_params, act: Callable, key: jax.Array, max_steps: int) -> dict:
    """One greedy episode for pictures: {'obs': [T+1, ...], 'reward': [T], 'length': int} (numpy)."""
    obs, state = env.reset(key, env_params)

    def body(carry, k):
        obs, state, alive = carry
        action = act(obs[None])[0]
        nxt, state, reward, terminated, truncated, info = env.step(k, state, action, env_params)
        return (nxt, state, alive & ~(terminated | truncated)), (info["final_observation"],
                                                                  reward, alive)
    carry = (obs, state, jnp.ones((), bool))
    _, (seen, reward, alive) = jax.jit(lambda c, ks: jax.lax.scan(body, c, ks))(
        carry, jax.random.split(key, max_steps))
    n = int(np.sum(np.asarray(alive)))
    return {"obs": np.concatenate([np.asarray(obs)[None], np.asarray(seen)[:n]]),
            "reward": np.asarray(reward)[:n], "length": n}


def evaluate_metrics(env, env_params, act: Callable, runner: Runner, split: dict, spec: dict) -> dict:
    """What an RL evaluation reports: final_return (the last 100 training episodes), and the greedy
    policy's mean return over the split's fixed episodes."""
    ret, length = recent_mean(runner.episodes)
    greedy = greedy_returns(env, env_params, act, split["episode"], spec["eval_seed"],
                            spec["max_steps"])
    return {"final_return": ret, "final_episode_length": length,
            "episodes": runner.episodes.count.astype(jnp.float32),
            "greedy_return": greedy.mean(), "greedy_return_min": greedy.min()}


def actor_critic_greedy(apply: Callable, spec: dict, cfg: dict) -> Callable:
    """act(state) -> the greedy policy obs [B, ...] -> actions [B, ...] of an actor-critic state
    (fields `params`, `runner`): the most probable action, or the Gaussian's mean."""
    def act(state):
        def policy(obs):
            pi, _ = apply(state.params, normalize(state.runner.obs_stats, obs,
                                                  cfg["normalize_observations"]))
            return clip_action(greedy_action(pi, spec["discrete"]), spec)
        return policy
    return act


def evaluator(act: Callable, spec: dict) -> Callable:
    """evaluate(state, split, key) -> evaluate_metrics for a state with a `runner`; act as above.
    The key is unused: the evaluation episodes are fixed by data.eval_seed."""
    env, env_params = environment(spec)

    def evaluate(state, split: dict, key: jax.Array) -> dict:
        return evaluate_metrics(env, env_params, act(state), state.runner, split, spec)
    return evaluate


# what `dlcore run` prints for an RL run: the last 100 training episodes, and the greedy policy
HEADLINE = ("test_final_return", "test_greedy_return")


def pictures(act: Callable, spec: dict) -> Callable:
    """An RL algorithm's pictures(snapshot) (dlcore.core.Snapshot): episode.png (frames of one
    greedy episode of the trained policy, from the evaluation's first reset) and trajectory.png
    (its observations and return against time)."""
    def draw(s):
        from dlcore import plots
        env, env_params = environment(spec)
        key = jax.random.fold_in(jax.random.key(spec["eval_seed"]), 0)
        ep = greedy_episode(env, env_params, act(s.state), key, spec["max_steps"])
        return plots.episode_pictures(spec["env"], ep, s.out_dir, s.title)
    return draw


# --- the actor-critic shared by PPO, A2C and REINFORCE -------------------------------------------

class ActorCriticState(NamedTuple):
    step: jax.Array   # i32[] iterations done
    params: Any
    opt_state: Any
    runner: Runner


def network_settings(model_cfg: dict) -> tuple[tuple[int, ...], str]:
    """(hidden widths, activation) of an RL algorithm's `model` section, checked."""
    from dlcore.models.mlp import ACTIVATIONS, positive_ints
    from dlcore.config import one_of
    return (positive_ints(model_cfg, "hidden"),
            one_of(model_cfg["activation"], "model.activation", ACTIVATIONS))


def actor_critic(model_cfg: dict, spec: dict):
    """The actor-critic network of a `model` section {'hidden', 'activation'} for the env in spec."""
    from dlcore.models.policy import ActorCritic
    hidden, activation = network_settings(model_cfg)
    return ActorCritic(num_actions=spec["num_outputs"], discrete=spec["discrete"], hidden=hidden,
                       activation=activation)


def actor_critic_init(net, tx, spec: dict) -> Callable:
    """init(key) -> ActorCriticState of the network and its environments."""
    env, env_params = environment(spec)

    def init(key: jax.Array) -> ActorCriticState:
        k_net, k_env = jax.random.split(key)
        params = net.init(k_net, jnp.zeros((1, *spec["input_shape"])))
        runner = runner_init(env, env_params, spec["num_envs"], k_env)
        return ActorCriticState(jnp.zeros((), jnp.int32), params, tx.init(params), runner)
    return init


def env_spec(name: str, obs_space, action_space, num_envs: int) -> dict:
    """The spec RL algorithms read, from an environment's spaces (dlcore.envs' or Gymnasium's:
    a discrete space has `n`, a box `shape`, `low`, `high`)."""
    discrete = hasattr(action_space, "n")
    return {"env": name, "task": "control", "input_shape": tuple(obs_space.shape),
            "discrete": discrete,
            "num_outputs": int(action_space.n) if discrete else int(np.prod(action_space.shape)),
            "action_shape": () if discrete else tuple(action_space.shape),
            "action_low": None if discrete else np.asarray(action_space.low, np.float32),
            "action_high": None if discrete else np.asarray(action_space.high, np.float32),
            "num_envs": num_envs}


def model_defaults(hidden=(64, 64), activation: str = "tanh") -> dict:
    """The `model` section of an RL algorithm's networks."""
    return {"hidden": tuple(hidden), "activation": activation}


# --- the CPU deadlock guard -----------------------------------------------------------------------

GUARD_FLAG = "--xla_cpu_enable_concurrency_optimized_scheduler=false"


def guard() -> bool:
    """Turn XLA's concurrency-optimised CPU scheduler off for this process, if JAX's backend has
    not started yet; returns whether the process runs with it off.

    jax 0.10.2's CPU runtime deadlocks (every thread idle, forever) executing some vmapped
    programs of nested scans like PPO's: measured here about once in 10-60 executions of a
    4-seed x 32-environment PPO, with or without the option passed per program
    (`jax.jit(..., compiler_options=...)` did not prevent it); with this flag in XLA_FLAGS, 123
    executions and no hang (README: "A deadlock guard"). XLA reads XLA_FLAGS when the backend
    starts, so this works only before the first computation: dlcore.data.env calls it before it
    makes the environments; scripts calling `make_train` call it first. The loop's deadline on
    device waits ends a run that hangs anyway (dlcore.watch)."""
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_cpu_enable_concurrency_optimized_scheduler" in flags:
        return "xla_cpu_enable_concurrency_optimized_scheduler=false" in flags
    from jax._src import xla_bridge
    if xla_bridge.backends_are_initialized():
        return False
    os.environ["XLA_FLAGS"] = f"{flags} {GUARD_FLAG}".strip()
    return True


# --- the PureJaxRL shape ----------------------------------------------------------------------------

def make_train(algorithm, steps: int, log_every: int) -> Callable:
    """train(key) -> (state, curve): `steps` steps of an RL algorithm (dlcore.core.Algorithm whose
    step takes no batch) as one jittable function of a key.

    The same key streams as the host loop (dlcore.core.split_keys), so train(key(seed)) ends in the
    state `dlcore run` reaches. curve: each step metric averaged over every `log_every` steps,
    [steps // log_every] per metric, so its size is fixed by the arguments, not by a step count.
    `jax.jit(jax.vmap(train))(keys)` trains one run per key. On CPU call `guard()` before JAX
    computes anything."""
    from dlcore.core import split_keys
    check(steps % log_every == 0, "loop.log_every", f"must divide loop.steps ({steps}); got {log_every}")

    def train(key: jax.Array):
        keys = split_keys(key)
        state = algorithm.init(keys["init"])

        def update(state, t):
            return algorithm.step(state, None, jax.random.fold_in(keys["step"], t))

        if log_every == 1:  # a nested scan of one step is its own while loop: slower on CPU
            return jax.lax.scan(update, state, jnp.arange(steps))

        def chunk(state, c):
            state, metrics = jax.lax.scan(update, state, c * log_every + jnp.arange(log_every))
            return state, jax.tree.map(lambda m: m.mean(0), metrics)
        return jax.lax.scan(chunk, state, jnp.arange(steps // log_every))
    return train
