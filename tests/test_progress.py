"""dlcore.writers.Progress: the run's progress bar on tqdm, its timing, and where it is shown."""
from __future__ import annotations

import io
import subprocess
import sys
import time

import pytest
import tqdm.std

from dlcore import writers


class Tty(io.StringIO):
    def isatty(self):
        return True


class FakeClock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


@pytest.fixture
def clock(monkeypatch):
    """One fake time.time for dlcore's timing and tqdm's (set before a bar is made)."""
    c = FakeClock()
    monkeypatch.setattr(writers.time, "time", c)
    monkeypatch.setattr(tqdm.std, "time", c)
    return c


@pytest.fixture(autouse=True)
def no_env(monkeypatch):
    monkeypatch.delenv("DLCORE_PROGRESS", raising=False)


def test_terminal_bar_shows_steps_and_metrics_by_full_name(clock):
    out = Tty()
    bar = writers.Progress(total=50, stream=out, label="exp ")
    assert "compiling" in out.getvalue()  # drawn at once: the first call is compiling
    bar.start_timing(0)
    for step in range(1, 51):
        clock.t += 0.5  # past tqdm's 0.1 s between redraws
        bar.update(step, {"train/loss": 0.3125, "test/accuracy": 0.92, "test/curve": [1.0, 2.0]})
    bar.close()
    text = out.getvalue()
    last = text.split("\r")[-1]
    assert last.startswith("exp: 100%") and "50/50" in last and "2.00step/s" in last
    assert "train/loss 0.3125 test/accuracy 0.92" in last and "curve" not in last
    assert "compiling" not in last
    assert text.count("\r") > 10 and text.endswith("\n") and text.count("\n") == 1


def test_rate_and_eta_count_from_start_timing_and_exclude_evaluation(clock):
    out = Tty()
    bar = writers.Progress(total=1000, stream=out)
    bar.exclude(50.0)  # before timing starts: nothing to exclude from, no error
    clock.t += 30.0    # the first call compiles: not counted
    bar.update(1)
    assert "?step/s" in out.getvalue().split("\r")[-1]
    bar.start_timing(1)
    clock.t += 20.0    # 10 s of steps, 10 s of evaluation
    bar.exclude(10.0)
    bar.update(101)    # 100 steps in 10 s of training: 899 left take 89.9 s
    line = out.getvalue().split("\r")[-1]
    assert "101/1000" in line and "10.00step/s" in line and "[00:10<01:29" in line
    bar.close()


def test_rate_is_not_dragged_down_by_compiling_real_clock():
    out = Tty()
    bar = writers.Progress(total=2000, stream=out)
    time.sleep(0.5)  # "compiling": at most 2 steps/s if it were counted
    bar.start_timing(0)
    for step in range(1, 2001):
        bar.update(step)
    bar.close()
    rate = float(out.getvalue().split("\r")[-1].split("step/s")[0].split()[-1])
    assert rate > 100 * 2000 / 0.5  # well over what counting the half second would give


def test_resumed_run_counts_from_its_start_step(clock):
    out = Tty()
    bar = writers.Progress(total=10_000, start=4_000, stream=out)
    assert "4000/10000" in out.getvalue()
    bar.start_timing(4_000)
    clock.t += 2.0
    bar.update(5_000)
    line = out.getvalue().split("\r")[-1]
    assert "5000/10000" in line and "500.00step/s" in line and "<00:10" in line
    bar.close()


def test_not_a_tty_is_silent_by_default(clock):
    out = io.StringIO()
    bar = writers.Progress(total=100, stream=out, label="exp ")
    bar.start_timing(0)
    for step in range(1, 101):
        clock.t += 0.1
        bar.update(step, {"train/loss": 0.5})
    bar.close()
    assert out.getvalue() == ""


@pytest.mark.parametrize("how", ["argument", "environment"])
def test_lines_when_asked(clock, monkeypatch, how):
    if how == "environment":
        monkeypatch.setenv("DLCORE_PROGRESS", "lines")
    out = io.StringIO()
    bar = writers.Progress(total=100, stream=out, label="exp ",
                           mode="lines" if how == "argument" else None)
    bar.start_timing(0)
    for step in range(1, 101):
        clock.t += 0.1  # 10 steps per second
        bar.update(step, {"train/loss": 0.5, "test/accuracy": 0.75, "test/curve": [1.0, 2.0]})
    bar.close()
    text = out.getvalue()
    lines = text.splitlines()
    assert "\r" not in text and "\033" not in text and text.endswith("\n")
    assert 9 <= len(lines) <= 12  # about every 10 % of the run, not every step
    assert lines[0].startswith("exp 1/100")
    halfway = next(line for line in lines if line.startswith("exp 51/100"))
    assert " 51%" in halfway and "10.00step/s" in halfway and "<00:04" in halfway
    assert "train/loss 0.5 test/accuracy 0.75" in halfway and "curve" not in halfway
    assert lines[-1].startswith("exp 100/100 100%")


def test_lines_of_an_interrupted_run_end_where_it_stopped(clock):
    out = io.StringIO()
    bar = writers.Progress(total=1000, stream=out, mode="lines")
    bar.start_timing(0)
    for step in range(1, 151):
        clock.t += 0.01
        bar.update(step)
    bar.close()
    assert out.getvalue().splitlines()[-1].startswith("150/1000")


def test_off_and_bad_modes(monkeypatch):
    out = Tty()
    bar = writers.Progress(total=10, stream=out, mode="off")
    bar.start_timing(0)
    bar.update(10, {"train/loss": 1.0})
    bar.close()
    assert out.getvalue() == ""
    monkeypatch.setenv("DLCORE_PROGRESS", "loud")
    with pytest.raises(ValueError, match="DLCORE_PROGRESS"):
        writers.Progress(total=10, stream=out)


NOTEBOOK = """
import sys, types, warnings
warnings.simplefilter("always")
class ZMQInteractiveShell: pass
ipython = types.ModuleType("IPython"); ipython.get_ipython = lambda: ZMQInteractiveShell()
sys.modules.update({"IPython": ipython, "ipykernel": types.ModuleType("ipykernel"),
                    "ipykernel.zmqshell": types.ModuleType("ipykernel.zmqshell")})
with warnings.catch_warnings(record=True) as caught:
    from dlcore import writers
    bar = writers.Progress(total=10, label="nb ")  # stderr is a pipe here, as in a kernel
    bar.start_timing(0)
    bar.update(10, {"train/loss": 0.5})
    bar.close()
print([str(w.message) for w in caught if "tqdm" in type(w.message).__module__])
"""


def test_in_a_notebook_without_ipywidgets_a_text_bar_and_no_warning():
    out = subprocess.run([sys.executable, "-c", NOTEBOOK], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"  # no TqdmWarning, no TqdmExperimentalWarning
    assert "nb: 100%" in out.stderr and "train/loss 0.5" in out.stderr


def test_test_metrics_stay_shown_between_evaluations(clock):
    out = io.StringIO()
    bar = writers.Progress(total=30, stream=out, mode="lines")
    bar.start_timing(0)
    bar.update(10, {"train/loss": 0.9, "test/accuracy": 0.5})
    bar.update(20, {"train/loss": 0.7})  # no evaluation at this step
    bar.close()
    assert "train/loss 0.7 test/accuracy 0.5" in out.getvalue().splitlines()[-1]
