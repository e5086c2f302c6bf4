"""The fake's create limits: a sliding window or a token bucket, and their headers.

Either refuses a create over the limit with a 429 and `Retry-After`, and can
report its quota in `ratelimit-*` headers as some gateways do. The third shape,
`InFlightCap`, is a per-key cap on requests in flight (`max_in_flight`).
"""

from __future__ import annotations

import asyncio
import math
from collections import deque

import attrs
from aiohttp import web
from aiohttp.typedefs import Handler

from ._faults import Fault
from ._http import crowded

__all__ = [
    "CreateLimiter",
    "InFlightCap",
    "RateLimiter",
    "TokenBucket",
    "create_limiter",
    "quota_headers",
    "refusal",
]


@attrs.define
class RateLimiter:
    """A sliding-window limit on accepted creates.

    Attributes:
        limit: Creates allowed per window.
        window: Window length in seconds.
    """

    limit: int
    window: float
    _accepted: deque[float] = attrs.field(factory=deque, init=False)

    def admit(self, now: float) -> int | None:
        """Take a slot at monotonic time *now*.

        Returns:
            `None` when admitted, else the whole seconds (at least 1) until
            the oldest slot frees, for `Retry-After`.
        """
        while self._accepted and self._accepted[0] <= now - self.window:
            self._accepted.popleft()
        if len(self._accepted) < self.limit:
            self._accepted.append(now)
            return None
        return max(1, math.ceil(self._accepted[0] + self.window - now))

    def quota(self, now: float) -> tuple[int, float]:
        """`(remaining, reset)`: creates left now, seconds until the oldest frees."""
        remaining = self.limit - len(self._accepted)
        reset = self._accepted[0] + self.window - now if self._accepted else 0.0
        return remaining, max(0.0, reset)

    def clear(self) -> None:
        """Forget every accepted create."""
        self._accepted.clear()


@attrs.define
class TokenBucket:
    """A token bucket on accepted creates: *rate* a second, bursts of *burst*.

    Attributes:
        rate: Tokens added per second.
        burst: Most tokens held (the bucket starts full).
    """

    rate: float
    burst: int
    _tokens: float = attrs.field(init=False)
    _stamp: float | None = attrs.field(default=None, init=False)

    @_tokens.default
    def _full(self) -> float:
        return float(self.burst)

    def _refill(self, now: float) -> None:
        if self._stamp is not None:
            self._tokens = min(
                float(self.burst), self._tokens + (now - self._stamp) * self.rate
            )
        self._stamp = now

    def admit(self, now: float) -> int | None:
        """Take a token; else the whole seconds (at least 1) until one comes."""
        self._refill(now)
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return None
        return max(1, math.ceil((1.0 - self._tokens) / self.rate))

    def quota(self, now: float) -> tuple[int, float]:
        """`(remaining, reset)`: whole tokens now, seconds until the next one."""
        self._refill(now)
        remaining = int(self._tokens)
        return remaining, (remaining + 1 - self._tokens) / self.rate

    def clear(self) -> None:
        """Fill the bucket again."""
        self._tokens, self._stamp = float(self.burst), None


CreateLimiter = RateLimiter | TokenBucket


def create_limiter(
    *,
    creates_per_minute: int | None,
    rate_window: float,
    creates_per_second: float | None,
    burst: int,
) -> CreateLimiter | None:
    """The limit a fake's settings ask for, if any (a bucket or a window, not both)."""
    if creates_per_second is not None:
        if creates_per_minute is not None:
            msg = "give creates_per_minute or creates_per_second, not both"
            raise ValueError(msg)
        return TokenBucket(creates_per_second, burst)
    if creates_per_minute is None:
        return None
    return RateLimiter(creates_per_minute, rate_window)


def refusal(limiter: CreateLimiter | None, now: float) -> Fault | None:
    """The 429 for a create at monotonic time *now*, or None if it is admitted."""
    if limiter is None:
        return None
    wait = limiter.admit(now)
    return None if wait is None else Fault.rate_limited(str(wait))


def quota_headers(limiter: CreateLimiter, now: float) -> dict[str, str]:
    """`ratelimit-limit`, `-remaining` and `-reset` (seconds, decimals) at *now*."""
    remaining, reset = limiter.quota(now)
    limit = limiter.limit if isinstance(limiter, RateLimiter) else limiter.burst
    return {
        "ratelimit-limit": str(limit),
        "ratelimit-remaining": str(remaining),
        "ratelimit-reset": f"{reset:.3f}",
    }


@attrs.define
class InFlightCap:
    """A per-key cap on API requests (creates and queries) in flight at once, as
    gateways built on new-api have: one more gets a 429 without `Retry-After`.
    `None`: no cap."""

    limit: int | None
    _count: int = attrs.field(default=0, init=False)

    async def run(
        self, request: web.Request, handler: Handler, delay: float = 0.0
    ) -> web.StreamResponse:
        """*handler*'s answer to *request*, or the 429 past the cap; the request
        counts as in flight from its arrival, through *delay* (the gateway's own
        time, before it looks at anything)."""
        if self.limit is not None and self._count >= self.limit:
            return crowded(request)
        self._count += 1
        try:
            if delay:
                await asyncio.sleep(delay)
            return await handler(request)
        finally:
            self._count -= 1
