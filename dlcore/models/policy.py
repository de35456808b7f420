"""Networks for deep RL (Flax Linen): an actor-critic and a Q-network.

Orthogonal initialisation as in the PPO implementation studies (Engstrom et al. 2020; Huang et al.
2022, "The 37 implementation details of PPO") and CleanRL: hidden layers gain sqrt(2), the policy
head 0.01 (a near-uniform first policy), the value head 1. Models know nothing of training.
"""
from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from dlcore.models.mlp import ACTIVATIONS


def _tower(x, hidden: Sequence[int], activation: str, name: str):
    act = ACTIVATIONS[activation]
    for i, width in enumerate(hidden):
        x = act(nn.Dense(width, kernel_init=nn.initializers.orthogonal(np.sqrt(2)),
                         name=f"{name}_{i}")(x))
    return x


class ActorCritic(nn.Module):
    """obs [B, ...] -> (pi, value [B]); separate actor and critic towers.

    pi: logits [B, num_actions] (discrete) or (mean [B, A], log_std [B, A]) (continuous, a
    state-independent learned log standard deviation)."""
    num_actions: int
    discrete: bool = True
    hidden: Sequence[int] = (64, 64)
    activation: str = "tanh"

    @nn.compact
    def __call__(self, obs):
        x = obs.reshape((obs.shape[0], -1))
        a = _tower(x, self.hidden, self.activation, "actor")
        pi = nn.Dense(self.num_actions, kernel_init=nn.initializers.orthogonal(0.01),
                      name="actor_head")(a)
        c = _tower(x, self.hidden, self.activation, "critic")
        value = nn.Dense(1, kernel_init=nn.initializers.orthogonal(1.0), name="critic_head")(c)[:, 0]
        if not self.discrete:
            log_std = self.param("log_std", nn.initializers.zeros, (self.num_actions,))
            pi = (pi, jnp.broadcast_to(log_std, pi.shape))
        return pi, value


class QNetwork(nn.Module):
    """obs [B, ...] -> Q-values [B, num_actions] (CleanRL's DQN: 120-84 ReLU, default init)."""
    num_actions: int
    hidden: Sequence[int] = (120, 84)
    activation: str = "relu"

    @nn.compact
    def __call__(self, obs):
        x = obs.reshape((obs.shape[0], -1))
        for i, width in enumerate(self.hidden):
            x = ACTIVATIONS[self.activation](nn.Dense(width, name=f"dense_{i}")(x))
        return nn.Dense(self.num_actions, name="head")(x)
