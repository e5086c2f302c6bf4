"""One prediction from a slot to its outcome: `run`, `wait` and `submit`.

What `Runner` does for each call: it takes a slot of the window (never past the
deadline), creates, waits for the poller to resolve the prediction, and turns a
failed or aborted one into its error; a submitted future can be cancelled.
"""

from __future__ import annotations

import asyncio

import anyio
import pytest

from comet_replicate_async import (
    PredictionCanceled,
    PredictionFailed,
    PredictionTimeout,
    Status,
)
from comet_replicate_async.testing import FakeCometAPI, Latency

from helpers import PRO, QUICK, SCHNELL, eventually, session_for
from helpers import fake as fake

pytestmark = pytest.mark.anyio


async def test_run_returns_the_succeeded_prediction(fake: FakeCometAPI) -> None:
    async with session_for(fake) as session:
        schnell = await session.run(SCHNELL, {"prompt": "a boat", "num_outputs": 2})
        pro = await session.run(PRO, {"prompt": "a boat"})

    assert schnell.status is Status.SUCCEEDED
    assert len(schnell.output_urls) == 2
    assert len(pro.output_urls) == 1
    assert isinstance(pro.output, str)
    assert session.stats.succeeded == 2
    assert session.stats.in_flight == 0


async def test_failed_and_aborted_predictions_raise_their_errors() -> None:
    async with FakeCometAPI(default_latency=QUICK, failure_rate=1.0) as failing:
        async with session_for(failing) as session:
            with pytest.raises(PredictionFailed) as failed:
                await session.run(SCHNELL, {"prompt": "x"})
    async with FakeCometAPI(default_latency=QUICK, abort_rate=1.0) as aborting:
        async with session_for(aborting) as session:
            with pytest.raises(PredictionCanceled) as aborted:
                await session.run(SCHNELL, {"prompt": "x"})

    assert failed.value.prediction is not None
    assert "NSFW" in (failed.value.prediction.error or "")
    assert aborted.value.prediction is not None
    assert aborted.value.prediction.status is Status.ABORTED


async def test_deadline_raises_timeout_with_id_and_status_and_drops_the_entry() -> None:
    async with FakeCometAPI(default_latency=Latency.constant(30)) as slow:
        async with session_for(slow) as session:
            with pytest.raises(PredictionTimeout) as caught:
                await session.run(PRO, {"prompt": "slow"}, timeout=0.3)
            assert session.stats.watched == 0

    error = caught.value
    assert error.prediction_id in slow.predictions
    assert error.last_status in (Status.STARTING, Status.PROCESSING)
    assert "billed" in str(error)


async def test_future_cancel_stops_local_tracking(fake: FakeCometAPI) -> None:
    async with FakeCometAPI(default_latency=Latency.constant(30)) as slow:
        async with session_for(slow) as session:
            future = session.submit(PRO, {"prompt": "x"})
            await eventually(lambda: future.id is not None)
            assert future.cancel()
            with pytest.raises(asyncio.CancelledError):
                await future
            assert future.cancelled()
            assert session.stats.watched == 0


async def test_wait_by_id(fake: FakeCometAPI) -> None:
    async with session_for(fake) as session:
        created = await session.create(SCHNELL, {"prompt": "x"})
        done = await session.wait(created.id)

    assert done.id == created.id
    assert done.status is Status.SUCCEEDED


async def test_a_deadline_that_passes_waiting_for_a_slot_creates_nothing() -> None:
    async with FakeCometAPI(default_latency=Latency.constant(1.0)) as slow:
        async with session_for(slow, max_concurrency=1) as session:
            outcomes: list[BaseException] = []

            async def run_one(n: int) -> None:
                # The first holds the only slot past the others' deadlines: with
                # equal ones, the slot it frees at its deadline could reach the next
                # run a moment before that run's own, which would then create.
                timeout = 0.6 if n == 0 else 0.3
                try:
                    await session.run(PRO, {"prompt": f"p{n}"}, timeout=timeout)
                except PredictionTimeout as error:
                    outcomes.append(error)

            async with anyio.create_task_group() as group:
                for n in range(3):
                    group.start_soon(run_one, n)

    assert slow.stats.created == 1
    ids = sorted(
        error.prediction_id or ""
        for error in outcomes
        if isinstance(error, PredictionTimeout)
    )
    assert len(ids) == 3
    assert ids[:2] == ["", ""]  # two never started: nothing created, nothing billed


async def test_cancelled_is_true_as_soon_as_cancel_returns(fake: FakeCometAPI) -> None:
    async with session_for(fake) as session:
        future = session.submit(SCHNELL, {"prompt": "x"})
        assert future.cancel()
        assert future.cancelled()
        with pytest.raises(asyncio.CancelledError):
            await future
