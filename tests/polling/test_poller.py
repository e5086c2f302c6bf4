"""The poller on MockTransport and a fake clock: its schedule, with no wall-clock wait.

The clock moves only from one timer to the next, so each query's time is exactly
when the schedule put it.
"""

from __future__ import annotations

import itertools
from typing import Any

import anyio
import pytest

from comet_replicate_async import (
    PollPolicy,
    Prediction,
    RawResponse,
    RetryPolicy,
    ServerError,
    Status,
)
from comet_replicate_async._polling.poller import Poller
from comet_replicate_async._polling.registry import Registry
from comet_replicate_async.testing import mock_reply

from helpers import SCHNELL, MockCalls

pytestmark = pytest.mark.anyio

# No jitter, no coalescing: each poll falls exactly where the schedule says.
STEADY = PollPolicy(
    min_interval=2.0,
    max_interval=2.0,
    jitter=0.0,
    coalesce=0.0,
    max_consecutive_failures=3,
)


def reply(status: str, id: str = "p1") -> RawResponse:
    return mock_reply(200, {"id": id, "model": SCHNELL, "status": status})


class Polled:
    """A poller over a `MockCalls`, the times of its queries on the fake clock."""

    def __init__(
        self, *replies: RawResponse | Exception, policy: PollPolicy = STEADY
    ) -> None:
        self.layer = MockCalls(*replies, retry=RetryPolicy(max_attempts=2))
        self.clock = self.layer.clock
        self.queried_at: list[float] = []
        self.poller = Poller(
            Registry(),
            self._query,
            policy=policy,
            retry=self.layer.calls.retry,
            on_update=lambda previous, current: None,
            clock=self.clock,
        )

    async def _query(self, known: Prediction) -> Prediction:
        self.queried_at.append(self.clock.now())
        return await self.layer.calls.query_once(known)

    async def outcome(self, prediction_id: str = "p1") -> Any:
        async with anyio.create_task_group() as group:
            await group.start(self.poller.run)
            entry = self.poller.watch(
                Prediction(id=prediction_id, status=Status.STARTING)
            )
            await self.clock.run_timers_until(entry.outcome.done)
            group.cancel_scope.cancel()
        return entry.outcome


async def test_polls_follow_the_schedule_on_the_clock() -> None:
    polled = Polled(reply("starting"), reply("processing"), reply("succeeded"))

    outcome = await polled.outcome()

    assert outcome.result().status == "succeeded"
    start = 100.0
    assert polled.queried_at == pytest.approx([start + 2, start + 4, start + 6])


async def test_a_lone_prediction_is_polled_again_until_it_finishes() -> None:
    # Regression: a reschedule with nothing else due must wake the idle dispatcher.
    polled = Polled(*[reply("processing")] * 4, reply("succeeded"))

    outcome = await polled.outcome()

    assert outcome.result().status == "succeeded"
    assert len(polled.queried_at) == 5
    assert polled.queried_at == sorted(set(polled.queried_at))  # one at a time


async def test_a_failed_poll_is_retried_on_the_schedule_then_succeeds() -> None:
    polled = Polled(
        mock_reply(503, {"detail": "busy"}),
        mock_reply(503, {"detail": "busy"}),
        reply("succeeded"),
    )

    outcome = await polled.outcome()

    assert outcome.result().status == "succeeded"
    gaps = [b - a for a, b in itertools.pairwise(polled.queried_at)]
    # A failure waits the policy's backoff, but never less than min_interval.
    assert all(gap >= STEADY.min_interval for gap in gaps)
    assert len(polled.queried_at) == 3


async def test_polls_give_up_after_max_consecutive_failures() -> None:
    polled = Polled(*[mock_reply(503, {"detail": "busy"})] * 3)

    outcome = await polled.outcome()

    assert isinstance(outcome.exception(), ServerError)
    assert len(polled.queried_at) == STEADY.max_consecutive_failures


async def test_a_final_error_ends_the_polling_at_once() -> None:
    polled = Polled(mock_reply(401, {"detail": "bad key"}))

    outcome = await polled.outcome()

    assert outcome.exception() is not None
    assert polled.queried_at == [102.0]
