"""The one contract: what the host loop drives (`Algorithm`), what it feeds it (`Data`), and how a
seed becomes keys. Everything else in dlcore builds these values or consumes them.

    algorithm = Algorithm(init, step, evaluate)
        init(key)                    -> state            # any pytree
        step(state, batch, key)      -> (state, metrics) # metrics: flat dict of scalars
        evaluate(state, split, key)  -> metrics          # on one whole evaluation split
        state_axes                   # optional: the state's logical axis names (below)
    data = Data(splits, spec, sample)
        splits: {'train': tree, 'test': tree, ...}        # arrays, copied to the device once
        sample(train_split, step, key) -> batch          # jittable: the batch at `step`

Metric names are the algorithm's own ('loss', 'accuracy', 'return', ...). The loop logs the means
of the step metrics as 'train/<name>' and each evaluation split's as '<split>/<name>'; summary.json
names a final evaluation metric '<split>_<name>' (a whole-split evaluation of the training data is
'train_eval', so it never shares a name with the running mean of the training steps).

An algorithm stays ignorant of devices. To let the loop shard its state (`loop.sharding`: fsdp,
tensor parallelism) it only names the state's axes: `state_axes`, a tree like the state of
PartitionSpecs of logical names ('embed', 'heads', 'mlp', ...), or a function of the abstract
state (shapes and dtypes) returning that tree (`dlcore.parallel.state_axes` builds it from the
model's parameter names). dlcore.parallel maps the names onto the mesh.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax


class Algorithm(NamedTuple):
    """A training algorithm as pure functions (see the module docstring).

    headline: the summary metrics the command line prints first ('test_accuracy', ...).
    pictures(snapshot: Snapshot) -> [paths]: what the trained state does, drawn as PNG files in
        snapshot.out_dir (`dlcore report`); None draws nothing beyond the learning curves.
    extras: anything else the algorithm offers its users (MAML's `adapt`, a policy's `act`).
    state_axes: the logical axis names of the state (module docstring), or a function of the
        abstract state giving them; None: the state can only be replicated.
    """
    init: Callable[[jax.Array], Any]
    step: Callable[[Any, Any, jax.Array], tuple[Any, dict]]
    evaluate: Callable[[Any, Any, jax.Array], dict] | None = None
    headline: tuple[str, ...] = ()
    pictures: Callable | None = None
    extras: dict | None = None
    state_axes: Any = None


class Data(NamedTuple):
    """A data set or task distribution, described by itself.

    splits: {'train': ..., 'test': ..., optional 'validation'}: pytrees of arrays (dicts of
        [n, ...] examples, class-major [C, M, ...] arrays, fixed tasks, episode ids, ...).
    spec: what models and algorithms read: 'input_shape', 'num_outputs', 'task'
        ('classification' | 'regression' | 'control'), and whatever else the source offers its
        algorithms (the evaluation tasks of a meta-learning source, the environment of an RL one).
    sample(train_split, step, key) -> batch: the training batch at `step`, a jittable function of
        the step and key alone (a resumed run sees the batches the uninterrupted run saw); the
        batch is whatever the source makes ({'x', 'y'}, episodes, None for RL).
    evaluate_train: whether the final evaluation also scores the whole training split.
    """
    splits: dict
    spec: dict
    sample: Callable[[Any, jax.Array, jax.Array], Any]
    evaluate_train: bool = True


class Snapshot(NamedTuple):
    """What an algorithm's `pictures` draws from: one seed's state at the newest checkpoint (the
    best one under early stopping) and at initialisation, the run's data, its final summary metrics
    ({} before the run has ended), where to write, a title naming the run, and `history()`: the
    seed's (step, state) at every kept checkpoint, oldest first (restored only when called;
    None when there is no run directory)."""
    state: Any
    initial: Any
    data: Data
    metrics: dict
    out_dir: Any
    title: str
    history: Callable[[], list] | None = None


def split_keys(root: jax.Array) -> dict:
    """Independent streams for init, data order, per-step randomness and evaluation. The loop and
    `dlcore.rl.make_train` both derive a seed's keys this way, so their runs agree."""
    init, data, step, evaluation = jax.random.split(root, 4)
    return {"init": init, "data": data, "step": step, "eval": evaluation}
