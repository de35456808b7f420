"""Data sets as dicts of numpy arrays, split into 'train', optional 'validation', and 'test'.

`load(cfg)` returns (splits, spec). Three kinds of data (spec['kind']):

* 'examples': splits = {'train': {'x': [n, ...], 'y': [n] or [n, d]}, ...}; a batch is examples.
* 'tasks': tasks drawn from a key (sinusoid regression); the test split is a fixed batch of tasks.
* 'classes': class-major arrays {'x': [C, M, ...], optional 'attributes': [C, A]} per split, the
  classes disjoint between splits; a batch is N-way K-shot episodes (dlcore.data.episodes).
* 'env': a JAX environment (dlcore.envs; `data.name` is its id, e.g. 'CartPole-v1'). An RL step
  collects its own experience, so the batch is None; the test split holds the ids of the fixed
  greedy-evaluation episodes ({'episode': [data.eval_episodes]}), the same for every seed.

spec = {'kind', 'input_shape', 'task' ('classification' | 'regression'), 'num_outputs'}.
`sampler(cfg, spec)` gives the jittable sample(split, step, key) -> batch the host loop calls, and
`eval_tasks(cfg, spec)` the fixed evaluation tasks of the task kinds.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from dlcore.config import ConfigError, check, one_of
from dlcore.data import files, mnist1d, sequences, sinusoid, sklearn_data
from dlcore.data.batching import batch_at

SOURCES = {
    "mnist1d": mnist1d.load,
    "digits": sklearn_data.digits,
    "diabetes": sklearn_data.diabetes,
    "adding": sequences.adding,
    "npz": files.npz,
    "mnist_idx": files.mnist_idx,
    "cifar10_binary": files.cifar10_binary,
}
TASK_SOURCES = ("sinusoid", "glyphs", "digits_classes")  # see _load_tasks


def is_env(cfg: dict) -> bool:
    """Whether the data section names an environment (an RL run)."""
    from dlcore import envs
    return cfg.get("name") in envs.NAMES or str(cfg.get("name")).startswith("gymnax:")


def load(cfg: dict) -> tuple[dict[str, dict[str, np.ndarray]], dict]:
    """Load, check and split the data named by `cfg['name']`."""
    from dlcore import envs
    if is_env(cfg):
        return _load_env(cfg)
    one_of(cfg["name"], "data.name", (*SOURCES, *TASK_SOURCES, *envs.NAMES))
    check(isinstance(cfg["batch_size"], int) and cfg["batch_size"] > 0, "data.batch_size",
          f"must be a positive integer; got {cfg['batch_size']}")
    if cfg["name"] in TASK_SOURCES:
        return _load_tasks(cfg)
    source = SOURCES[cfg["name"]]
    vf = cfg.get("validation_fraction", 0.0)
    check(0.0 <= vf < 1.0, "data.validation_fraction", f"must be in [0, 1); got {vf}")
    a = source(cfg)
    splits = {"train": {"x": a["x"], "y": a["y"]}, "test": {"x": a["x_test"], "y": a["y_test"]}}
    spec = check_arrays(splits, cfg["name"])
    if vf > 0:  # the last fraction of the training set, so the test set stays untouched
        n_val = max(1, int(round(len(a["x"]) * vf)))
        tr = splits["train"]
        splits["validation"] = {k: v[-n_val:] for k, v in tr.items()}
        splits["train"] = {k: v[:-n_val] for k, v in tr.items()}
    n = len(splits["train"]["x"])
    check(cfg["batch_size"] <= n, "data.batch_size",
          f"{cfg['batch_size']} is larger than the {n} training examples")
    return splits, {**spec, "kind": "examples"}


def _load_env(cfg: dict) -> tuple[dict, dict]:
    from dlcore import envs
    env, params = envs.make(cfg["name"])  # ConfigError for an unknown id, before anything compiles
    for key in ("num_envs", "eval_episodes"):
        check(isinstance(cfg.get(key), int) and cfg[key] > 0, f"data.{key}",
              f"must be a positive integer; got {cfg.get(key)}")
    spec = {**env_spec(cfg["name"], env.observation_space(params), env.action_space(params),
                       cfg["num_envs"]),
            "max_steps": int(params.max_steps_in_episode),
            "eval_seed": int(cfg.get("eval_seed", 1000))}
    splits = {"train": {}, "test": {"episode": np.arange(cfg["eval_episodes"], dtype=np.int32)}}
    return splits, spec


def env_spec(name: str, obs_space, action_space, num_envs: int) -> dict:
    """The spec RL algorithms read, from an environment's spaces (dlcore.envs' or Gymnasium's:
    a discrete space has `n`, a box `shape`, `low`, `high`)."""
    discrete = hasattr(action_space, "n")
    return {"kind": "env", "env": name, "task": "control", "input_shape": tuple(obs_space.shape),
            "discrete": discrete,
            "num_outputs": int(action_space.n) if discrete else int(np.prod(action_space.shape)),
            "action_shape": () if discrete else tuple(action_space.shape),
            "action_low": None if discrete else np.asarray(action_space.low, np.float32),
            "action_high": None if discrete else np.asarray(action_space.high, np.float32),
            "num_envs": num_envs}


def _load_tasks(cfg: dict) -> tuple[dict, dict]:
    if cfg["name"] == "sinusoid":
        return sinusoid.load(cfg)
    from dlcore.data import episodes, glyphs
    splits = glyphs.load(cfg) if cfg["name"] == "glyphs" else sklearn_data.digits_classes(cfg)
    # training episodes come from the training classes; evaluation episodes (data.test_n_way,
    # test_k_shot, test_q_query; 0 = as in training) from each other split
    episodes.check({"train": splits["train"]}, cfg["n_way"], cfg["k_shot"], cfg["q_query"])
    test_way = cfg.get("test_n_way") or cfg["n_way"]
    episodes.check({k: v for k, v in splits.items() if k != "train"}, test_way,
                   cfg.get("test_k_shot") or cfg["k_shot"], cfg.get("test_q_query") or cfg["q_query"],
                   prefix="test_")
    x = splits["train"]["x"]
    spec = {"kind": "classes", "task": "classification", "input_shape": tuple(x.shape[2:]),
            "num_outputs": cfg["n_way"], "test_n_way": test_way, "num_train_classes": len(x),
            "attribute_dim": splits["train"]["attributes"].shape[1]
            if "attributes" in splits["train"] else 0}
    return splits, spec


def sampler(cfg: dict, spec: dict):
    """The jittable sample(split, step, key) -> training batch at `step` (a function of the step
    and key alone, so a resumed run sees the batches the uninterrupted one saw)."""
    if spec["kind"] == "env":
        return lambda split, step, key: None  # the RL step collects its own experience
    if spec["kind"] == "examples":
        return lambda split, step, key: batch_at(split, step, cfg["batch_size"], cfg["shuffle"], key)
    if spec["kind"] == "tasks":
        return sinusoid.sampler(cfg)
    from dlcore.data import episodes

    def sample(split, step, key):
        batch = episodes.sample_batch(jax.random.fold_in(key, step), split["x"], cfg["batch_size"],
                                      cfg["n_way"], cfg["k_shot"], cfg["q_query"])
        return _with_attributes(batch, split)
    return sample


def eval_tasks(cfg: dict, spec: dict):
    """(n, chunk, tasks): the evaluation's `n` tasks come `chunk` at a time, tasks(split, i) -> the
    i-th chunk (a batch of tasks). The same tasks for every algorithm and seed (data.eval_seed)."""
    n, chunk = cfg["eval_tasks"], min(cfg["eval_chunk"], cfg["eval_tasks"])
    check(type(chunk) is int and chunk > 0, "data.eval_chunk", f"must be a positive integer; got {chunk}")
    if spec["kind"] == "tasks":  # the split holds the tasks: cut chunk i out of it
        def tasks(split, i):
            return jax.tree.map(lambda a: jax.lax.dynamic_slice_in_dim(a, i * chunk, chunk), split)
        return n, chunk, tasks
    from dlcore.data import episodes
    n_way = spec["test_n_way"]
    k, q = cfg.get("test_k_shot") or cfg["k_shot"], cfg.get("test_q_query") or cfg["q_query"]

    def tasks(split, i):
        key = jax.random.fold_in(jax.random.key(cfg["eval_seed"]), i)
        return _with_attributes(episodes.sample_batch(key, split["x"], chunk, n_way, k, q), split)
    return n, chunk, tasks


def _with_attributes(batch: dict, split: dict) -> dict:
    """Add each episode's class descriptions [B, N, A] when the data has them (zero-shot)."""
    if "attributes" in split:
        batch["attributes"] = jnp.take(split["attributes"], batch["classes"], axis=0)
    return batch


