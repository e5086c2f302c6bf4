"""The clock that the limits and the retry loop read and sleep on.

Injectable, so that tests of pacing, retrying and the poll schedule run on a
clock they move themselves and assert exact gaps, with no wall-clock waits.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import attrs

__all__ = ["SYSTEM_CLOCK", "Clock", "MonotonicClock", "Timer"]


class Timer(Protocol):
    """A callback set to run later (an `asyncio.TimerHandle` is one)."""

    def cancel(self) -> None:
        """Do not run it."""
        ...


class Clock(Protocol):
    """Seconds on a monotonic scale; sleeps and timers on the same scale."""

    def now(self) -> float:
        """The current time, in seconds."""
        ...

    def sleep(self, seconds: float) -> Awaitable[None]:
        """Return once `seconds` have passed on this clock (an `async def` fits)."""
        ...

    def call_at(self, when: float, callback: Callable[..., Any], *args: Any) -> Timer:
        """Call `callback(*args)` on the event loop once the time is `when`."""
        ...


@attrs.frozen
class MonotonicClock:
    """`time.monotonic` and asyncio's sleep: the clock of the event loop."""

    def now(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> Awaitable[None]:
        # asyncio's own coroutine, not one wrapping it: every create waiting for
        # its turn in the pacer holds this chain of frames while it waits.
        return asyncio.sleep(seconds)

    def call_at(self, when: float, callback: Callable[..., Any], *args: Any) -> Timer:
        # asyncio's loop time is time.monotonic.
        return asyncio.get_running_loop().call_at(when, callback, *args)


SYSTEM_CLOCK: Clock = MonotonicClock()
