"""The create hand-off: a caller cancelled with its create in flight leaves at once
and the id is kept (logged, or written to the journal); a caller cancelled before
its create was sent never sends it.

Creates here are answered late (`Fault.delay`: the prediction exists at once,
its reply comes later), so a cancellation lands while a billed create is in
flight.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import pytest
from aiohttp import web

from comet_replicate_async import Prediction, PredictionFuture
from comet_replicate_async._journal.base import input_digest
from comet_replicate_async._journal.sqlite.store import SqliteJournal
from comet_replicate_async.testing import FakeCometAPI, Fault

from helpers import CANCELS, PRO, adds_up, eventually, logged_ids, session_for
from helpers import slow as slow

pytestmark = pytest.mark.anyio

# How late a create is answered: far longer than "at once".
LATE = 1.5
# A caller whose cancellation propagates at once ends well within this.
AT_ONCE = 1.0


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
