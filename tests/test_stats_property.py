"""Property: `submitted == succeeded + failed + canceled + in_flight`, always;
and once the session closed, nothing is left reserved and every prediction the
server made is counted as spent.

Each example runs a random mix of calls against FakeCometAPI (creates and polls
sometimes answered late), cancelled in random ways at random moments, and checks
the sum at every event the session reports, around every call, and on a 1 ms
sampler.
"""

from __future__ import annotations

import asyncio
from contextlib import aclosing, suppress

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from comet_replicate_async import Event, PredictionError, Session, SessionStats
from comet_replicate_async.testing import FakeCometAPI, Latency

from helpers import SCHNELL, session_for

KINDS = [
    "run",
    "run cancelled",
    "run task.cancel",
    "run timeout",
    "submit",
    "submit cancelled",
    "batch stopped",
]

Step = tuple[str, float]
# Priced, so that the session keeps books through every cancellation path.
PRICE = 0.001


def adds_up(stats: SessionStats) -> bool:
    return stats.submitted == (
        stats.succeeded + stats.failed + stats.canceled + stats.in_flight
    )


@pytest.mark.slow
@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    steps=st.lists(
        st.tuples(st.sampled_from(KINDS), st.floats(0.0, 0.15)),
        min_size=1,
        max_size=10,
    ),
    limit=st.integers(1, 4),
)
def test_stats_add_up_at_every_moment(steps: list[Step], limit: int) -> None:
    broken: list[SessionStats] = []
    final = anyio.run(_scenario, steps, limit, broken, backend="asyncio")

    assert broken == []
    assert final.in_flight == 0
    assert adds_up(final)


async def _scenario(
    steps: list[Step], limit: int, broken: list[SessionStats]
) -> SessionStats:
    session: Session | None = None

    def check(_: Event | None = None) -> None:
        if session is not None and not adds_up(stats := session.stats):
            broken.append(stats)

    async with FakeCometAPI(
        default_latency=Latency.uniform(0.01, 0.08), slow_rate=0.3, slow_delay=0.05
    ) as fake:
        session = session_for(
            fake, max_concurrency=limit, on_event=check, prices={SCHNELL: PRICE}
        )
        async with session:

            async def sample() -> None:
                while True:
                    check()
                    await anyio.sleep(0.001)

            async def step(kind: str, after: float) -> None:
                assert session is not None
                check()
                with suppress(PredictionError, asyncio.CancelledError):
                    await _call(session, kind, after)
                check()

            with anyio.fail_after(20):
                async with anyio.create_task_group() as sampler:
                    sampler.start_soon(sample)
                    async with anyio.create_task_group() as group:
                        for kind, after in steps:
                            group.start_soon(step, kind, after)
                    sampler.cancel_scope.cancel()
        stats = session.stats
        # Closed: every reservation is settled, and each prediction made is spent.
        assert stats.reserved == 0
        assert stats.spent >= PRICE * fake.stats.created - 1e-9
        return stats


async def _call(session: Session, kind: str, after: float) -> None:
    input = {"prompt": kind}
    if kind == "run":
        await session.run(SCHNELL, input)
    elif kind == "run cancelled":
        with anyio.move_on_after(after):
            await session.run(SCHNELL, input)
    elif kind == "run task.cancel":
        task = asyncio.ensure_future(session.run(SCHNELL, input))
        asyncio.get_running_loop().call_later(after, task.cancel)
        await task
    elif kind == "run timeout":
        await session.run(SCHNELL, input, timeout=after + 0.001)
    elif kind == "submit":
        await session.submit(SCHNELL, input)
    elif kind == "submit cancelled":
        future = session.submit(SCHNELL, input)
        await anyio.sleep(after)
        future.cancel()
        await future
    else:
        items = session.as_completed(SCHNELL, [input] * 3)
        async with aclosing(items):
            with anyio.move_on_after(after):
                async for _ in items:
                    pass
        await items.stop()
