"""Session-wide limits: the create pace, the concurrency window and its adaptation.

On MockTransport and a fake clock: the pace is exact and costs no wall-clock time.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import anyio
import pytest

from comet_replicate_async import PollPolicy, RawResponse, Session
from comet_replicate_async._handoff import CreateCalls
from comet_replicate_async._lifecycle import Lifecycle
from comet_replicate_async._limits import ConcurrencyWindow, CreatePacer
from comet_replicate_async._money.spending import Spending
from comet_replicate_async._polling.poller import Poller
from comet_replicate_async._polling.registry import Registry
from comet_replicate_async.testing import MockTransport, mock_reply

from helpers import SCHNELL, FakeClock, MockCalls, eventually

pytestmark = pytest.mark.anyio


async def test_pacer_spaces_callers_evenly_without_a_burst() -> None:
    clock = FakeClock()
    pacer = CreatePacer(per_minute=600, clock=clock)  # one every 0.1 s
    turns: list[float] = []

    async def take_turn() -> None:
        await pacer.wait_turn()
        turns.append(clock.now())

    with anyio.fail_after(5):
        async with anyio.create_task_group() as group:
            for _ in range(6):
                group.start_soon(take_turn)

    # On the pacer's own clock: exact gaps, and no wall-clock wait.
    assert turns == pytest.approx([100 + 0.1 * k for k in range(6)])


async def test_creates_per_minute_paces_every_caller_of_the_session() -> None:
    layer = MockCalls(*[created(f"p{i}") for i in range(10)], creates_per_minute=1200)

    async with creates_on(layer) as creates:
        async with anyio.create_task_group() as group:
            for i in range(10):
                group.start_soon(creates.create, SCHNELL, {"prompt": f"p{i}"})

    # Ten callers at once: each waits its turn, one spacing (60 / 1200 s) after
    # the one before, and no create leaves before its turn. (The first ones
    # start one at a time, the slow start: the pace is the same.)
    assert all(round(wait / 0.05, 6).is_integer() for wait in layer.clock.sleeps)
    sent = sorted(layer.sent_at)
    assert len(sent) == 10
    assert all(at >= 100 + 0.05 * k - 1e-9 for k, at in enumerate(sent))
    assert sent[-1] <= 100 + 0.05 * 10 + 1e-9


async def test_window_hands_slots_over_in_order() -> None:
    window = ConcurrencyWindow(1)
    order: list[int] = []
    await window.acquire()

    async def take(n: int) -> None:
        await window.acquire()
        order.append(n)
        window.release()

    async with anyio.create_task_group() as group:
        for n in range(3):
            group.start_soon(take, n)
        await eventually(lambda: len(window._waiters) == 3)
        window.release()

    assert order == [0, 1, 2]
    assert window.in_use == 0


async def test_a_cancelled_waiter_does_not_leak_its_slot() -> None:
    window = ConcurrencyWindow(1)
    await window.acquire()
    with anyio.move_on_after(0.05):
        await window.acquire()
    window.release()

    assert window.in_use == 0
    with anyio.fail_after(1):
        await window.acquire()


def test_adaptive_window_halves_on_429_and_grows_back_one_at_a_time() -> None:
    window = ConcurrencyWindow(16, adaptive=True)

    window.on_throttled(cooldown=0)
    assert window.limit == 8
    window.on_throttled(cooldown=0)
    assert window.limit == 4
    for _ in range(4):
        window.on_success()
    assert window.limit == 5
    for _ in range(200):
        window.on_success()
    assert window.limit == 16  # never above the configured maximum


def test_a_burst_of_429s_halves_only_once_per_cooldown() -> None:
    clock = FakeClock()
    window = ConcurrencyWindow(16, adaptive=True, clock=clock)
    for _ in range(10):
        window.on_throttled(cooldown=60)
    assert window.limit == 8

    clock.advance(59)
    window.on_throttled(cooldown=60)
    assert window.limit == 8
    clock.advance(1)
    window.on_throttled(cooldown=60)
    assert window.limit == 4


def test_fixed_window_ignores_429s() -> None:
    window = ConcurrencyWindow(16)
    window.on_throttled(cooldown=0)

    assert window.limit == 16


async def test_an_adaptive_window_halves_on_a_refused_create_and_grows_back() -> None:
    refused = mock_reply(429, {"detail": "slow down"}, headers={"Retry-After": "0.1"})
    layer = MockCalls(refused, *[created(f"p{i}") for i in range(41)])

    async with creates_on(layer) as creates:
        first = await creates.create(SCHNELL, {"prompt": "x"})
        assert layer.window.limit == 4
        for i in range(40):
            await creates.create(SCHNELL, {"prompt": f"p{i}"})

    assert first.id == "p0"
    # One slot back per window's worth of creates that went through: 4 → 8.
    assert layer.window.limit == 8


async def test_an_adaptive_session_shows_its_window_in_stats() -> None:
    refused = mock_reply(429, {"detail": "slow down"}, headers={"Retry-After": "0"})
    replies = iter([refused, created("p1")])
    transport = MockTransport(lambda request: next(replies))

    async with Session(
        transport=transport, max_concurrency=8, adaptive_concurrency=True
    ) as session:
        await session.create(SCHNELL, {"prompt": "x"})
        assert session.stats.concurrency_limit == 4


def created(prediction_id: str) -> RawResponse:
    return mock_reply(
        201, {"id": prediction_id, "model": SCHNELL, "status": "starting"}
    )


@contextlib.asynccontextmanager
async def creates_on(layer: MockCalls) -> AsyncIterator[CreateCalls]:
    """A session's create hand-off over `layer`, its sends run by a lifecycle."""
    registry = Registry()
    spending = Spending(layer.transport, base_url="http://mock", cap=None, prices=None)
    life = Lifecycle(layer.transport, registry, layer.window, spending)
    poller = Poller(
        registry,
        layer.calls.query_once,
        policy=PollPolicy(),
        retry=layer.calls.retry,
        on_update=lambda previous, current: None,
        clock=layer.clock,
    )
    await life.open(poller.run)
    try:
        with anyio.fail_after(5):
            yield CreateCalls(
                layer.calls,
                life,
                layer.window,
                spending,
                layer.events.append,
                prefer_wait=None,
                server_deadline=False,
            )
    finally:
        await life.close(abandon=False)
