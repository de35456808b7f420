"""Largest difference between dlcore.envs and Gymnasium over 1000 random-action steps per
environment: (a) each step from the same state, (b) free-running, synced only at episode starts.

    python benchmarks/env_parity.py
"""
import warnings

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np

import dlcore.envs as E
warnings.filterwarnings("ignore")


def to_gym_state(name, s):
    if name == "CartPole-v1": v = [s.x, s.x_dot, s.theta, s.theta_dot]
    elif name == "Acrobot-v1": v = [s.theta1, s.theta2, s.dtheta1, s.dtheta2]
    elif name == "MountainCar-v0": v = [s.position, s.velocity]
    else: v = [s.theta, s.theta_dot]
    return np.array([float(x) for x in v], np.float64)


N = 1000
for name in E.NAMES:
    env, params = E.make(name)
    step, reset = jax.jit(env.step), jax.jit(env.reset)
    g = gym.make(name)
    rng = np.random.default_rng(0)
    for mode in ("per-step", "free"):
        key = jax.random.key(1)
        obs, s = reset(key, params); g.reset(seed=0); g.unwrapped.state = to_gym_state(name, s)
        dmax = rmax = 0.0; flag_mismatch = 0; episodes = 0
        for t in range(N):
            if env.discrete: a = int(rng.integers(env.num_actions)); ga = a
            else: a = rng.uniform(-2.5, 2.5, (1,)).astype(np.float32); ga = a
            if mode == "per-step": g.unwrapped.state = to_gym_state(name, s)
            key, k = jax.random.split(key)
            obs, s2, r, term, trunc, info = step(k, s, jnp.asarray(a), params)
            go, gr, gterm, gtrunc, _ = g.step(ga)
            dmax = max(dmax, float(np.abs(np.asarray(info["final_observation"]) - go).max()))
            rmax = max(rmax, abs(float(r) - gr))
            flag_mismatch += (bool(term) != gterm) + (bool(trunc) != gtrunc)
            if bool(term) or bool(trunc) or gterm or gtrunc:
                episodes += 1; g.reset(); g.unwrapped.state = to_gym_state(name, s2)
            s = s2
        print(f"{name:15s} {mode:9s} max|obs diff|={dmax:.2e} max|reward diff|={rmax:.2e} flag mismatches={flag_mismatch} episodes={episodes}")
