"""Streaming batches from the host (loop.data=host) against keeping the data set on the device.

    python benchmarks/streaming.py [--experiments mnist1d/mlp,mnist1d/cnn] [--steps 3000]
                                   [--repeats 3] [--steps-per-call 1,10]

The same experiment, the same config, once with the data set on the device (each batch cut inside
the jitted step) and once streamed (dlcore.feed: the training split on the host, each call's
batches cut on the host CPU and sent while the previous call runs), in turn, `--repeats` times, in
this one process. Printed per experiment and steps per call: the medians of the loop's steady-state
train time per step (metrics.jsonl rows: training and the logging syncs; see _common.dlcore_run)
and the streamed path's throughput as a fraction of the on-device path's (the goal: >= 0.8), and
the two runs' test accuracies, which are equal (the batches are the same; tests/test_feed.py).
"""
from __future__ import annotations

import argparse
import statistics

import jax

from _common import dlcore_run
from dlcore import experiment


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--experiments", default="mnist1d/mlp,mnist1d/cnn")
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--steps-per-call", default="1,10")
    args = p.parse_args()
    print(f"{args.steps} steps, {args.repeats} repeats, {jax.default_backend()} backend "
          f"({jax.devices()[0].device_kind}), jax {jax.__version__}")
    print(f"{'experiment':14s} {'k':>3s} {'device us/step':>14s} {'host us/step':>12s} "
          f"{'host/device throughput':>22s} {'test acc (device, host)':>24s}")
    for name in args.experiments.split(","):
        for k in map(int, args.steps_per_call.split(",")):
            per = {"device": [], "host": []}
            acc = {}
            for _ in range(args.repeats):
                for place in per:
                    cfg = experiment.load(name, overrides=[
                        f"loop.steps={args.steps}", "loop.log_every=100", "loop.plots=false",
                        f"loop.eval_every={args.steps}", f"loop.checkpoint_every={args.steps}",
                        f"loop.steps_per_call={k}", f"loop.data={place}"])
                    r = dlcore_run(cfg, from_log=True)
                    per[place].append(r.per_step)
                    acc[place] = r.accuracy
            dev, host = (statistics.median(per[p_]) for p_ in ("device", "host"))
            print(f"{name:14s} {k:3d} {dev * 1e6:14.1f} {host * 1e6:12.1f} {dev / host:22.2f} "
                  f"{acc['device']:11.3f}, {acc['host']:.3f}", flush=True)


if __name__ == "__main__":
    main()
