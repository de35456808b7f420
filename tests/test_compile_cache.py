"""`dlcore run` keeps JAX's persistent compilation cache (dlcore.compile_cache): a second run of
the same experiment compiles nothing new; --no-compile-cache and DLCORE_COMPILE_CACHE=off leave
no cache; `dlcore --version`."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(300)


def dlcore(*args: str, cache: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "DLCORE_COMPILE_CACHE": cache}
    return subprocess.run([sys.executable, "-m", "dlcore.cli", *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=240)


def programs(folder: Path) -> set[str]:
    return {p.name for p in folder.rglob("*") if p.is_file()} if folder.exists() else set()


def test_a_second_run_reads_every_program_from_the_cache(tmp_path):
    cache = tmp_path / "cache"
    run = ("run", "mnist1d/mlp", "--quick", "--no-progress")
    first = dlcore(*run, "--workdir", "a", cache=str(cache), cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    cached = programs(cache)
    assert len(cached) >= 3  # init, the step, the evaluation at least
    second = dlcore(*run, "--workdir", "b", cache=str(cache), cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    assert programs(cache) == cached  # nothing compiled anew


def test_switched_off_by_flag_or_environment(tmp_path):
    run = ("run", "digits/mlp", "--quick", "--no-progress")
    off = dlcore(*run, "--workdir", "a", "--no-compile-cache", cache=str(tmp_path / "c1"),
                 cwd=tmp_path)
    assert off.returncode == 0, off.stderr
    assert not (tmp_path / "c1").exists()
    env_off = dlcore(*run, "--workdir", "b", cache="off", cwd=tmp_path)
    assert env_off.returncode == 0, env_off.stderr
    assert not (tmp_path / "off").exists()


def test_version(tmp_path):
    out = dlcore("--version", cache="off", cwd=tmp_path)
    assert out.returncode == 0 and out.stdout.startswith("dlcore ")
