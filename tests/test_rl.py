"""Deep RL (dlcore.rl and the ppo/a2c/reinforce/dqn algorithms): targets against hand-computed
values, the episode ring, truncation, seeds under vmap, make_train = the host loop, exact resume,
and bad input refused before anything compiles. Configs are tiny: compile time dominates."""
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

from dlcore import config as config_lib, envs, experiment, rl
from dlcore.cli import main

pytestmark = pytest.mark.timeout(180)  # a hung XLA program fails the test instead of CI

GAMMA = 0.9


def tiny(name="cartpole/ppo", **over):
    base = {"data.num_envs": 2, "rl.num_steps": 16, "model.hidden": "8,8", "loop.plots": "false",
            "loop.steps": 4, "loop.log_every": 2, "loop.eval_every": 4, "loop.checkpoint_every": 2,
            "loop.steps_per_call": 2, "loop.keep_checkpoints": 5}
    if name.endswith("ppo"):
        base.update({"ppo.num_minibatches": 2, "ppo.update_epochs": 2})
    if name.endswith("dqn"):  # DQN steps dqn.train_frequency environment steps, not rl.num_steps
        del base["rl.num_steps"]
    base.update(over)
    return experiment.load(name, quick=True, overrides=[f"{k}={v}" for k, v in base.items()])


def make_train(cfg):
    """train(key) of a config: its values built, then the PureJaxRL-shaped function of them."""
    algorithm, _ = experiment.build(cfg)
    return rl.make_train(algorithm, cfg["loop"]["steps"], cfg["loop"]["log_every"])


# --- targets --------------------------------------------------------------------------------------

def test_returns_bootstrap_on_truncation_not_on_termination():
    # one environment, 5 steps: terminated at t=1, truncated at t=3, cut by the window at t=4
    r = jnp.ones((5, 1))
    nv = jnp.array([[7.0], [100.0], [7.0], [10.0], [5.0]])
    term = jnp.array([[0], [1], [0], [0], [0]], bool)
    done = jnp.array([[0], [1], [0], [1], [0]], bool)
    g = np.asarray(rl.discounted_returns(r, nv, term, done, GAMMA))[:, 0]
    g4 = 1 + GAMMA * 5          # the window's end: bootstrap
    g3 = 1 + GAMMA * 10         # truncated: bootstrap from the final observation's value
    g2 = 1 + GAMMA * g3
    g1 = 1.0                    # terminated: nothing after it
    g0 = 1 + GAMMA * g1
    np.testing.assert_allclose(g, [g0, g1, g2, g3, g4], rtol=1e-6)


