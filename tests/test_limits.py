"""Session-wide limits: the create pace, the concurrency window and its adaptation."""

from __future__ import annotations

import anyio
import pytest

from comet_replicate_async._limits import ConcurrencyWindow, CreatePacer
from comet_replicate_async.testing import FakeCometAPI, Fault, Latency

from helpers import SCHNELL, FakeClock, eventually, session_for

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


async def test_creates_per_minute_paces_the_whole_session() -> None:
    async with FakeCometAPI(default_latency=Latency.constant(0.01)) as fake:
        async with session_for(
            fake, creates_per_minute=1200, max_concurrency=50
        ) as session:
            await session.gather(SCHNELL, [{"prompt": f"p{i}"} for i in range(10)])
        creates = sorted(
            r.monotonic for r in fake.stats.requests_log if r.route == "create"
        )

    spacing = 60 / 1200
    assert len(creates) == 10
    # The k-th create never leaves before k spacings after the first's turn. A gap
    # between two arrivals also holds each one's scheduling delay, which a loaded
    # machine stretches and shrinks; measured from the first arrival only its delay
    # counts, and two spacings cover it.
    assert all(at - creates[0] >= (k - 2) * spacing for k, at in enumerate(creates))


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


async def test_adaptive_session_shows_its_window_in_stats() -> None:
    async with FakeCometAPI(default_latency=Latency.constant(0.01)) as fake:
        fake.script("create", Fault.rate_limited("0.1"))
        async with session_for(
            fake, max_concurrency=8, adaptive_concurrency=True
        ) as session:
            first = await session.run(SCHNELL, {"prompt": "x"})
            assert session.stats.concurrency_limit == 4
            await session.gather(SCHNELL, [{"prompt": f"p{i}"} for i in range(40)])

    assert first.status == "succeeded"
    assert session.stats.concurrency_limit == 8
