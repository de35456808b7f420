"""Waiting for the device with a deadline, instead of blocking forever; and the loop's errors.

XLA's CPU runtime has deadlocked (every thread idle, forever) in some vmapped programs of nested
scans (README: "A deadlock guard"). The loop waits for the device only through `Watch.wait`,
which gives up after max(limit_seconds, 10 x the longest wait so far) and raises `Hung`, naming
the step and the checkpoint to resume from. In a notebook the kernel lives on; the command line
exits at once (dlcore.cli: stuck XLA threads cannot be joined). Compiling never counts: jit
compiles before its call returns, and the wait starts after.
"""
from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Callable

import jax


class TrainingError(RuntimeError):
    """Training cannot go on (NaN/Inf metrics, a hung program); the command line exits with 1."""


class Hung(TrainingError):
    """The compiled program stopped making progress."""


class Watch:
    def __init__(self, limit_seconds: float, workdir: Path | str = ""):
        self.limit_seconds, self.workdir, self.longest = limit_seconds, workdir, 0.0

    def limit(self) -> float:
        return max(self.limit_seconds, 10 * self.longest)

    def wait(self, tree, where: Callable[[], tuple]) -> None:
        """Block until every array of `tree` is computed, or raise Hung past the limit.
        where() -> (step, last checkpoint step or None), for the message."""
        done, error = threading.Event(), []

        def block():
            try:
                jax.block_until_ready(tree)
            except BaseException as e:  # raised again in the waiting thread below
                error.append(e)
            done.set()
        t0 = time.monotonic()
        threading.Thread(target=block, daemon=True).start()
        if not done.wait(self.limit()):
            raise Hung(self.message(*where()))
        if error:
            raise error[0]
        self.longest = max(self.longest, time.monotonic() - t0)

    def message(self, step: int, saved) -> str:
        resume = (f"the last checkpoint is step {saved}; run the same command again to resume"
                  if saved is not None else "no checkpoint had been written")
        return (f"no progress for {self.limit():.0f} s after step {step} in {self.workdir}: the "
                f"compiled program appears to be deadlocked (README: 'A deadlock guard'); {resume}")
