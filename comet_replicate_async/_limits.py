"""Session-wide limits: the concurrency window, the create pace and the 429 pause.

All are shared by every caller of a session, so a throttled server slows the
whole session once instead of each caller retrying on its own.
"""

from __future__ import annotations

import asyncio
import collections
import math
from collections.abc import Callable

from ._clock import SYSTEM_CLOCK, Clock

__all__ = ["ConcurrencyWindow", "CreatePacer", "Throttle"]


class ConcurrencyWindow:
    """A counting semaphore whose size can change while it is in use.

    Unlike `anyio.CapacityLimiter`, a slot may be released by another task than the
    one that took it: a batch takes the slot before it pulls the next input, and
    the item's own task gives it back when its prediction ends.
    """

    def __init__(
        self, limit: int, *, adaptive: bool = False, clock: Clock = SYSTEM_CLOCK
    ) -> None:
        if limit < 1:
            raise ValueError(f"max_concurrency must be at least 1, got {limit}")
        self._limit = limit
        self._ceiling = limit
        self._adaptive = adaptive
        self._clock = clock
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
        now = self._clock.now()
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

    def __init__(self, clock: Clock = SYSTEM_CLOCK) -> None:
        self._clock = clock
        self._resume_at = 0.0

    @property
    def paused_for(self) -> float:
        """Seconds left of the current pause; 0 when not paused."""
        return max(0.0, self._resume_at - self._clock.now())

    def pause(self, seconds: float) -> None:
        """Hold every request for `seconds` from now (a longer pause already set wins)."""
        self._resume_at = max(self._resume_at, self._clock.now() + seconds)

    async def wait(self) -> None:
        """Return once no pause is in force."""
        # A loop, not an Event: a later 429 may push the resume time further out.
        while (remaining := self._resume_at - self._clock.now()) > 0:
            await self._clock.sleep(remaining)


