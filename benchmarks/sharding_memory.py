"""Per-device memory of nanoGPT's GPU GPT under each sharding strategy, from the compiled step.

    python benchmarks/sharding_memory.py [--devices 8] [--model-parallel 2] [--experiment shakespeare/gpt]

The model and recipe are the experiment `shakespeare/gpt` (nanoGPT's GPU configuration: 6 layers,
6 heads, width 384, vocabulary 65, block 256, batch 64; AdamW with clipping, its numbers injected
into the optimizer state), `dlcore.algorithms.lm.make` on a synthetic language `Data` of that
shape. On `--devices` fake CPU devices (set before JAX starts) the training step is lowered and
compiled, nothing run, for each strategy of `dlcore.parallel.RULES` (the tensor ones with a
'model' axis of `--model-parallel` devices), its state placed by the logical axis names the
algorithm declares, the state donated and kept at its shardings as the loop does. Printed per
device: the state (parameters + optimizer state) as its shardings split it; XLA's
`memory_analysis()` of the compiled step: arguments (the state, one batch shard, a key) and
temporaries (activations, gradients, gathered parameters); and the ratio of each to replicate's.
The CPU backend's figures are XLA's buffer assignment for this program, not a GPU's (whose
scheduler can overlap and free all-gathered parameters layer by layer).
"""
from __future__ import annotations

import argparse
import math
import string


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--devices", type=int, default=8)
    p.add_argument("--model-parallel", type=int, default=2)
    p.add_argument("--experiment", default="shakespeare/gpt")
    args = p.parse_args()

    import jax
    jax.config.update("jax_num_cpu_devices", args.devices)  # before JAX starts; CPU only
    import jax.numpy as jnp

    from dlcore import experiment, parallel
    from dlcore.algorithms import lm
    from dlcore.core import Data
    from dlcore.data.text import language_spec

    cfg = experiment.load(args.experiment)
    t, batch_size = cfg["data"]["block_size"], cfg["data"]["batch_size"]
    vocab = "\n !$&',-.3:;?" + string.ascii_uppercase + string.ascii_lowercase  # tiny Shakespeare's 65
    data = Data({}, language_spec(vocab, t, "char", "synthetic"), None)
    alg = lm.make(cfg, data, cfg["loop"]["steps"])
    state = jax.eval_shape(alg.init, jax.random.key(0))
    axes = alg.state_axes(state)
    tokens = jax.ShapeDtypeStruct((batch_size, t), jnp.int32)
    n_params = sum(x.size for x in jax.tree.leaves(state.params))
    state_bytes = sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(state))
    m = cfg["model"]
    print(f"{args.experiment}: {m['layers']} layers, {m['heads']} heads, width {m['width']}, "
          f"vocabulary {len(vocab)}, block {t}, batch {batch_size}; {n_params:,} parameters, "
          f"state (parameters + optimizer) {state_bytes / 2**20:.2f} MiB; {args.devices} "
          f"{jax.devices()[0].platform} devices\n")

    rows = []
    for strategy in parallel.RULES:
        model = args.model_parallel if "tensor" in strategy else 1
        mesh = parallel.data_mesh(args.devices, model)
        shardings = parallel.state_shardings(state, mesh, axes, parallel.RULES[strategy])
        held = sum(x.dtype.itemsize * math.prod(s.shard_shape(x.shape))
                   for x, s in zip(jax.tree.leaves(state), jax.tree.leaves(shardings)))
        placed = jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                              state, shardings)
        batch = {k: jax.ShapeDtypeStruct(tokens.shape, tokens.dtype,
                                         sharding=parallel.batch_sharding(mesh)) for k in "xy"}
        step = jax.jit(alg.step, donate_argnums=0,
                       out_shardings=(shardings, parallel.replicated(mesh)))
        mem = step.lower(placed, batch, jax.random.key(1)).compile().memory_analysis()
        name = strategy + (f" (model={model})" if model > 1 else "")
        rows.append((name, dict(mesh.shape), held, mem.argument_size_in_bytes,
                     mem.temp_size_in_bytes))

    mib = lambda b: f"{b / 2**20:9.2f}"
    base = rows[0]
    print(f"{'strategy':24s} {'mesh':22s} {'state MiB':>9s} {'x less':>6s}  "
          f"{'args MiB':>9s} {'x less':>6s}  {'temp MiB':>9s}  {'args+temp':>9s} {'x less':>6s}")
    for name, shape, held, arg, temp in rows:
        mesh = " x ".join(f"{k} {v}" for k, v in shape.items())
        print(f"{name:24s} {mesh:22s} {mib(held)} {base[2] / held:6.2f}  {mib(arg)} "
              f"{base[3] / arg:6.2f}  {mib(temp)}  {mib(arg + temp)} "
              f"{(base[3] + base[4]) / (arg + temp):6.2f}")


if __name__ == "__main__":
    main()
