"""Shared test helpers (plain functions, no fixtures)."""

from __future__ import annotations

import heapq
import itertools
import logging
import math
import re
import sqlite3
from collections.abc import AsyncIterator, Callable
from contextlib import closing
from pathlib import Path
from typing import Any

import anyio
import attrs
import pytest

from comet_replicate_async import (
    Event,
    Flux11Pro,
    FluxDev,
    FluxSchnell,
    PollPolicy,
    Prediction,
    RawResponse,
    RequestSpec,
    RetryPolicy,
    Session,
    SessionStats,
)
from comet_replicate_async._calls import Calls
from comet_replicate_async._inputs.base import FluxInput
from comet_replicate_async._journal.sqlite.format import SCHEMA_VERSION
from comet_replicate_async._limits import ConcurrencyWindow, CreatePacer
from comet_replicate_async._sansio import build_create_request
from comet_replicate_async._stats import StatsCounter
from comet_replicate_async.testing import FakeCometAPI, Latency, MockTransport

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


# Predictions that finish in a few polls.
QUICK = Latency.uniform(0.02, 0.08)


@pytest.fixture
async def fake() -> AsyncIterator[FakeCometAPI]:
    async with FakeCometAPI(default_latency=QUICK) as server:
        yield server


# Every way a caller can be cancelled: its task, a timeout, a cancel scope.
CANCELS = ["task.cancel", "wait_for", "asyncio.timeout", "anyio scope"]


@pytest.fixture
async def slow() -> AsyncIterator[FakeCometAPI]:
    async with FakeCometAPI(default_latency=Latency.constant(30)) as server:
        yield server


def logged_ids(caplog: pytest.LogCaptureFixture) -> set[str]:
    """Ids named in a WARNING line that says how to pick them up again."""
    return {
        found
        for record in caplog.records
        if record.levelno == logging.WARNING
        for found in re.findall(r"session\.wait\('(\w+)'\)", record.getMessage())
    }


def adds_up(stats: SessionStats) -> bool:
    return stats.submitted == (
        stats.succeeded + stats.failed + stats.canceled + stats.in_flight
    )


class MockCalls:
    """A call layer wired as a session wires it, on a `FakeClock`.

    Its `MockTransport` answers with `replies` in turn (an exception is raised).
    """

    def __init__(
        self,
        *replies: RawResponse | Exception,
        retry: RetryPolicy = FAST_RETRY,
        creates_per_minute: float | None = None,
    ) -> None:
        self.clock = FakeClock()
        self.events: list[Event] = []
        self.counters = StatsCounter()
        self.window = ConcurrencyWindow(8, adaptive=True, clock=self.clock)
        self.pacer = CreatePacer(creates_per_minute, clock=self.clock)
        answers = list(replies)
        # When each request reached the transport, on the clock.
        self.sent_at: list[float] = []

        def handler(request: RequestSpec) -> RawResponse:
            self.sent_at.append(self.clock.now())
            answer = answers.pop(0)
            if isinstance(answer, Exception):
                raise answer
            return answer

        self.transport = MockTransport(handler)
        self.calls = Calls(
            self.transport,
            retry=retry,
            poll=PollPolicy(),
            window=self.window,
            pacer=self.pacer,
            counters=self.counters,
            emit=self.events.append,
            clock=self.clock,
        )

    async def create(self, deadline: float = math.inf) -> Prediction:
        spec = build_create_request(SCHNELL, {"prompt": "x"})
        return await self.calls.create(
            SCHNELL,
            {"prompt": "x"},
            lambda: self.calls.send(spec),
            deadline=deadline,
        )


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
        self._timers: list[Timer] = []
        self._order = itertools.count()

    def now(self) -> float:
        return self.time

    def advance(self, seconds: float) -> None:
        """Move the time on, running the timers that fall due on the way, in order."""
        until = self.time + seconds
        while self._timers and self._timers[0].when <= until:
            timer = heapq.heappop(self._timers)
            self.time = max(self.time, timer.when)
            if not timer.cancelled:
                timer.callback(*timer.args)
        self.time = until

    def next_timer_at(self) -> float | None:
        """When the soonest live timer is due; None without one."""
        while self._timers and self._timers[0].cancelled:
            heapq.heappop(self._timers)
        return self._timers[0].when if self._timers else None

    async def run_timers_until(self, done: Callable[[], bool]) -> None:
        """Let the tasks settle, jump to the next timer, again, until `done()`."""
        with anyio.fail_after(5):
            while True:
                await anyio.wait_all_tasks_blocked()
                if done():
                    return
                when = self.next_timer_at()
                assert when is not None, "nothing left to wait for"
                self.advance(max(when - self.time, 0.0))

    def call_at(self, when: float, callback: Callable[..., Any], *args: Any) -> Timer:
        timer = Timer(when, next(self._order), callback, args)
        heapq.heappush(self._timers, timer)
        return timer

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


@attrs.define(order=True)
class Timer:
    """A `FakeClock` timer, in the order it falls due."""

    when: float
    order: int
    callback: Callable[..., Any] = attrs.field(order=False)
    args: tuple[Any, ...] = attrs.field(order=False)
    cancelled: bool = attrs.field(default=False, order=False)

    def cancel(self) -> None:
        self.cancelled = True


#: A near miss of flux-schnell: a model the gateway (and the fake) does not serve.
TYPO = "black-forest-labs/flux-schnel"


#: Three typed classes, for batches of several models.
MODELS = (FluxSchnell, FluxDev, Flux11Pro)


def mixed(prompts: int) -> list[FluxInput]:
    """Every prompt on each of the three models, prompt by prompt."""
    return [kind(f"a lighthouse, take {n}") for n in range(prompts) for kind in MODELS]


def newer_journal(path: Path) -> None:
    """A journal of ours, as a newer version would write it."""
    with closing(sqlite3.connect(path)) as connection:
        connection.execute("create table meta (key text primary key, value text)")
        connection.execute("create table items (key text primary key)")
        connection.execute(f"pragma user_version = {SCHEMA_VERSION + 1}")
        connection.commit()
