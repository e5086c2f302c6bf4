"""A session's end: a normal exit waits for every caller, an exception exit ends
every caller with its id, and `aclose(grace=...)` starts no new paid work and
waits a bounded time."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Awaitable
from typing import Any

import anyio
import pytest

from comet_replicate_async import Prediction, PredictionAbandoned, Session, Status
from comet_replicate_async.testing import FakeCometAPI, Latency

from helpers import PRO, SCHNELL, eventually, session_for
from helpers import slow as slow

pytestmark = pytest.mark.anyio


async def test_a_shutdown_starts_nothing_new_and_abandons_after_the_grace(
    caplog: pytest.LogCaptureFixture,
) -> None:
    outcomes: dict[str, Any] = {}

    async def keep(name: str, call: Awaitable[Any]) -> None:
        try:
            outcomes[name] = await call
        except Exception as error:
            outcomes[name] = error

    async with FakeCometAPI(default_latency=Latency.constant(30)) as slow:
        async with anyio.create_task_group() as callers:
            session = session_for(slow, max_concurrency=2)
            await session.__aenter__()
            for n in range(2):
                callers.start_soon(
                    keep, f"running {n}", session.run(PRO, {"prompt": f"p{n}"})
                )
            await eventually(lambda: len(slow.predictions) == 2)
            for n in range(3):
                callers.start_soon(
                    keep, f"queued {n}", session.run(PRO, {"prompt": f"p{n}"})
                )
            future = session.submit(PRO, {"prompt": "future"})
            batch = session.gather(PRO, [{"prompt": f"b{n}"} for n in range(50)])
            callers.start_soon(keep, "batch", batch)
            await anyio.wait_all_tasks_blocked()
            started = time.monotonic()
            await session.aclose(grace=0.5)
            took = time.monotonic() - started
        created = set(slow.predictions)

    # Nothing new was created; the two running ones were waited for, then abandoned.
    assert len(created) == 2
    assert 0.5 <= took < 3
    for n in range(2):
        error = outcomes[f"running {n}"]
        assert isinstance(error, PredictionAbandoned)
        assert error.prediction_id in created
    for name in [f"queued {n}" for n in range(3)] + ["batch"]:
        assert isinstance(outcomes[name], PredictionAbandoned), name
        assert outcomes[name].prediction_id is None
        assert "not started: the session is closing" in str(outcomes[name])
    assert isinstance(future.exception(), PredictionAbandoned)
    logged = {
        found
        for record in caplog.records
        if record.levelno == logging.WARNING
        for found in re.findall(r"\w{20,}", record.getMessage())
    }
    assert created <= logged
    stats = session.stats
    assert stats.in_flight == 0
    assert stats.submitted == stats.succeeded + stats.failed + stats.canceled


async def test_predictions_that_finish_within_the_grace_are_delivered() -> None:
    results: list[Prediction] = []
    async with FakeCometAPI(default_latency=Latency.constant(0.3)) as fake:
        async with anyio.create_task_group() as callers:
            session = session_for(fake)
            await session.__aenter__()

            async def call(n: int) -> None:
                results.append(await session.run(SCHNELL, {"prompt": f"p{n}"}))

            for n in range(3):
                callers.start_soon(call, n)
            await eventually(lambda: len(fake.predictions) == 3)
            started = time.monotonic()
            await session.aclose(grace=10)
            took = time.monotonic() - started

    assert [result.status for result in results] == [Status.SUCCEEDED] * 3
    assert took < 5


async def test_a_negative_grace_is_refused(fake_comet: FakeCometAPI) -> None:
    async with session_for(fake_comet) as session:
        with pytest.raises(ValueError, match="grace"):
            await session.aclose(grace=-1)


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
