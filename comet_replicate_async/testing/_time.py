"""The clock the fake server reads: the monotonic clock, or one a test moves.

Every time the fake keeps (when a prediction was created and so when it ends,
the sliding window and the token bucket behind `Retry-After`, a scripted
outage, the request log) is read from one clock. A test that gives the fake a
clock it moves itself (`FakeCometAPI(clock=...)`) finishes predictions and
refills quotas by moving that clock instead of waiting. Delays on the wire
(`create_delay`, `Fault.delay`, `slow_delay`) stay real: they are what the
client sees of the network, not the fake's own time.
"""

from __future__ import annotations

from typing import Protocol

from comet_replicate_async._clock import SYSTEM_CLOCK

__all__ = ["MONOTONIC", "ServerClock"]


class ServerClock(Protocol):
    """Seconds on a monotonic scale (the package's `Clock` is one)."""

    def now(self) -> float:
        """The current time, in seconds."""
        ...


#: `time.monotonic`, the default.
MONOTONIC: ServerClock = SYSTEM_CLOCK
