"""Cancellation from anywhere: no lost id, no hung caller, nothing unwanted created.

Creates here are answered late (`Fault.delay`: the prediction exists at once,
its reply comes later), so a cancellation lands while a billed create is in
flight.
"""

from __future__ import annotations

import asyncio
import os
import random
from contextlib import aclosing

import anyio
import pytest

from comet_replicate_async import PredictionAbandoned
from comet_replicate_async.testing import FakeCometAPI, Latency

from helpers import CANCELS, PRO, SCHNELL, adds_up, eventually, logged_ids, session_for
from helpers import slow as slow

pytestmark = pytest.mark.anyio


# 4. Stopping a batch early loses nothing.


@pytest.mark.parametrize("stop", ["aclosing and break", "stop()"])
async def test_stopping_a_batch_reports_every_finished_unread_item(
    caplog: pytest.LogCaptureFixture, stop: str
) -> None:
    async with FakeCometAPI(default_latency=Latency.constant(0.05)) as fake:
        async with session_for(fake) as session:
            items = session.as_completed(
                SCHNELL, [{"prompt": f"p{n}"} for n in range(9)]
            )
            first = await anext(items)
            await eventually(lambda: session.stats.succeeded == 9)
            if stop == "stop()":
                unread = await items.stop()
            else:
                async with aclosing(items):
                    pass
                unread = []

    assert first.prediction is not None
    others = set(fake.predictions) - {first.prediction.id}
    assert len(others) == 8
    assert logged_ids(caplog) == others
    if stop == "stop()":
        assert [item.index for item in unread] == sorted(set(range(9)) - {first.index})
        assert {item.prediction.id for item in unread if item.prediction} == others
        assert all(item.ok for item in unread)


async def test_stop_hands_back_running_items_with_their_ids(
    slow: FakeCometAPI, caplog: pytest.LogCaptureFixture
) -> None:
    async with session_for(slow) as session:
        items = session.as_completed(PRO, [{"prompt": f"p{n}"} for n in range(3)])
        reader = asyncio.ensure_future(anext(items))
        await eventually(lambda: session.stats.watched == 3)
        reader.cancel()
        with pytest.raises(asyncio.CancelledError):
            await reader
        unread = await items.stop()
        assert await items.stop() == []
        stats = session.stats

    assert {item.prediction.id for item in unread if item.prediction} == set(
        slow.predictions
    )
    assert all(isinstance(item.error, PredictionAbandoned) for item in unread)
    assert logged_ids(caplog) == set(slow.predictions)
    assert stats.canceled == 3
    assert adds_up(stats)


# 5. Stats add up.


async def test_a_caller_cancelled_while_waiting_for_a_slot_is_counted(
    slow: FakeCometAPI,
) -> None:
    async with session_for(slow, max_concurrency=1) as session:
        first = session.submit(PRO, {"prompt": "holds the slot"})
        await eventually(lambda: first.id is not None)
        with anyio.move_on_after(0.05):
            await session.run(PRO, {"prompt": "waits for the slot"})
        mid = session.stats
        first.cancel()
    end = session.stats

    assert mid.in_flight == 1
    assert mid.canceled == 1
    assert slow.stats.created == 1  # the caller that waited for a slot sent nothing
    assert adds_up(mid)
    assert end.in_flight == 0
    assert end.canceled == 2
    assert adds_up(end)


# A randomized stress test: hundreds of run() calls cancelled at random moments.

STRESS_CALLS = 300


async def test_random_cancels_lose_no_id_and_stats_add_up(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # CANCEL_STRESS_SEED replays a failure; each run draws a new seed otherwise.
    seed = int(os.environ.get("CANCEL_STRESS_SEED") or random.randrange(2**32))
    rng = random.Random(seed)
    results: set[str] = set()
    # Half the creates and polls are answered late (created first, reply later).
    async with FakeCometAPI(
        default_latency=Latency.uniform(0.02, 0.3),
        slow_rate=0.5,
        slow_delay=0.1,
        seed=seed,
    ) as fake:
        async with session_for(fake, max_concurrency=40) as session:

            async def call(how: str, after: float) -> None:
                run = session.run(SCHNELL, {"prompt": f"p{rng.random()}"})
                try:
                    if how == "task.cancel":
                        task = asyncio.ensure_future(run)
                        asyncio.get_running_loop().call_later(after, task.cancel)
                        results.add((await task).id)
                    elif how == "wait_for":
                        results.add((await asyncio.wait_for(run, after)).id)
                    elif how == "asyncio.timeout":
                        async with asyncio.timeout(after):
                            results.add((await run).id)
                    else:
                        with anyio.move_on_after(after):
                            results.add((await run).id)
                except (asyncio.CancelledError, TimeoutError):
                    pass
                assert adds_up(session.stats)

            with anyio.fail_after(30):
                async with anyio.create_task_group() as group:
                    for _ in range(STRESS_CALLS):
                        how = rng.choice(CANCELS)
                        group.start_soon(call, how, rng.uniform(0.0, 0.6))
        stats = session.stats

    context = f"seed {seed}: {stats}"
    assert stats.submitted == STRESS_CALLS, context
    assert stats.in_flight == 0, context
    assert adds_up(stats), context
    assert stats.succeeded == len(results), context
    assert stats.canceled > 0, context
    # Every prediction created was handed to its caller or logged with its id.
    assert set(fake.predictions) == results | logged_ids(caplog), context
    assert not results & logged_ids(caplog), context
