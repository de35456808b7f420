"""One command for a GPU: what the README promises, measured in one process, written as one table.

    python benchmarks/gpu.py [--out PATH.md] [--only gpt,ppo,mnist1d,seeds] [--tiny] [--allow-cpu]

Four parts, run in this order (`--only` picks some); in each, every contender is timed against a baseline measured in the same run, and
ratio = contender's figure / baseline's figure (every figure is a rate: > 1 is faster):

* gpt: nanoGPT's GPU configuration (`shakespeare/gpt`: 6 layers, 6 heads, width 384, block 256,
  batch 64; dropout 0 in both contenders, since the hand-written model has none), training
  tokens/s in float32 and in bfloat16 (parameters and optimizer state float32, cast inside the
  forward), dlcore (`lm.make`, benchmarks/gpt_speed.py's `dlcore_step`, `model.dtype`) against the
  hand-written single-file `jax.jit` GPT (gpt_speed's `handwritten_step`) of the same dtype. Each
  contender compiled and warmed up once, then `steps` steps timed, `repeats` times in turn,
  medians. MFU: nanoGPT's model FLOPs (gpt_speed's `flops_per_token`) against the bfloat16 peak
  measured in this process, a jitted n x n @ n x n bfloat16 matmul (n = 16384 on a GPU), for the
  float32 rows too (JAX's default float32 matmul precision on a GPU may use TF32; the float32
  peak is measured alongside, in the JSON). On a chip with a published dense bfloat16 figure
  (`PUBLISHED_BF16`: the H200) a second MFU column is against that figure, labelled as such.
* mnist1d: train steps/s of `mnist1d/mlp`, `cnn`, `gru` and `transformer` through
  `dlcore.experiment.run` (the experiment's `loop.steps_per_call`, the same work as the
  hand-written loop: one evaluation and one checkpoint at the end; steady state read from its
  metrics log, benchmarks/_common.py's `dlcore_run(from_log=True)`) against a hand-written `jax.jit`
  loop (benchmarks/mnist1d_models.py's own CNN and GRU; for the MLP and the Transformer,
  benchmarks/mnist1d_mlp.py's loop over the same Flax module and optax chain).
* ppo: CartPole environment steps/s with thousands of environments (4096 x 128 steps an
  iteration): dlcore's PPO (`rl.make_train` of `cartpole/ppo` with `data.num_envs`) against the
  single-file end-to-end-jitted PPO of benchmarks/ppo_minimal.py, both one `jax.jit` compiled once
  (benchmarks/ppo_cartpole.py's way), one untimed execution, then `repeats` timed on fresh keys.
* seeds: `mnist1d/mlp`, N seeds as one vmapped program against N runs one after another
  (`loop.seeds_in_one_program`, benchmarks/seeds.py's way): seed-steps/s of the whole
  `dlcore.experiment.run`, compiles, evaluations and checkpoints included.

Output: the markdown table on stdout and in PATH (default runs/benchmarks/gpu-<date>.md; runs/ is
not tracked), and beside it PATH with .json: the device (jax.devices()[0].device_kind), date, jax
version, sizes, peaks, every repeat. Both are rewritten after each part, so a run cut short keeps
the parts it finished. A part that fails leaves its rows with the reason; the exit status is then 1.

Sizes (`FULL`): GPT 100 steps x 3 repeats per contender; MNIST-1D 1000 steps x 2 repeats; PPO 20
iterations (10.5 M environment steps) x 3; seeds 8 x 2000 steps, once each way. Estimated 5-8
minutes on one H200, compiles included (an estimate: not yet run on one). `--tiny`: sizes a CPU
runs in under a minute (tests/test_gpu_benchmark.py), whose figures mean nothing. On a backend that is not
a GPU, without --tiny, the script says so in one line and exits 2, unless --allow-cpu.
"""
from __future__ import annotations

import argparse
import datetime
import json
import math
import platform
import statistics
import sys
import time
import traceback
from pathlib import Path
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