def test_gae_is_the_discounted_sum_of_td_errors():
    rng = np.random.default_rng(0)
    t_len, e = 7, 3
    reward, value, nv = (rng.normal(size=(t_len, e)).astype(np.float32) for _ in range(3))
    term = rng.random((t_len, e)) < 0.15
    done = term | (rng.random((t_len, e)) < 0.15)
    lam = 0.8
    adv, target = rl.gae(reward, value, nv, term, done, GAMMA, lam)
    delta = reward + GAMMA * (1 - term) * nv - value
    ref = np.zeros((t_len, e))
    for j in range(e):  # A_t = sum_l (γλ)^l δ_{t+l}, up to and including the episode's last step
        for t in range(t_len):
            for l_, s in enumerate(range(t, t_len)):
                ref[t, j] += (GAMMA * lam) ** l_ * delta[s, j]
                if done[s, j]:
                    break
    np.testing.assert_allclose(adv, ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(target, ref + value, rtol=1e-5, atol=1e-6)
    # λ = 1 with a zero value function is the Monte-Carlo return... except that GAE bootstraps
    # from next_value at every step while the return chains them: equal where every step ends
    ones = np.ones((t_len, e), bool)
    _, mc = rl.gae(reward, 0 * value, nv, term, ones, GAMMA, 1.0)
    np.testing.assert_allclose(mc, rl.discounted_returns(reward, nv, term, ones, GAMMA),
                               rtol=1e-5, atol=1e-6)


def test_episode_ring_keeps_the_last_100_finished_episodes():
    rng = np.random.default_rng(1)
    e, steps = 3, 400
    rewards = rng.normal(size=(steps, e)).astype(np.float32)
    dones = rng.random((steps, e)) < 0.1
    ep = rl.episodes_init(e)
    update = jax.jit(rl.episodes_update)
    running, finished = np.zeros(e), []
    for t in range(steps):
        ep = update(ep, rewards[t], dones[t])
        running += rewards[t]
        for j in range(e):  # environment order within a step, as the ring writes them
            if dones[t, j]:
                finished.append(running[j])
                running[j] = 0
    ret, _ = rl.recent_mean(ep)
    assert int(ep.count) == len(finished) > rl.WINDOW
    np.testing.assert_allclose(ret, np.mean(finished[-rl.WINDOW:]), rtol=1e-5)
    np.testing.assert_allclose(ep.ret, running, rtol=1e-5, atol=1e-5)
    assert ep.recent.shape == (rl.WINDOW,)  # fixed size however long training runs


def test_observation_statistics_merge_batches():
    rng = np.random.default_rng(2)
    a, b = rng.normal(3, 2, (50, 4)), rng.normal(-1, 0.5, (30, 4))
    s = rl.obs_stats_update(rl.obs_stats_update(rl.obs_stats_init((4,)), a), b)
    both = np.concatenate([a, b])
    np.testing.assert_allclose(s.mean, both.mean(0), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(s.var, both.var(0), rtol=1e-3)
    z = rl.normalize(s, jnp.asarray(both, jnp.float32), True)
    np.testing.assert_allclose(np.mean(z, 0), 0, atol=1e-3)


def test_action_distributions():
    logits = jnp.array([[0.0, 1.0, -1.0]])
    logp = rl.log_prob(logits, jnp.array([1]), True)
    np.testing.assert_allclose(logp, jax.nn.log_softmax(logits)[0, 1], rtol=1e-6)
    p = jax.nn.softmax(logits)
    np.testing.assert_allclose(rl.entropy(logits, True), -(p * jnp.log(p)).sum(), rtol=1e-6)
    mean, log_std = jnp.array([[0.5, -1.0]]), jnp.array([[0.0, np.log(2.0)]])
    a = jnp.array([[1.0, 0.0]])
    ref = sum(-0.5 * ((a[0, i] - mean[0, i]) / s) ** 2 - np.log(s) - 0.5 * np.log(2 * np.pi)
              for i, s in enumerate([1.0, 2.0]))
    np.testing.assert_allclose(rl.log_prob((mean, log_std), a, False), [ref], rtol=1e-5)
    np.testing.assert_allclose(rl.entropy((mean, log_std), False),
                               [np.log(1.0 * 2.0) + np.log(2 * np.pi * np.e)], rtol=1e-5)
    x = jax.vmap(lambda k: rl.sample_action((mean, log_std), k, False))(
        jax.random.split(jax.random.key(0), 4000))[:, 0]
    np.testing.assert_allclose(x.mean(0), mean[0], atol=0.1)
    np.testing.assert_allclose(x.std(0), [1.0, 2.0], rtol=0.1)


# --- rollouts -------------------------------------------------------------------------------------

def test_rollout_keeps_the_final_observation_at_truncation():
    env, params = envs.make("CartPole-v1", max_steps_in_episode=5)
    runner = rl.runner_init(env, params, 3, jax.random.key(0))
    act = lambda obs, k: (jnp.arange(obs.shape[0]) % 2, {})  # alternate pushes: nobody falls
    runner, traj = jax.jit(lambda r, k: rl.rollout(env, params, act, r, k, 7))(
        runner, jax.random.key(1))
    assert traj["truncated"][4].all() and not traj["terminated"].any()
    assert not traj["done"][:4].any()
    # within an episode the next observation is the one the following step starts from...
    np.testing.assert_array_equal(traj["next_obs"][:4], traj["obs"][1:5])
    # ...at the cut it is the state reached, not the fresh reset the environment shows next
    assert np.abs(traj["next_obs"][4] - traj["obs"][5]).max() > 1e-3
    assert int(runner.episodes.count) == 3
    np.testing.assert_allclose(rl.recent_mean(runner.episodes)[0], 5.0)


def test_environments_and_seeds_differ_under_vmap():
    cfg = tiny()
    train = jax.jit(jax.vmap(make_train(cfg)))
    states, curve = train(jax.random.split(jax.random.key(0), 2))
    obs = np.asarray(states.runner.obs)  # [seeds, envs, 4]
    assert np.abs(obs[0] - obs[1]).min() > 0           # seeds differ
    assert np.abs(obs[:, 0] - obs[:, 1]).min() > 0     # environments within a seed differ
    w = jax.tree.leaves(states.params)[0]
    assert np.abs(w[0] - w[1]).max() > 0
    assert curve["return"].shape == (2, 2)  # [seeds, steps / log_every]: bounded by the config


# --- the algorithms through make_train and the host loop ------------------------------------------

def test_resumed_host_loop_ends_where_make_train_ends(tmp_path, capsys):
    """train(key) = the host loop's run of the same config; interrupted after 2 of 4 iterations
    and resumed, the loop still ends there."""
    cfg = tiny(**{"optim.schedule": "constant"})  # an annealed rate depends on loop.steps
    state, curve = jax.jit(make_train(cfg))(jax.random.key(cfg["seed"]))
    experiment.run(experiment.apply_overrides(cfg, ["loop.steps=2"]), tmp_path, progress=False)
    summary = experiment.run(cfg, tmp_path, progress=False)
    assert "resumed from step 2" in capsys.readouterr().out
    with ocp.CheckpointManager((tmp_path / "checkpoints").resolve()) as m:
        saved = m.restore(m.latest_step())["state"]
    assert int(saved["step"]) == 4
    for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(saved["params"])):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
    assert np.isfinite(curve["loss"]).all()
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [2, 4]
    m = summary["metrics"]
    assert m["test_final_return"] == pytest.approx(
        float(rl.recent_mean(state.runner.episodes)[0]), rel=1e-5)
    assert {"test_final_return", "test_greedy_return"} <= set(m)
    assert "test_final_return" in summary["metrics_std"]
    assert "final_return" not in m and "greedy_return" not in m  # no aliases
    assert summary["headline"] == ["test_final_return", "test_greedy_return"]
    assert m["test_greedy_return"] >= 8  # CartPole cannot end sooner
    # `dlcore report` draws the trained policy's greedy episode (algorithm.pictures)
    capsys.readouterr()
    assert main(["report", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    for name in ("episode.png", "trajectory.png"):
        assert (tmp_path / "plots" / name).stat().st_size > 1000 and name in printed


def test_dqn_buffer_target_and_epsilon():
    from dlcore.algorithms import dqn
    cfg = tiny("cartpole/dqn", **{"dqn.learning_starts": 30, "dqn.buffer_size": 50,
                                  "dqn.train_frequency": 5, "dqn.target_network_frequency": 20,
                                  "loop.steps": 12, "loop.log_every": 1})
    state, curve = jax.jit(make_train(cfg))(jax.random.key(0))
    per_step = 5 * 2
    assert int(state.buffer.size) == 50 and int(state.buffer.position) == (12 * per_step) % 50
    # the target network was last synced at 120 environment steps (a multiple of 20): equal
    for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(state.target_params)):
        np.testing.assert_array_equal(a, b)
    # no update before learning_starts: the loss is computed, the parameters stay
    d = cfg["dqn"]
    total = 12 * per_step
    np.testing.assert_allclose(curve["epsilon"],
                               [dqn.epsilon(d, t * per_step, total) for t in range(12)], rtol=1e-6)
    assert float(dqn.epsilon(d, total, total)) == pytest.approx(d["end_e"])
    assert float(dqn.epsilon(d, 0, total)) == pytest.approx(d["start_e"])


def test_ppo_learns_cartpole():
    """60 iterations (30,720 steps) of CleanRL's PPO lift the return well above a random policy's
    ~22; the full run reaches 500 (README)."""
    cfg = experiment.load("cartpole/ppo", overrides=["loop.steps=60", "loop.log_every=10"])
    _, curve = jax.jit(make_train(cfg))(jax.random.key(0))
    assert curve["return"][-1] > 100 and curve["return"][-1] > 3 * curve["return"][0]


# --- bad input --------------------------------------------------------------------------------------

@pytest.mark.parametrize("args, message", [
    (["cartpole/ppo", "--set", "data.env=CartPole-v9"], "unknown environment 'CartPole-v9'"),
    (["cartpole/dqn", "--set", "data.env=Pendulum-v1"], "dqn needs discrete actions"),
    (["cartpole/ppo", "--set", "data.name=digits"], "ppo learns from an environment"),
    (["cartpole/ppo", "--set", "ppo.num_minibatches=1024"], "minibatch size of zero"),
    (["cartpole/ppo", "--set", "data.num_envs=0"], "'data.num_envs': must be a positive integer"),
    (["cartpole/dqn", "--set", "dqn.buffer_size=15"], "'dqn.buffer_size': must be a multiple"),
])
def test_bad_rl_input_exits_2_before_compiling(args, message, tmp_path, capsys):
    assert main(["run", *args, "--quick", "--workdir", str(tmp_path / "run"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "run" / "checkpoints").exists()


# --- Gymnasium: the same PPO with a host loop ---------------------------------------------------------

def test_gymnasium_host_loop_trains_ppo():
    pytest.importorskip("gymnasium")
    from dlcore import gym
    cfg = tiny(**{"loop.steps": 3, "rl.num_steps": 64})
    s = gym.train(cfg, "CartPole-v1", seed=0)
    assert s["env_steps"] == 3 * 2 * 64 and len(s["returns"]) == 3
    assert 8 <= s["final_return"] <= 500 and s["env_steps_per_second"] > 0
    with pytest.raises(config_lib.ConfigError, match="unknown Gymnasium environment"):
        gym.train(cfg, "CartPole-v9")
    with pytest.raises(config_lib.ConfigError, match="trains ppo"):
        gym.train(tiny("cartpole/a2c"), "CartPole-v1")


def test_the_deadlock_guard_is_on_before_jax_starts_and_reported_after(tmp_path, monkeypatch,
                                                                        capsys):
    """The RL deadlock guard is a process-wide XLA flag (README: 'A deadlock guard'): guard()
    sets it while JAX's backend has not started (conftest does so for the tests, a fresh
    `dlcore run` when it loads an environment), and reports False once it is too late;
    loading an environment warns then."""
    code = ("import os; os.environ.pop('XLA_FLAGS', None); from dlcore import rl, experiment; "
            "assert rl.guard(); print(os.environ['XLA_FLAGS'])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and rl.GUARD_FLAG in out.stdout
    assert rl.GUARD_FLAG in os.environ.get("XLA_FLAGS", "")  # this test process (conftest)
    assert rl.guard()
    monkeypatch.setenv("XLA_FLAGS", "")  # as if jax had started without it
    assert not rl.guard()
    with pytest.raises(config_lib.ConfigError):  # the warning comes first, then the bad value
        experiment.run(tiny(**{"data.num_envs": 0}), tmp_path, progress=False)
    assert "deadlock" in capsys.readouterr().err


def test_continuous_actions_and_observation_normalisation():
    """PPO's Gaussian policy on Pendulum (actions clipped to ±2 for the environment, the sample
    kept for the update), with running observation statistics."""
    cfg = tiny(**{"data.env": "Pendulum-v1", "rl.normalize_observations": "true"})
    state, curve = jax.jit(make_train(cfg))(jax.random.key(0))
    assert np.isfinite(curve["loss"]).all() and np.isfinite(curve["entropy"]).all()
    stats = state.runner.obs_stats
    assert float(stats.count) == pytest.approx(4 * 2 * 16, rel=1e-3)  # steps x envs x num_steps
    assert np.all(np.abs(np.asarray(stats.mean[:2])) <= 1.0)            # cos, sin of the angle
    assert "log_std" in state.params["params"]
