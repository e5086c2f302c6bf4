"""SIGINT, SIGTERM and SIGHUP stop a batch the same way; a second one ends it at once.

The first signal stops creating: creates in flight get their answer and are
journaled, waits are abandoned (a rerun polls them), and the process exits with
128 + the signal (130, 143, 129) once the batch has wound down. If that takes
longer than `STOP_BOUND` seconds, or a second signal comes, the process exits at
once: every journal write is a transaction, so the journal stays readable and a
rerun resumes (a create in flight then may be reported ambiguous).

Before the batch listens (reading the prompts, checking the API), SIGTERM and
SIGHUP interrupt the command as Ctrl-C does: nothing was sent, the command says
so in its one line and exits with 143 or 129.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable

import anyio

__all__ = [
    "STOP_BOUND",
    "STOP_SIGNALS",
    "Interrupted",
    "interrupt_on_signal",
    "stop_on_signal",
]

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
#: Seconds a stopping batch may take before the process exits anyway.
STOP_BOUND = 30.0


class Interrupted(KeyboardInterrupt):
    """SIGTERM or SIGHUP before the batch listened for it."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.code = 128 + signum


def interrupt_on_signal() -> None:
    """Let SIGTERM and SIGHUP interrupt the command until `stop_on_signal` listens
    (their default would end the process without a word)."""

    def interrupt(signum: int, _: object) -> None:
        raise Interrupted(signum)

    for stop_signal in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(stop_signal, interrupt)


async def stop_on_signal(
    stop: anyio.Event, note: Callable[[str], None], received: list[int]
) -> None:
    """Set `stop` on the first signal (recorded in `received`); exit on a second."""
    with anyio.open_signal_receiver(*STOP_SIGNALS) as signals:
        async for first in signals:
            received.append(first)
            stop.set()
            note("Stopping: no new creates; creates in flight are being recorded…")
            break
        with anyio.move_on_after(STOP_BOUND):
            async for second in signals:
                _exit_now(
                    128 + second,
                    f"stopped at once by a second signal ({signal.Signals(second).name})",
                )
        _exit_now(
            128 + received[0], f"the batch did not stop within {STOP_BOUND:.0f} s"
        )


def _exit_now(code: int, what: str) -> None:
    print(
        f"error: {what}; the journal holds every committed write: "
        "rerun the same command to resume",
        file=sys.stderr,
        flush=True,
    )
    sys.stdout.flush()
    # No clean-up on purpose: that is what the user asked to skip.
    os._exit(code)