PARTS = ("gpt", "ppo", "mnist1d", "seeds")  # in this order: a run cut short keeps the first
MNIST1D_MODELS = ("mlp", "cnn", "gru", "transformer")
HAND = "hand-written jax.jit"
# published dense (no sparsity) bfloat16 tensor-core figures, by a substring of device_kind
PUBLISHED_BF16 = {"H200": (989e12, "H200 SXM datasheet, dense bf16 989 TFLOP/s")}


class Sizes(NamedTuple):
    gpt: tuple            # (layers, heads, width, block, batch) of gpt_speed.GPTConfig
    gpt_steps: int        # timed steps per repeat
    gpt_repeats: int
    peak_n: int           # the peak's matmul size
    mnist_steps: int
    mnist_log_every: int
    mnist_repeats: int
    ppo_envs: int
    ppo_steps: int        # rollout length (rl.num_steps)
    ppo_iters: int        # iterations per timed execution
    ppo_repeats: int
    seeds: int
    seeds_steps: int
    seeds_repeats: int
    gpt_set: tuple = ()   # more overrides of dlcore's GPT config
    mnist_set: dict = {}  # model: more overrides of its MNIST-1D experiment (both contenders)


FULL = Sizes(gpt=(6, 6, 384, 256, 64), gpt_steps=100, gpt_repeats=3, peak_n=16384,
             mnist_steps=1000, mnist_log_every=100, mnist_repeats=2,
             ppo_envs=4096, ppo_steps=128, ppo_iters=20, ppo_repeats=3,
             seeds=8, seeds_steps=2000, seeds_repeats=1)
TINY = Sizes(gpt=(1, 2, 32, 32, 4), gpt_steps=3, gpt_repeats=2, peak_n=256,
             mnist_steps=20, mnist_log_every=10, mnist_repeats=1,
             ppo_envs=16, ppo_steps=8, ppo_iters=2, ppo_repeats=2,
             seeds=2, seeds_steps=20, seeds_repeats=1, gpt_set=("lm.sample_length=8",),
             mnist_set={"transformer": ["model.layers=1", "model.width=16", "model.heads=2"]})


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def row(part: str, what: str, contender: str, figure: float, unit: str, baseline: str,
        **extra) -> dict:
    return {"part": part, "what": what, "contender": contender, "figure": figure, "unit": unit,
            "baseline": baseline, "is_baseline": contender == baseline, **extra}


def with_ratios(rows: list[dict]) -> list[dict]:
    """ratio = figure / the figure of the row of the same `what` named as its baseline."""
    base = {(r["what"], r["contender"]): r["figure"] for r in rows}
    for r in rows:
        b = base.get((r["what"], r["baseline"]), math.nan)
        r["ratio"] = r["figure"] / b if b and math.isfinite(b) else math.nan
    return rows


# --- gpt ------------------------------------------------------------------------------------------

