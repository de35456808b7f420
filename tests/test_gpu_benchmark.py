"""benchmarks/gpu.py, the one-command GPU benchmark, at its --tiny sizes on this CPU: every part
runs and every row of its table has a positive, finite figure and ratio. No timing is asserted:
at these sizes the figures mean nothing, and timed assertions fail on a busy machine."""
import json
import math
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu.py"
# (part, words of the contender's name) of every row the table must have, baselines first
EXPECTED = [("gpt", "hand-written"), ("gpt", "dlcore"), ("gpt", "hand-written"), ("gpt", "dlcore"),
            ("ppo", "minimal"), ("ppo", "dlcore"),
            *[("mnist1d", name) for _ in range(4) for name in ("hand-written", "dlcore")],
            ("seeds", "one run after another"), ("seeds", "one vmapped program")]


def run(args: list[str], cwd: Path, **env) -> subprocess.CompletedProcess:
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=cwd, capture_output=True,
                          text=True, timeout=400, env={**os.environ, "PYTHONPATH": path, **env})


def test_tiny_run_writes_every_row_with_a_positive_figure(tmp_path):
    out = tmp_path / "results" / "gpu.md"
    proc = run(["--tiny", "--out", str(out)], tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(out.with_suffix(".json").read_text())
    rows = result["rows"]
    assert len(rows) == len(EXPECTED), [(r["part"], r["contender"]) for r in rows]
    for r, (part, name) in zip(rows, EXPECTED):
        assert r["part"] == part and r["contender"].startswith(name), r
    for r in rows:
        assert math.isfinite(r["figure"]) and r["figure"] > 0, r
        assert math.isfinite(r["ratio"]) and r["ratio"] > 0, r
        if r["is_baseline"]:
            assert r["ratio"] == 1.0, r
        if r["part"] == "gpt":
            assert math.isfinite(r["mfu"]) and r["mfu"] > 0, r
    assert {r["what"] for r in rows if r["part"] == "mnist1d"} == {
        f"MNIST-1D {m}: train steps/s (batch 100)" for m in ("mlp", "cnn", "gru", "transformer")}
    assert result["tiny"] and result["device_kind"] and result["jax"] and result["date"]
    assert all(p["error"] is None for p in result["parts"].values())
    # the markdown: the same table on stdout and in the file, one line per row
    table = out.read_text()
    assert table.strip() in proc.stdout
    lines = [line for line in table.splitlines() if line.startswith("| ") and "---" not in line]
    assert len(lines) == 1 + len(rows)  # the header, then the rows
    assert "failed" not in table


def test_without_a_gpu_it_says_so_in_one_line_unless_tiny_or_allowed(tmp_path):
    proc = run([], tmp_path, JAX_PLATFORMS="cpu")
    assert proc.returncode == 2
    said = [line for line in proc.stderr.splitlines() if "meant for a GPU" in line]
    assert len(said) == 1 and "--allow-cpu" in said[0] and "--tiny" in said[0]
    assert not (tmp_path / "runs").exists()
