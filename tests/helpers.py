"""Shared test helpers (plain functions, no fixtures)."""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from typing import Any

import anyio

from comet_replicate_async import RetryPolicy, Session
from comet_replicate_async.testing import FakeCometAPI

SCHNELL = "black-forest-labs/flux-schnell"
PRO = "black-forest-labs/flux-pro"

# Retries in tests: quick, but the same decisions as the defaults.
FAST_RETRY = RetryPolicy(initial_backoff=0.01, max_backoff=0.05)


def session_for(fake: FakeCometAPI, **options: Any) -> Session:
    """A session pointed at the fake, with quick retries unless told otherwise."""
    options.setdefault("retry", FAST_RETRY)
    return Session(fake.api_key, base_url=fake.base_url, **options)


async def eventually(condition: Callable[[], bool], *, within: float = 5.0) -> None:
    """Wait until `condition()` holds, failing the test after `within` seconds."""
    with anyio.fail_after(within):
        # The state belongs to other tasks and has no event of its own to await.
        while not condition():  # noqa: ASYNC110
            await anyio.sleep(0.005)


class FakeClock:
    """A clock that moves only when told to, or when its sleepers need it to.

    A sleep lets the other ready tasks run (and go to sleep themselves), then moves
    the time to the soonest wake-up and wakes that sleeper: sleepers wake in order
    of their wake-up times, at exactly those times, in no wall-clock time.
    """

    def __init__(self, start: float = 100.0) -> None:
        self.time = start
        self.sleeps: list[float] = []
        self._sleepers: list[tuple[float, int, anyio.Event]] = []
        self._order = itertools.count()

    def now(self) -> float:
        return self.time

    def advance(self, seconds: float) -> None:
        self.time += seconds

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        woken = anyio.Event()
        wake_at = self.time + max(seconds, 0.0)
        heapq.heappush(self._sleepers, (wake_at, next(self._order), woken))
        # Tasks started alongside this one take their turns (and sleeps) first.
        await anyio.lowlevel.checkpoint()
        await anyio.lowlevel.checkpoint()
        soonest, _, sleeper = heapq.heappop(self._sleepers)
        self.time = max(self.time, soonest)
        if sleeper is not woken:
            # Another's turn first: it runs on, and a later sleep wakes this one.
            sleeper.set()
            await woken.wait()