def part_gpt(sz: Sizes, info: dict) -> list[dict]:
    import gpt_speed as g

    L, H, C, T, B = sz.gpt
    cfg = g.GPTConfig(layers=L, heads=H, width=C, block=T, batch=B)
    tokens = jax.random.randint(jax.random.key(7), (g.STREAM,), 0, cfg.vocab, jnp.int32)
    experiment, same_model = g.DLCORE_EXPERIMENTS["gpu"]  # shakespeare/gpt, dropout 0
    overrides = [*same_model, f"model.layers={L}", f"model.heads={H}", f"model.width={C}",
                 *sz.gpt_set]
    contenders: list[tuple[str, str, g.Contender]] = []
    sizes = {}
    for dtype in ("float32", "bfloat16"):
        hand = lambda dtype=dtype: g.jax_runner(*g.handwritten_step(cfg, tokens,
                                                                    g.Options(dtype=dtype)))

        def dl(dtype=dtype):
            state, step = g.dlcore_step(overrides + [f"model.dtype={dtype}"], cfg, tokens,
                                        experiment=experiment)
            sizes[dtype] = sum(int(a.size) for a in jax.tree.leaves(state.params))
            return g.jax_runner(state, step)

        contenders += [(dtype, HAND, g.Contender(HAND, hand, "jax bfloat16")),
                       (dtype, "dlcore", g.Contender("dlcore", dl, "jax bfloat16"))]
    for dtype, name, c in contenders:
        log(f"gpt: preparing {name} {dtype}")
        c.prepare()
        log(f"  {c.prepare_s:.1f} s" + (f"; not available ({c.missing})" if c.missing else ""))
    peaks: dict[str, list[float]] = {"bfloat16": [], "float32": []}
    times: dict[tuple[str, str], list[float]] = {(d, n): [] for d, n, c in contenders}
    for r in range(sz.gpt_repeats):
        for dt in peaks:
            peaks[dt].append(g.matmul_peak_jax(dt, sz.peak_n))
        for dtype, name, c in contenders:
            if c.missing is None:
                times[(dtype, name)].append(c.run(sz.gpt_steps))
                log(f"  repeat {r + 1}/{sz.gpt_repeats} {name} {dtype}: "
                    f"{times[(dtype, name)][-1] * 1e3:.2f} ms/step")
    peak = statistics.median(peaks["bfloat16"])
    published = next((v for k, v in PUBLISHED_BF16.items() if k in info["device_kind"]), None)
    fpt, tokens_per_step = g.flops_per_token(cfg), cfg.batch * cfg.block
    info["gpt"] = {"model": cfg._asdict(), "flops_per_token": fpt, "params": g.param_count(cfg),
                   "params_all": g.param_count(cfg, False), "dlcore_params": sizes,
                   "peak_matmul_n": sz.peak_n, "peaks_flops": peaks,
                   "peak_bf16_flops": peak, "published_bf16_flops": published and published[0],
                   "published_bf16_source": published and published[1],
                   "prepare_s": {f"{n} {d}": c.prepare_s for d, n, c in contenders},
                   "default_matmul_precision": str(jax.config.jax_default_matmul_precision)}
    rows = []
    for dtype, name, c in contenders:
        what = (f"GPT {L}x{H}x{C}, block {T}, batch {B}: training, {dtype}"
                + (" (params and optimizer state float32)" if dtype == "bfloat16" else ""))
        contender = (f"dlcore (lm.make, model.dtype={dtype})" if name == "dlcore"
                     else f"{HAND} (benchmarks/gpt_speed.py)")
        baseline = f"{HAND} (benchmarks/gpt_speed.py)"
        if c.missing:
            rows.append(row("gpt", what, contender, math.nan, "tokens/s", baseline,
                            error=c.missing))
            continue
        s = statistics.median(times[(dtype, name)])
        achieved = fpt * tokens_per_step / s
        extra = {"ms_per_step": s * 1e3, "ms_per_step_repeats": [t * 1e3 for t in
                                                                 times[(dtype, name)]],
                 "mfu": achieved / peak, "achieved_tflops": achieved / 1e12}
        if published:
            extra["mfu_published"] = achieved / published[0]
        if name == "dlcore" and sizes.get(dtype) != g.param_count(cfg, False):
            extra["note"] = (f"dlcore's model has {sizes.get(dtype)} parameters, the FLOP count "
                             f"assumes {g.param_count(cfg, False)}")
        rows.append(row("gpt", what, contender, tokens_per_step / s, "tokens/s", baseline,
                        **extra))
    return rows


# --- mnist1d --------------------------------------------------------------------------------------

