"""`aclose(grace=...)`: a shutdown starts no new paid work and waits a bounded time."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Awaitable
from typing import Any

import anyio
import pytest

from comet_replicate_async import Prediction, PredictionAbandoned, Status
from comet_replicate_async.testing import FakeCometAPI, Latency

from helpers import PRO, SCHNELL, eventually, session_for

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