class CreatePacer:
    """Spaces creates to the rate the server allows, shared by every caller.

    Callers reserve the next free slot in order and sleep until it, so creates
    are spread evenly instead of bursting and stalling. The spacing is the widest
    of three: `per_minute` (a ceiling the user sets), a learned rate, and a hint
    from the server's `ratelimit-remaining` / `ratelimit-reset` headers.

    The learned rate starts unknown (no pacing). The first refused create (429)
    sets it to the rate creates were accepted at just before, and every accepted
    create then raises it by 5 %, to find the limit quickly from a poor first
    guess. The next refusal sets it to the lower of the rate just measured and
    98 % of the rate that overshot, close under the limit (a token bucket with a
    burst of 1 refuses any create that comes early); from then on each refusal
    cuts it by 2 % and accepted creates raise it by 0.03 % a second, probing
    gently (about one refusal a minute, each costing one wait the server names).
    One burst of 429s counts once: a request sent before the last cut was sent
    at the old pace and teaches nothing, and a cut waits for a cooldown after
    the previous one. The rate only rises while it holds callers back.

    A 429 without `Retry-After` is not a rate: gateways built on new-api send it
    when a key has too many requests in flight, which the session's
    `RequestBudget` answers.

    All decisions are pure: the clock is injectable and `reserve` returns the
    wait instead of sleeping.
    """

    def __init__(
        self,
        per_minute: float | None = None,
        *,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        if per_minute is not None and per_minute <= 0:
            raise ValueError(f"creates_per_minute must be positive, got {per_minute}")
        self.per_minute = per_minute
        self._ceiling = math.inf if per_minute is None else per_minute / 60.0
        self._clock = clock
        self._learned: float | None = None
        self._fast_probe = True
        self._last_cut = -math.inf
        self._accepted: collections.deque[float] = collections.deque()
        self._hint_spacing = 0.0
        self._hint_until = -math.inf
        self._next_slot = -math.inf
        self._last_turn = -math.inf
        # Whether the server's rate counts queries too (a query was refused with
        # a wait named): then queries take turns as well.
        self.counts_queries = False
        self._queries_waiting = 0
        self._paused_until = -math.inf
        self._pauses = 0
        self._waited_at = -math.inf

    @property
    def rate(self) -> float | None:
        """Creates per second allowed now; None when nothing limits them."""
        rate = min(self._ceiling, self._learned or math.inf)
        return None if rate == math.inf else rate

    def reserve(self) -> float:
        """Take the next slot; return how many seconds to wait for it."""
        now = self._clock.now()
        spacing = self._spacing(now)
        slot = max(self._next_slot, now)
        self._next_slot = slot + spacing
        if slot > now:
            self._waited_at = now
        return slot - now

    async def wait_turn(self) -> None:
        """Sleep until this caller's slot comes (taking a new one after a pause)."""
        while True:
            pauses = self._pauses
            delay = self.reserve()
            if delay <= 0 and not self.counts_queries:
                self._last_turn = self._clock.now()
                return
            if delay > 0:
                await self._clock.sleep(delay)
            now = self._clock.now()
            # A slot inside a pause that began meanwhile is void: the callers
            # whose slots it swallowed would otherwise all go at its end at once.
            if self._pauses == pauses or now >= self._paused_until:
                # The caller before woke late, or a query went: keep the full
                # gap after it (a bucket with no burst refuses what comes early).
                spacing = self._spacing(now)
                while True:
                    if (early := self._last_turn + spacing - now) > spacing * 1e-6:
                        await self._clock.sleep(early)
                    elif self._queries_waiting:
                        await self._clock.sleep(spacing)  # polls first
                    else:
                        break
                    now = self._clock.now()
                self._last_turn = now
                return

    async def query_turn(self) -> None:
        """A query's turn, once a refused query showed that the server's rate
        counts queries (`counts_queries`): the gap after the last request, ahead
        of every create waiting for its slot (a poll may end a prediction; a
        create only adds one). A create whose slot comes right after waits on."""
        self._queries_waiting += 1
        try:
            while True:
                now = self._clock.now()
                if now < self._paused_until:
                    await self._clock.sleep(self._paused_until - now)
                    continue
                spacing = self._spacing(now)
                if (early := self._last_turn + spacing - now) <= spacing * 1e-6:
                    self._last_turn = now
                    return
                await self._clock.sleep(early)
        finally:
            self._queries_waiting -= 1

    def _spacing(self, now: float) -> float:
        spacing = 0.0 if (rate := self.rate) is None else 1.0 / rate
        if now < self._hint_until:
            spacing = max(spacing, self._hint_spacing)
        return spacing

    def pause(self, seconds: float) -> None:
        """Send no create for `seconds` from now (the server asked for it)."""
        until = self._clock.now() + seconds
        if until > self._paused_until:
            self._paused_until = until
            self._pauses += 1
            self._next_slot = max(self._next_slot, until)

    def on_accepted(
        self, remaining: int | None = None, reset: float | None = None
    ) -> None:
        """A create went through; `remaining` and `reset` from its headers, if sent."""
        now = self._clock.now()
        self._accepted.append(now)
        while self._accepted[0] < now - _MEASURE_SECONDS:
            self._accepted.popleft()
        # Only a pace that holds callers back is worth raising: otherwise it
        # would climb far above what is sent, and take many 429s to come down.
        # (A caller waited within the last two gaps, or the last second.)
        learned = self._learned
        if learned is not None and now - self._waited_at < max(_BINDING, 2 / learned):
            # Probing slowly: by a share per second, not per create, so that a
            # fast limit is not overshot (each 429 costs a whole named wait,
            # rounded up to a second) more often than a slow one.
            step = _FAST_PROBE if self._fast_probe else _SLOW_PROBE / learned
            self._learned = min(learned * (1.0 + step), _MAX_RATE)
        if remaining is None or reset is None:
            return
        if remaining <= 0:
            # The quota is spent: wait for the reset instead of spending a 429.
            self._next_slot = max(self._next_slot, now + reset)
        else:
            # Spread what is left evenly until the reset.
            self._hint_spacing = reset / remaining
            self._hint_until = now + reset

    def on_refused(self, sent_at: float = math.inf) -> None:
        """A request sent at `sent_at` was refused with 429 and a wait named:
        learn a lower rate."""
        now = self._clock.now()
        if sent_at < self._last_cut:
            return  # sent at the pace before the last cut
        current = self.rate
        cooldown = max(_COOLDOWN, 2.0 / current) if current else _COOLDOWN
        if now - self._last_cut < cooldown:
            return
        self._last_cut = now
        if self._learned is None:
            self._learned = self._measured(now) or _FIRST_GUESS
            return
        if self._fast_probe:
            self._fast_probe = False
            overshot = self._learned * _FIRST_CUT
            measured = self._measured(now) or overshot
            self._learned = max(min(measured, overshot), _MIN_RATE)
        else:
            self._learned = max(self._learned * _CUT, _MIN_RATE)

    def _measured(self, now: float) -> float | None:
        """Creates accepted per second over the last moments, if any."""
        while self._accepted and self._accepted[0] < now - _MEASURE_SECONDS:
            self._accepted.popleft()
        if not self._accepted:
            return None
        span = max(now - self._accepted[0], 1.0)
        return len(self._accepted) / span


# How the learned create rate moves (see CreatePacer).
_MEASURE_SECONDS = 2.0
_COOLDOWN = 1.0
_FIRST_CUT = 0.98
_CUT = 0.98
_FAST_PROBE = 0.05
_SLOW_PROBE = 0.0003  # a share of the rate per second of accepted creates
_FIRST_GUESS = 1.0
_BINDING = 1.0
_MIN_RATE = 1 / 60
_MAX_RATE = 1e6
