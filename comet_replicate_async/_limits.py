"""Session-wide limits: the concurrency window, the create pace and the 429 pause.

Both are shared by every caller of a session, so a throttled server slows the
whole session once instead of each caller retrying on its own.
"""

from __future__ import annotations

import asyncio
import collections
import math
import time
from collections.abc import Callable

import anyio

__all__ = ["ConcurrencyWindow", "CreatePacer", "Throttle"]


class ConcurrencyWindow:
    """A counting semaphore whose size can change while it is in use.

    Unlike `anyio.CapacityLimiter`, a slot may be released by another task than the
    one that took it: a batch takes the slot before it pulls the next input, and
    the item's own task gives it back when its prediction ends.
    """

    def __init__(self, limit: int, *, adaptive: bool = False) -> None:
        if limit < 1:
            raise ValueError(f"max_concurrency must be at least 1, got {limit}")
        self._limit = limit
        self._ceiling = limit
        self._adaptive = adaptive
        self._in_use = 0
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._successes = 0
        self._last_decrease = -math.inf

    @property
    def limit(self) -> int:
        """How many slots there are now."""
        return self._limit

    @property
    def in_use(self) -> int:
        """How many slots are taken."""
        return self._in_use

    def set_limit(self, limit: int) -> None:
        """Resize; shrinking never takes a slot back, it only stops handing out new ones."""
        self._limit = max(1, limit)
        self._wake()

    def on_throttled(self, *, cooldown: float = 1.0) -> None:
        """A 429 arrived: halve the window (adaptive mode), at most once per cooldown.

        The cooldown keeps a burst of 429s from one overload from shrinking the
        window to 1 in one go.
        """
        now = time.monotonic()
        if not self._adaptive or now - self._last_decrease < cooldown:
            return
        self._last_decrease = now
        self._successes = 0
        self._limit = max(1, self._limit // 2)

    def on_success(self) -> None:
        """A request went through: grow back by one slot per window's worth of them."""
        if not self._adaptive or self._limit >= self._ceiling:
            return
        self._successes += 1
        if self._successes >= self._limit:
            self._successes = 0
            self.set_limit(self._limit + 1)

    async def acquire(self) -> None:
        """Take a slot, waiting while all are in use."""
        if self._in_use < self._limit and not self._waiters:
            self._in_use += 1
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled() and not waiter.exception():
                # The slot was handed over just as we were cancelled: pass it on.
                self.release()
            elif waiter in self._waiters:
                # Not there when a release already passed over it as cancelled.
                self._waiters.remove(waiter)
            raise

    def release(self) -> None:
        """Give a slot back."""
        self._in_use -= 1
        self._wake()

    def fail_waiters(self, error: Callable[[], BaseException]) -> None:
        """Raise a new `error()` in every caller waiting for a slot (the session
        is closing)."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(error())

    def _wake(self) -> None:
        while self._waiters and self._in_use < self._limit:
            waiter = self._waiters.popleft()
            if not waiter.done():
                self._in_use += 1
                waiter.set_result(None)


class Throttle:
    """A pause the server asked for (429, `Retry-After`) that every request honours."""

    def __init__(self) -> None:
        self._resume_at = 0.0

    @property
    def paused_for(self) -> float:
        """Seconds left of the current pause; 0 when not paused."""
        return max(0.0, self._resume_at - time.monotonic())

    def pause(self, seconds: float) -> None:
        """Hold every request for `seconds` from now (a longer pause already set wins)."""
        self._resume_at = max(self._resume_at, time.monotonic() + seconds)

    async def wait(self) -> None:
        """Return once no pause is in force."""
        # A loop, not an Event: a later 429 may push the resume time further out.
        while (remaining := self._resume_at - time.monotonic()) > 0:  # noqa: ASYNC110
            await anyio.sleep(remaining)


class CreatePacer:
    """Spaces creates evenly: at most `per_minute`, one every `60 / per_minute` s.

    Callers reserve the next free slot in order and sleep until it, so a batch
    never bursts N creates at once and then stalls for the rest of the minute.
    """

    def __init__(self, per_minute: float) -> None:
        if per_minute <= 0:
            raise ValueError(f"creates_per_minute must be positive, got {per_minute}")
        self.per_minute = per_minute
        self._spacing = 60.0 / per_minute
        self._next_slot = 0.0

    async def wait_turn(self) -> None:
        """Sleep until this caller's slot comes."""
        now = time.monotonic()
        slot = max(self._next_slot, now)
        self._next_slot = slot + self._spacing
        if slot > now:
            await anyio.sleep(slot - now)