def part_mnist1d(sz: Sizes, info: dict) -> list[dict]:
    import mnist1d_mlp
    import mnist1d_models
    from _common import dlcore_run, interleave

    from dlcore import experiment

    S = sz.mnist_steps
    rows = []

    def one(model: str) -> list[dict]:
        name = f"mnist1d/{model}"
        base = experiment.load(name, overrides=[f"loop.steps={S}", "loop.plots=false",
                                                f"loop.log_every={sz.mnist_log_every}",
                                                *sz.mnist_set.get(model, [])])
        same_work = experiment.apply_overrides(base, [f"loop.eval_every={S}",
                                                      f"loop.checkpoint_every={S}"])
        if model in mnist1d_models.JAX_MODELS:
            hand_name = f"{HAND} (its own {model}, benchmarks/mnist1d_models.py)"
            try:
                mnist1d_models.check_config(base, model)
            except SystemExit as e:  # the hand-written model no longer matches the config
                raise RuntimeError(str(e)) from None
            hand = lambda: mnist1d_models.handwritten_run(base, model)
        else:
            hand_name = f"{HAND} (the same Flax module, benchmarks/mnist1d_mlp.py)"
            hand = lambda: mnist1d_mlp.handwritten_run(base)
        dl_name = f"dlcore (steps_per_call={base['loop']['steps_per_call']}, same work)"
        log(f"mnist1d: {name}, {S} steps x {sz.mnist_repeats} repeats")
        results = interleave({hand_name: hand,
                              dl_name: lambda: dlcore_run(same_work, from_log=True)},
                             sz.mnist_repeats, log)
        what = f"MNIST-1D {model}: train steps/s (batch {base['data']['batch_size']})"
        out = []
        for contender, rs in results.items():
            per_step = statistics.median(r.per_step for r in rs)
            out.append(row("mnist1d", what, contender, 1.0 / per_step, "steps/s", hand_name,
                           us_per_step_repeats=[r.per_step * 1e6 for r in rs],
                           whole_s_repeats=[r.whole for r in rs],
                           test_accuracy=[r.accuracy for r in rs]))
        return out

    for model in MNIST1D_MODELS:  # a model that fails leaves the others' rows
        try:
            rows += one(model)
        except Exception as e:  # noqa: BLE001 - its row says why
            traceback.print_exc()
            rows.append(row("mnist1d", f"MNIST-1D {model}", "—", math.nan, "", "",
                            error=f"{type(e).__name__}: {str(e)[:160]}"))
    info["mnist1d"] = {"steps": S, "repeats": sz.mnist_repeats}
    return rows


# --- ppo ------------------------------------------------------------------------------------------

def part_ppo(sz: Sizes, info: dict) -> list[dict]:
    import ppo_cartpole
    import ppo_minimal

    from dlcore import experiment, rl

    E, T, iters = sz.ppo_envs, sz.ppo_steps, sz.ppo_iters
    config = experiment.load("cartpole/ppo", overrides=[
        f"data.num_envs={E}", f"rl.num_steps={T}", f"loop.steps={iters}", "loop.log_every=1",
        "loop.steps_per_call=1", "loop.eval_every=1", "loop.checkpoint_every=1"])
    algorithm, _ = experiment.build(config)
    minimal_cfg = dict(ppo_minimal.CONFIG, num_envs=E, num_steps=T, total_timesteps=iters * E * T)
    base = "minimal end-to-end-jitted PPO (benchmarks/ppo_minimal.py)"
    fns = {base: ppo_minimal.make_train(minimal_cfg),
           "dlcore PPO (rl.make_train of cartpole/ppo)": rl.make_train(algorithm, iters, 1)}
    compiled, compile_s = {}, {}
    for name, fn in fns.items():
        log(f"ppo: compiling {name}")
        t0 = time.perf_counter()
        compiled[name] = jax.jit(ppo_cartpole.batched(fn, 0)).lower(
            ppo_cartpole.seed_keys(0, 0)).compile()
        jax.block_until_ready(compiled[name](ppo_cartpole.seed_keys(0, 0)))  # untimed
        compile_s[name] = time.perf_counter() - t0
        log(f"  compiled and ran once in {compile_s[name]:.1f} s")
    times: dict[str, list[float]] = {name: [] for name in fns}
    for r in range(sz.ppo_repeats):
        keys = ppo_cartpole.seed_keys(r + 1, 0)
        for name, f in compiled.items():
            t0 = time.perf_counter()
            jax.block_until_ready(f(keys))
            times[name].append(time.perf_counter() - t0)
            log(f"  repeat {r + 1}/{sz.ppo_repeats} {name}: {times[name][-1]:.3f} s")
    steps = iters * E * T
    what = f"PPO CartPole-v1, {E} environments x {T} steps, {iters} iterations: env steps/s"
    info["ppo"] = {"envs": E, "num_steps": T, "iterations": iters, "env_steps": steps,
                   "compile_and_first_run_s": compile_s}
    return [row("ppo", what, name, steps / statistics.median(ts), "env steps/s", base,
                seconds_repeats=ts) for name, ts in times.items()]


