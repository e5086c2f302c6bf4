"""Cancellation from anywhere: no lost id, no hung caller, nothing unwanted created.

Creates here are answered late (`Fault.delay`: the prediction exists at once,
its reply comes later), so a cancellation lands while a billed create is in
flight.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import aclosing
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import pytest
from aiohttp import web

from comet_replicate_async import (
    Prediction,
    PredictionAbandoned,
    PredictionFuture,
    Session,
    SessionStats,
    Status,
)
from comet_replicate_async._journal.base import input_digest
from comet_replicate_async._journal.sqlite.store import SqliteJournal
from comet_replicate_async.testing import FakeCometAPI, Fault, Latency

from helpers import PRO, SCHNELL, eventually, session_for

pytestmark = pytest.mark.anyio

# How late a create is answered: far longer than "at once".
LATE = 1.5
# A caller whose cancellation propagates at once ends well within this.
AT_ONCE = 1.0


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


async def cancel_once_sent(
    how: str, call: Callable[[], Awaitable[Any]], sent: Callable[[], bool]
) -> float:
    """Run `call()` and cancel it `how`, once `sent()`; return the call's seconds."""
    start = time.monotonic()
    if how == "task.cancel":
        task = asyncio.ensure_future(call())
        await eventually(sent)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    elif how == "wait_for":
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(call(), timeout=0.3)
    elif how == "asyncio.timeout":
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.3):
                await call()
    else:
        with anyio.move_on_after(0.3) as scope:
            await call()
        assert scope.cancelled_caught
    return time.monotonic() - start


CANCELS = ["task.cancel", "wait_for", "asyncio.timeout", "anyio scope"]


@pytest.mark.parametrize("how", CANCELS)
@pytest.mark.parametrize("call", ["run", "create", "submitted future"])
async def test_a_create_in_flight_keeps_its_id_and_the_caller_leaves_at_once(
    slow: FakeCometAPI, caplog: pytest.LogCaptureFixture, how: str, call: str
) -> None:
    slow.script("create", Fault.delay(LATE))
    futures: list[PredictionFuture] = []
    async with session_for(slow) as session:

        async def caller() -> Any:
            if call == "run":
                return await session.run(PRO, {"prompt": "x"})
            if call == "create":
                return await session.create(PRO, {"prompt": "x"})
            futures.append(session.submit(PRO, {"prompt": "x"}))
            try:
                return await futures[0]
            finally:
                futures[0].cancel()  # the awaiting task's cancel does not do it

        took = await cancel_once_sent(how, caller, lambda: len(slow.predictions) == 1)
        # The session's task finishes the create and logs the id.
        await eventually(lambda: bool(logged_ids(caplog)), within=LATE + 3)
        stats = session.stats

    assert took < AT_ONCE
    assert logged_ids(caplog) == set(slow.predictions)
    assert adds_up(stats)
    if call != "create":
        assert stats.canceled == 1


async def test_a_web_handler_cancelled_by_its_client_keeps_the_id(
    slow: FakeCometAPI, caplog: pytest.LogCaptureFixture
) -> None:
    # aiohttp.web cancels a handler whose client went away (handler_cancellation).
    slow.script("create", Fault.delay(LATE))
    handler_ended = asyncio.Event()
    async with session_for(slow) as session:

        async def generate(_: web.Request) -> web.Response:
            try:
                prediction = await session.run(PRO, {"prompt": "x"})
            finally:
                handler_ended.set()
            return web.json_response({"id": prediction.id})

        app = web.Application()
        app.router.add_get("/generate", generate)
        runner = web.AppRunner(app, handler_cancellation=True)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        try:
            port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            async with aiohttp.ClientSession() as client:

                async def request() -> None:
                    async with client.get(f"http://127.0.0.1:{port}/generate"):
                        pass

                took = await cancel_once_sent(
                    "task.cancel", request, lambda: len(slow.predictions) == 1
                )
            with anyio.fail_after(AT_ONCE):
                await handler_ended.wait()
            await eventually(lambda: bool(logged_ids(caplog)), within=LATE + 3)
        finally:
            await runner.cleanup()

    assert took < AT_ONCE
    assert logged_ids(caplog) == set(slow.predictions)


