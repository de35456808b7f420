"""Waiting for the device with a deadline, instead of blocking forever; signals that end a run
cleanly; and the loop's errors.

XLA's CPU runtime has deadlocked (every thread idle, forever) in some vmapped programs of nested
scans (README: "A deadlock guard"). The loop waits for the device only through `Watch.wait`,
which gives up after max(limit_seconds, 10 x the longest wait so far) and raises `Hung`, naming
the step and the checkpoint to resume from. In a notebook the kernel lives on; the command line
exits at once (dlcore.cli: stuck XLA threads cannot be joined). Compiling never counts: jit
compiles before its call returns, and the wait starts after.
"""
from __future__ import annotations

import signal
import threading
import time
from pathlib import Path
from typing import Callable

import jax


class TrainingError(RuntimeError):
    """Training cannot go on (NaN/Inf metrics, a hung program); the command line exits with 1."""


class Hung(TrainingError):
    """The compiled program stopped making progress."""


class Interrupted(TrainingError):
    """SIGINT or SIGTERM ended the run after its state was saved; exit status 128 + signal."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.signum = signum


class Signals:
    """Within `with Signals() as s:` the first SIGINT or SIGTERM only sets `s.received` (the
    signal number): the loop looks between compiled calls, saves, and leaves. Raising from the
    handler instead would land anywhere (inside an XLA compile, an orbax save) and leave half-done
    work and threads behind. A second signal goes to the handler that was there before (the
    command line's, or KeyboardInterrupt). Outside the main thread signals cannot be caught: a
    no-op there."""

    def __enter__(self):
        self.received, self.previous = None, {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.previous[sig] = signal.getsignal(sig)
                signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.received is None:
            self.received = signum
            return
        previous = self.previous.get(signum)
        self.__exit__()
        if callable(previous):
            previous(signum, frame)
        elif signum == signal.SIGINT:
            raise KeyboardInterrupt
        else:
            signal.raise_signal(signum)

    def __exit__(self, *exc):
        for sig, handler in self.previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
        self.previous = {}


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