# --- seeds ----------------------------------------------------------------------------------------

def part_seeds(sz: Sizes, info: dict) -> list[dict]:
    from _common import dlcore_run

    from dlcore import experiment

    N, S = sz.seeds, sz.seeds_steps
    overrides = [f"loop.steps={S}", "loop.plots=false"]
    if S < 1000:  # the tiny run: its schedule must divide the steps
        overrides += ["loop.log_every=10", f"loop.eval_every={S}", f"loop.checkpoint_every={S}"]
    base = experiment.load("mnist1d/mlp", overrides=overrides)
    names = {False: "one run after another (loop.seeds_in_one_program=false)",
             True: "one vmapped program (loop.seeds_in_one_program=true)"}
    whole: dict[str, list[float]] = {n: [] for n in names.values()}
    for r in range(sz.seeds_repeats):
        for in_one, name in names.items():
            cfg = experiment.apply_overrides(
                base, [f"loop.seeds_in_one_program={str(in_one).lower()}"])
            res = dlcore_run(cfg, seeds=N)
            whole[name].append(res.whole)
            log(f"seeds: repeat {r + 1}/{sz.seeds_repeats} {name}: {res.whole:.1f} s")
    what = f"{N} seeds of mnist1d/mlp, {S} steps each: whole run (compiles included)"
    info["seeds"] = {"seeds": N, "steps": S, "repeats": sz.seeds_repeats}
    return [row("seeds", what, name, N * S / statistics.median(ws), "seed-steps/s",
                names[False], whole_s_repeats=ws) for name, ws in whole.items()]


RUNNERS: dict[str, Callable[[Sizes, dict], list[dict]]] = {
    "gpt": part_gpt, "mnist1d": part_mnist1d, "ppo": part_ppo, "seeds": part_seeds}


# --- the table ------------------------------------------------------------------------------------

def fmt(v: float, digits: int = 0) -> str:
    return f"{v:,.{digits}f}" if math.isfinite(v) else "—"


def markdown(rows: list[dict], info: dict) -> str:
    published = info.get("gpt", {}).get("published_bf16_source")
    peak = info.get("gpt", {}).get("peak_bf16_flops")
    head = ["what", "contender", "figure", "ratio"]
    if peak:
        rate = f"{peak / 1e12:.0f} TFLOP/s" if peak >= 1e12 else f"{peak / 1e9:.0f} GFLOP/s"
        head.append(f"MFU, of the bf16 matmul peak measured here ({rate})")
    if published:
        head.append(f"MFU, of the published peak ({published})")
    lines = [f"{info['device_kind']} ({info['backend']}), jax {info['jax']}, {info['date']}"
             + (", --tiny (figures mean nothing)" if info["tiny"] else "")
             + "; ratio = figure / the baseline's figure in the same run (> 1: faster)", ""]
    if peak:
        peaks = {k: statistics.median(v) / 1e12 for k, v in info["gpt"]["peaks_flops"].items()}
        lines += [f"Matmul peaks measured here ({info['gpt']['peak_matmul_n']}^3, median): "
                  + ", ".join(f"{k} {v:.3g} TFLOP/s" for k, v in peaks.items())
                  + f"; jax_default_matmul_precision {info['gpt']['default_matmul_precision']}"
                  ". The float32 rows' MFU is of the bfloat16 peak too.", ""]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        contender = r["contender"] + (", baseline" if r["is_baseline"] else "")
        figure = (f"{fmt(r['figure'], 1 if r['figure'] < 100 else 0)} {r['unit']}"
                  if math.isfinite(r["figure"]) else f"failed: {r.get('error', '?')}")
        cells = [r["what"], contender, figure, fmt(r.get("ratio", math.nan), 2)]
        if peak:
            cells.append(f"{r['mfu']:.1%}" if "mfu" in r else "")
        if published:
            cells.append(f"{r['mfu_published']:.1%}" if "mfu_published" in r else "")
        lines.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
    return "\n".join(lines) + "\n"


