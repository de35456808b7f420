"""The `logreg` family: logistic (softmax) regression, one linear layer [batch, ...] -> [batch,
num_outputs] (linear regression for a regression task)."""
from __future__ import annotations

from dlcore.config import one_of
from dlcore.models.mlp import KERNEL_INITS, MLP, logistic_regression


def defaults() -> dict:
    return {"init": "lecun_normal"}


def build(cfg: dict, input_shape: tuple, num_outputs: int) -> MLP:
    return logistic_regression(num_outputs, one_of(cfg["init"], "model.init", KERNEL_INITS))
