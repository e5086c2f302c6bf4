"""`PredictionFuture` as the runner drives it: `attach`, `created`, `settle`."""

from __future__ import annotations

import asyncio

import anyio
import pytest

from comet_replicate_async import Prediction, PredictionFuture, Status

pytestmark = pytest.mark.anyio

MODEL = "black-forest-labs/flux-schnell"


def prediction(status: Status) -> Prediction:
    return Prediction(id="p1", status=status, model=MODEL)


async def test_a_scope_attached_after_cancel_is_cancelled_at_once() -> None:
    future = PredictionFuture(MODEL, {"prompt": "a fox"})
    future.cancel()

    scope = anyio.CancelScope()
    future.attach(scope)

    assert scope.cancel_called
    assert future.cancelled()


async def test_cancel_cancels_the_attached_scope() -> None:
    future = PredictionFuture(MODEL, {"prompt": "a fox"})
    scope = anyio.CancelScope()
    future.attach(scope)
    assert not scope.cancel_called

    assert future.cancel()
    assert scope.cancel_called


async def test_created_shows_the_prediction_and_settle_ends_it_once() -> None:
    future = PredictionFuture(MODEL, {"prompt": "a fox"})
    future.created(prediction(Status.STARTING))
    assert (future.id, future.status, future.done()) == ("p1", Status.STARTING, False)

    future.settle(prediction(Status.SUCCEEDED), None)
    future.settle(None, RuntimeError("a second ending is ignored"))

    assert future.done()
    assert (await future).status is Status.SUCCEEDED
    assert future.exception() is None


async def test_a_result_that_races_a_cancel_is_not_handed_out() -> None:
    future = PredictionFuture(MODEL, {"prompt": "a fox"})
    future.cancel()
    future.settle(prediction(Status.SUCCEEDED), None)

    with pytest.raises(asyncio.CancelledError):
        await future.wait()
