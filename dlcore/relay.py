"""The stderr of a process other than 0 in a run of several (dlcore.distributed), relayed.

    python dlcore/relay.py I        (I: the index of the process whose stderr arrives on stdin)

When process 0 is lost, JAX ends every other process within milliseconds, from a C++ thread:
'Terminating process because the JAX distributed service detected fatal errors ...', its reason
and a stack dump, after a few lines of the coordination client's own (the preemption manager's and
the agent's). No Python code of that process runs again, so this small process reads its stderr
through a pipe, passes every line on as it comes, and turns that abort into dlcore's one line. It
reads until the pipe closes: until the process, and whatever it started, has ended. It imports
nothing of dlcore or JAX (it starts in milliseconds) and ignores SIGINT and SIGTERM, which are
the watched process's to handle: this one ends at the end of its input.
"""
from __future__ import annotations

import re
import signal
import sys
from typing import BinaryIO

FATAL = b"Terminating process because the JAX distributed service detected fatal errors"
# gloo's end when a collective with another process breaks (its peer gone mid-transfer)
GLOO = b"terminate called after throwing an instance of 'gloo::"
# a log record (absl's prefix: level, date, time); lines without it continue the one before
_RECORD = re.compile(rb"^[IWEF]\d{4} \d\d:\d\d:\d\d\.\d+ ")
# the coordination client's records that come just before that abort, which it repeats
_CLIENT = re.compile(rb"^[WE]\d{4} .*(coordination_service_agent|preemption_sync_manager)\.cc:")
# gRPC's words for a service that went away (process 0, where it lives, ended)
_GONE = re.compile(rb"Socket closed|Connection reset|Connection refused|Error received from peer"
                   rb"|failed to connect")


def message(abort: bytes, me: str) -> bytes:
    """dlcore's line for JAX's abort (its text to the end): which process was lost, or JAX's
    reason; that this one ends; how to resume."""
    reason = abort.split(FATAL, 1)[1].split(b"absl::Status:", 1)[-1]
    if b"stopped sending heartbeats" in reason:  # the service's list of tasks, one a line
        tail = reason.split(b"stopped sending heartbeats", 1)[1].splitlines()[1:]
        ids = [t.strip().rsplit(b":", 1)[-1].decode() for t in tail
               if t.strip().rsplit(b":", 1)[-1].isdigit()]
        said = f"process {', '.join(ids) or '?'} stopped answering"
    elif _GONE.search(reason):
        said = "lost process 0, which coordinates the run (its connection closed)"
    else:  # a failed barrier, say: JAX's own words
        first = (reason.strip().splitlines() or [b"?"])[0].decode(errors="replace")[:160]
        said = f"JAX's distributed runtime ended the run ({first})"
    return (f"dlcore: error: {said}; process {me} ends too: run the same command on every "
            "process to resume from the last checkpoint\n").encode()


def _gloo_message(text: bytes, me: str) -> bytes:
    """dlcore's line for gloo's abort: a collective with another process broke."""
    what = text.split(b"what():", 1)[-1].strip().splitlines() or [b"?"]
    return (f"dlcore: error: a collective with another process of the run broke (gloo: "
            f"{what[0].decode(errors='replace')[:160]}): one was probably lost; process {me} "
            "ends too: run the same command on every process to resume from the last "
            "checkpoint\n").encode()


def relay(source: BinaryIO, sink: BinaryIO, me: str) -> None:
    """Copy `source` to `sink` line by line until its end, JAX's abort (and everything after it)
    replaced by `message`. The client's records are held back until the next record: when that
    is the abort they are dropped with it, otherwise passed on."""
    held: list[bytes] = []
    for line in source:
        if FATAL in line or line.startswith(GLOO):
            rest = line + source.read()
            sink.write(message(rest, me) if FATAL in line else _gloo_message(rest, me))
            sink.flush()
            return
        if _CLIENT.match(line) or (held and not _RECORD.match(line)):
            held.append(line)
            continue
        sink.writelines([*held, line])
        held.clear()
        sink.flush()
    sink.writelines(held)
    sink.flush()


if __name__ == "__main__":
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    relay(sys.stdin.buffer, sys.stdout.buffer, sys.argv[1])