def check_arrays(splits: dict, name: str) -> dict:
    """Shapes, dtypes and finiteness of every split; returns the spec. ConfigError names the problem."""
    x, y = splits["train"]["x"], splits["train"]["y"]
    classification = np.issubdtype(y.dtype, np.integer)
    for split, d in splits.items():
        xs, ys = d["x"], d["y"]
        if len(xs) != len(ys):
            raise ConfigError(f"data '{name}' {split}: {len(xs)} inputs but {len(ys)} targets")
        if len(xs) == 0:
            raise ConfigError(f"data '{name}' {split}: no examples")
        if xs.shape[1:] != x.shape[1:]:
            raise ConfigError(f"data '{name}' {split}: inputs of shape {xs.shape[1:]}, "
                              f"train has {x.shape[1:]}")
        if not np.issubdtype(xs.dtype, np.floating) and not np.issubdtype(xs.dtype, np.integer):
            raise ConfigError(f"data '{name}' {split}: inputs of dtype {xs.dtype} are not numeric")
        if not np.all(np.isfinite(xs)):
            raise ConfigError(f"data '{name}' {split}: inputs contain NaN or Inf")
        if np.issubdtype(ys.dtype, np.floating) and not np.all(np.isfinite(ys)):
            raise ConfigError(f"data '{name}' {split}: targets contain NaN or Inf")
        if np.issubdtype(ys.dtype, np.integer) != classification:
            raise ConfigError(f"data '{name}' {split}: targets of dtype {ys.dtype}, train has {y.dtype}")
        if classification and ys.min() < 0:
            raise ConfigError(f"data '{name}' {split}: negative class label {ys.min()}")
        d["x"] = xs.astype(np.float32)
        d["y"] = ys.astype(np.int32) if classification else ys.astype(np.float32)
    if classification:
        num_outputs = int(max(d["y"].max() for d in splits.values())) + 1
    else:
        num_outputs = int(np.prod(y.shape[1:])) if y.ndim > 1 else 1
    return {"input_shape": tuple(x.shape[1:]), "num_outputs": num_outputs,
            "task": "classification" if classification else "regression"}
