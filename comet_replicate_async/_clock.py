"""The clock that the limits and the retry loop read and sleep on.

Injectable, so that tests of pacing and retrying run on a clock they move
themselves and assert exact gaps, with no wall-clock waits.
"""

from __future__ import annotations

import time
from typing import Protocol

import anyio
import attrs

__all__ = ["SYSTEM_CLOCK", "Clock", "MonotonicClock"]


class Clock(Protocol):
    """Seconds on a monotonic scale, and a sleep measured on the same scale."""

    def now(self) -> float:
        """The current time, in seconds."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Return once `seconds` have passed on this clock."""
        ...


@attrs.frozen
class MonotonicClock:
    """`time.monotonic` and anyio's sleep: the clock of the event loop."""

    def now(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await anyio.sleep(seconds)


SYSTEM_CLOCK: Clock = MonotonicClock()