def write(out: Path, rows: list[dict], info: dict) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(markdown(rows, info))
    strict = [{k: None if isinstance(v, float) and not math.isfinite(v) else v  # strict JSON
               for k, v in r.items()} for r in rows]
    out.with_suffix(".json").write_text(json.dumps({**info, "rows": strict}, indent=2,
                                                   default=str, allow_nan=False) + "\n")


# --- main -----------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", help="the markdown table (and PATH .json beside it); default "
                   "runs/benchmarks/gpu-<date>.md")
    p.add_argument("--only", default=",".join(PARTS), help=f"comma-separated: {', '.join(PARTS)}")
    p.add_argument("--tiny", action="store_true", help="tiny sizes: a smoke run for a CPU")
    p.add_argument("--allow-cpu", action="store_true", help="time the full sizes on a CPU anyway")
    args = p.parse_args(argv)
    parts = args.only.split(",")
    for part in parts:
        if part not in PARTS:
            p.error(f"unknown part {part!r}; choose from {', '.join(PARTS)}")

    from dlcore import rl
    try:  # before JAX computes anything: the CPU deadlock guard the PPO part needs there
        rl.guard()
    except Exception as e:  # noqa: BLE001 - it reads a private JAX module; a GPU needs no guard
        log(f"dlcore.rl.guard() failed ({type(e).__name__}: {e}); going on without it")
    backend = jax.default_backend()
    if backend != "gpu" and not (args.tiny or args.allow_cpu):
        print(f"benchmarks/gpu.py is meant for a GPU, and JAX's backend here is {backend}: "
              "--tiny for a smoke run, --allow-cpu to time the full sizes anyway", file=sys.stderr)
        return 2
    sz = TINY if args.tiny else FULL
    date = datetime.date.today().isoformat()
    out = Path(args.out or f"runs/benchmarks/gpu-{date}.md")
    info = {"date": date, "device_kind": jax.devices()[0].device_kind, "backend": backend,
            "devices": jax.device_count(), "jax": jax.__version__,
            "python": platform.python_version(), "tiny": args.tiny, "sizes": sz._asdict(),
            "parts": {}}
    log(f"{info['device_kind']} ({backend}), jax {jax.__version__}; parts {', '.join(parts)}")
    rows: list[dict] = []
    t_all = time.perf_counter()
    for part in parts:
        t0 = time.perf_counter()
        try:
            new = RUNNERS[part](sz, info)
            error = None
        except Exception as e:  # noqa: BLE001 - a failed part leaves its reason in the table
            traceback.print_exc()
            error = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:200]
            new = [row(part, f"{part} (the whole part)", "—", math.nan, "", "", error=error)]
        info["parts"][part] = {"seconds": time.perf_counter() - t0, "error": error}
        rows = with_ratios(rows + new)
        write(out, rows, info)
        log(f"{part}: {info['parts'][part]['seconds']:.1f} s")
    info["seconds"] = time.perf_counter() - t_all
    write(out, rows, info)
    print(markdown(rows, info))
    log(f"wrote {out} and {out.with_suffix('.json')} ({info['seconds']:.0f} s in all)")
    failed = [r for r in rows if not math.isfinite(r["figure"]) or r["figure"] <= 0]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
