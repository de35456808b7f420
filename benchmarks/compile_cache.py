"""The whole `dlcore run` process with JAX's persistent compilation cache cold (an empty cache
folder) and warm (the folder a first run filled), side by side in one script.

    python benchmarks/compile_cache.py [--experiment mnist1d/mlp] [--repeats 3] [--quick]

Each round runs the same command three times, each a fresh process and a fresh run directory:
cold (DLCORE_COMPILE_CACHE = a new empty folder), warm (the folder the cold run filled) and off
(--no-compile-cache); rounds interleave so drift in machine load hits all three alike. Prints
each round's wall-clock seconds, the medians, and warm / cold.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def timed(args: list[str], env: dict) -> float:
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "dlcore.cli", *args], env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--experiment", default="mnist1d/mlp")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--quick", action="store_true", help="the experiment's --quick variant")
    a = p.parse_args(argv)
    rows = {"cold": [], "warm": [], "off": []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(a.repeats):
            cache = Path(tmp, f"cache{r}")
            env = {**os.environ, "DLCORE_COMPILE_CACHE": str(cache)}
            cmd = lambda kind: ["run", a.experiment, "--workdir", str(Path(tmp, f"{kind}{r}")),  # noqa: E731
                                "--no-progress", *(["--quick"] if a.quick else [])]
            rows["cold"].append(timed(cmd("cold"), env))
            files = sum(1 for _ in cache.rglob("*") if _.is_file())
            rows["warm"].append(timed(cmd("warm"), env))
            rows["off"].append(timed(cmd("off") + ["--no-compile-cache"], env))
            print(f"round {r + 1}: cold {rows['cold'][-1]:.2f} s ({files} programs cached), "
                  f"warm {rows['warm'][-1]:.2f} s, off {rows['off'][-1]:.2f} s", flush=True)
    med = {k: statistics.median(v) for k, v in rows.items()}
    print(f"\n`dlcore run {a.experiment}{' --quick' if a.quick else ''}`, whole process, median of "
          f"{a.repeats}: cold {med['cold']:.2f} s, warm {med['warm']:.2f} s, cache off "
          f"{med['off']:.2f} s; warm / cold {med['warm'] / med['cold']:.2f}, "
          f"warm / off {med['warm'] / med['off']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
