"""Sinusoid regression (Finn et al. 2017, Sec. 5.1): MAML, first-order MAML, Reptile, Meta-SGD and
the pretrained baseline, each meta-trained for K = 5, 10 and 20 and scored on 600 fixed test tasks
after 0 to 10 test-time gradient steps.

Command:  python experiments/studies/sinusoid.py [--quick] [--seeds N] [--out runs/studies/sinusoid]
Runtime:  about 30 minutes on a 2-core CPU (15 runs of 70,000 meta-updates; a finished run in
          <out>/<algorithm>/k<K> is reused).
Writes:   <out>/sinusoid.md (MSE after 0, 1 and 10 steps: mean ± 95 % CI over tasks, and median),
          .json (every step), after_steps.png (K = 10, MSE against steps), fits.png (K = 10, four
          test tasks after 0, 1 and 10 steps). Every model is also re-scored with the inner gradient
          clip off (meta.inner_grad_clip = 0): what the clip prevents.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import jax
import numpy as np

from dlcore import cli, experiment, meta, models, plots, study

ALGORITHMS = ("maml", "fomaml", "reptile", "metasgd", "pretrained")
SHOTS = (5, 10, 20)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="the experiments' smoke-test length")
    p.add_argument("--seeds", type=int, default=1)
    p.add_argument("--shots", default=",".join(map(str, SHOTS)), help="comma-separated K values")
    p.add_argument("--out", default="runs/studies/sinusoid")
    args = p.parse_args(argv)
    out, shots = Path(args.out), [int(k) for k in args.shots.split(",")]
    rows, data, curves = [], {}, {}
    for algo in ALGORITHMS:
        variants = {f"k{k}": [f"data.k_shot={k}", f"data.q_query={k}"] for k in shots}
        summaries = study.run_variants(f"sinusoid/{algo}", variants, out / algo, args.seeds,
                                       args.quick)
        for k in shots:
            m = summaries[f"k{k}"]["metrics"]
            mean, ci, med = (np.asarray(m[n]) for n in ("test_mse_after_steps",
                                                        "test_mse_ci95_after_steps",
                                                        "test_median_mse_after_steps"))
            last = len(mean) - 1
            off = unclipped(out / algo / f"k{k}")
            rows.append([algo, k] + [f"{fmt(mean[s])} ± {fmt(ci[s])}" for s in (0, 1, last)]
                        + [f"{med[1]:.3f}", f"{med[last]:.3f}",
                           f"{100 * m['test_clipped_fraction']:.2f} %",
                           f"{fmt(off['mse_after_steps'][-1])}, {off['nonfinite_tasks']}"])
            data[f"{algo}/k{k}"] = {**{n: m[n] for n in (
                "test_mse_after_steps", "test_mse_ci95_after_steps", "test_median_mse_after_steps",
                "test_clipped_fraction")}, "clip_off": off}
            if k == 10 or k == shots[len(shots) // 2]:
                curves[algo] = (mean, ci)
    table = study.markdown_table(
        ["algorithm", "K", "MSE, 0 steps", "MSE, 1 step", "MSE, 10 steps", "median, 1 step",
         "median, 10 steps", "tasks clipped", "clip off: MSE 10 steps, tasks non-finite"], rows)
    k_fig = 10 if 10 in shots else shots[len(shots) // 2]
    study.write(out, "sinusoid", table, {"quick": args.quick, "seeds": args.seeds, "runs": data})
    plots.after_steps_figure(curves, "mse", out / "after_steps.png")
    runs = {algo: experiment.load_run(out / algo / f"k{k_fig}") for algo in ALGORITHMS}
    tasks = jax.tree.map(lambda a: a[:4], runs["maml"].data.splits["test"])
    plots.fits_figure({algo: sinusoid_fits(run, tasks) for algo, run in runs.items()},
                      tasks, out / "fits.png")
    print(table)
    return 0


def fmt(v: float) -> str:
    return f"{v:.3f}" if abs(v) < 1e3 else f"{v:.2g}"


def apply_of(run):
    """apply(params, x) -> [n, 1] of a sinusoid run's network (the parameters `adapt` returns)."""
    spec = run.data.spec
    model = models.build(run.config["model"], spec["input_shape"], spec["num_outputs"])
    return meta.model_apply(model, spec["input_shape"])


def sinusoid_fits(run, tasks: dict, steps=(0, 1, 10), grid: int = 200) -> dict:
    """{steps: predictions [tasks, grid]} on x = linspace(-5, 5, grid) after adapting each task's
    support set for that many steps with the run's own `adapt`."""
    xs = np.linspace(-5, 5, grid, dtype=np.float32)[:, None]
    apply, adapt = apply_of(run), run.algorithm.extras["adapt"]
    out = {}
    for s in steps:
        def one(support):
            return apply(adapt(run.final.params, support, jax.random.key(0), steps=s), xs)[:, 0]
        out[s] = np.asarray(jax.jit(jax.vmap(one))(tasks["support"]))
    return out


def unclipped(workdir: Path) -> dict:
    """The run's final model scored on its test tasks with the inner-loop gradient clip off."""
    run = experiment.load_run(workdir)
    config = {**run.config, "meta": {**run.config["meta"], "inner_grad_clip": 0.0}}
    algorithm = experiment.maker(config["algorithm"]).make(config, run.data,
                                                           config["loop"]["steps"])
    split = run.data.splits["test"]
    m = jax.device_get(jax.jit(algorithm.evaluate)(run.final, split, jax.random.key(0)))
    per_task = per_task_mse(algorithm, run, config)
    return {"mse_after_steps": np.asarray(m["mse_after_steps"]).tolist(),
            "nonfinite_tasks": int((~np.isfinite(per_task)).any(1).sum()),
            "max_after_10": float(np.nanmax(np.where(np.isfinite(per_task), per_task, np.nan)[:, -1]))}


def per_task_mse(algorithm, run, config) -> np.ndarray:
    """[tasks, steps + 1] query MSE per test task (clip off), for the worst-case figures."""
    m = meta.validate(config["meta"])
    loss = meta.task_loss(apply_of(run), "regression")
    params = run.final.params
    if config["algorithm"] == "metasgd":  # its own learned rates
        params, lr = params["net"], params["lr"]
    else:  # 0 = the state's own inner rate (a MAML state carries it)
        lr = config["meta"]["test_inner_lr"] or (run.final.hyper or {}).get("inner_lr",
                                                                           m.get("inner_lr"))

    def one(task):
        return meta.adaptation_curve(loss, params, task, lr, m["test_steps"], 0.0)["score"]
    n = config["data"]["eval_tasks"]
    tasks = jax.tree.map(lambda a: a[:n], run.data.splits["test"])
    return np.asarray(jax.jit(jax.vmap(one))(tasks))


if __name__ == "__main__":
    sys.exit(cli.guarded(main))