async def test_an_id_created_after_its_caller_left_reaches_the_journal(
    slow: FakeCometAPI, tmp_path: Path
) -> None:
    slow.script("create", Fault.delay(LATE))
    async with SqliteJournal(tmp_path / "journal.sqlite3") as journal:
        async with session_for(slow) as session:
            await journal.pending(0, input_digest({"prompt": "x"}))

            async def create() -> Prediction:
                return await session.create(
                    PRO,
                    {"prompt": "x"},
                    on_created=lambda new: journal.created(0, new.id),
                )

            took = await cancel_once_sent(
                "task.cancel", create, lambda: len(slow.predictions) == 1
            )
        # The session's exit waited for the create, and its journal write.
        entry = (await journal.recorded())[0]

    assert took < AT_ONCE
    assert entry.state == "created"
    assert [entry.prediction_id] == list(slow.predictions)


# 2. A cancelled caller that has not sent its create never sends it.


async def test_cancel_right_after_submit_creates_nothing(slow: FakeCometAPI) -> None:
    async with session_for(slow) as session:
        futures = [session.submit(PRO, {"prompt": f"p{n}"}) for n in range(5)]
        assert all(future.cancel() for future in futures)
    # The session waited for every future before closing.

    assert all(future.cancelled() for future in futures)
    assert slow.stats.created == 0
    assert session.stats.canceled == 5
    assert adds_up(session.stats)


async def test_a_caller_cancelled_while_waiting_for_its_pace_sends_nothing(
    slow: FakeCometAPI,
) -> None:
    async with session_for(slow, creates_per_minute=60) as session:
        await session.create(PRO, {"prompt": "first"})
        with anyio.move_on_after(0.2):
            await session.create(PRO, {"prompt": "due a second later"})
        with anyio.fail_after(5):
            await session.create(PRO, {"prompt": "takes the next turn"})

    assert slow.stats.created == 2


async def test_a_caller_cancelled_before_its_create_sends_nothing(
    slow: FakeCometAPI,
) -> None:
    async with session_for(slow) as session:
        with anyio.CancelScope() as scope:
            scope.cancel()
            await session.run(PRO, {"prompt": "x"})
        with anyio.CancelScope() as scope:
            scope.cancel()
            await session.create(PRO, {"prompt": "x"})
        stats = session.stats

    assert slow.stats.created == 0
    assert stats.canceled == 1
    assert adds_up(stats)


# 3. A normal exit waits for every caller; an exception exit ends every caller.


async def test_a_normal_exit_waits_for_callers_in_other_tasks() -> None:
    results: list[Any] = []
    async with FakeCometAPI(default_latency=Latency.constant(1.0)) as fake:

        async def caller(session: Session, n: int) -> None:
            if n % 2:
                results.append(await session.run(SCHNELL, {"prompt": f"p{n}"}))
            else:
                created = await session.create(SCHNELL, {"prompt": f"p{n}"})
                results.append(await session.wait(created.id))

        # No caller is still pending 10 s after the session's exit.
        with anyio.fail_after(10):
            async with anyio.create_task_group() as callers:
                async with session_for(fake) as session:
                    for n in range(4):
                        callers.start_soon(caller, session, n)
                    await eventually(lambda: len(fake.predictions) == 4)
                # Left normally: each caller has its result by now.
                assert len(results) == 4

    assert [result.status for result in results] == [Status.SUCCEEDED] * 4


async def test_an_exception_exit_ends_every_caller_with_its_id(
    slow: FakeCometAPI,
) -> None:
    errors: dict[str, BaseException] = {}

    async def catch(name: str, call: Awaitable[Any]) -> None:
        try:
            await call
        except Exception as error:
            errors[name] = error

    async def fail_inside(session: Session, callers: anyio.abc.TaskGroup) -> None:
        async with session:
            callers.start_soon(catch, "run", session.run(PRO, {"prompt": "r"}))
            known = await session.create(PRO, {"prompt": "w"})
            callers.start_soon(catch, "wait", session.wait(known.id))
            await eventually(lambda: session.stats.watched == 2)
            # More callers wait for a slot (max_concurrency=1 is taken).
            callers.start_soon(catch, "queued", session.run(PRO, {"prompt": "q"}))
            callers.start_soon(catch, "batch", session.gather(PRO, [{"prompt": "b"}]))
            await eventually(lambda: session.stats.in_flight == 2)
            await anyio.wait_all_tasks_blocked()
            raise KeyError("user bug")

    async with anyio.create_task_group() as callers:
        session = session_for(slow, max_concurrency=1)
        with pytest.raises(KeyError):
            await fail_inside(session, callers)
        with anyio.fail_after(10):
            await eventually(lambda: len(errors) == 4)

    assert all(isinstance(error, PredictionAbandoned) for error in errors.values())
    ids = {
        name: getattr(error, "prediction_id", None) for name, error in errors.items()
    }
    assert ids["queued"] is None
    assert ids["batch"] is None
    assert {ids["run"], ids["wait"]} == set(slow.predictions)


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
