"""The call layer's one retry loop and 429 handling, on MockTransport and a fake clock.

No server and no wall-clock waits: every sleep moves the fake clock, so the tests
read the exact waits the layer chose.
"""

from __future__ import annotations

import logging
from typing import Any

import anyio
import pytest

from comet_replicate_async import (
    AmbiguousSubmitError,
    APIConnectionError,
    NotFoundError,
    Prediction,
    RawResponse,
    RetryPolicy,
    Status,
)
from comet_replicate_async.testing import mock_reply

from helpers import SCHNELL, MockCalls

pytestmark = pytest.mark.anyio

POLICY = RetryPolicy(initial_backoff=0.5, max_backoff=4.0, max_attempts=4)


def prediction(status: str) -> dict[str, Any]:
    return {"id": "p1", "model": SCHNELL, "status": status}


def mock_calls(
    *replies: RawResponse | Exception, retry: RetryPolicy = POLICY
) -> MockCalls:
    return MockCalls(*replies, retry=retry)


async def test_a_query_is_retried_on_a_server_error_until_it_answers() -> None:
    layer = mock_calls(
        mock_reply(503, {"detail": "busy"}),
        APIConnectionError("reset", request_sent=True),
        mock_reply(200, prediction("processing")),
    )

    with anyio.fail_after(5):
        got = await layer.calls.get("p1")

    assert got.status == "processing"
    assert len(layer.transport.requests) == 3
    assert layer.counters.retries == 2
    assert [event.kind for event in layer.events] == ["retry", "retry"]
    # Full jitter: each wait within its attempt's cap, and the clock moved by them.
    assert len(layer.clock.sleeps) == 2
    assert 0 <= layer.clock.sleeps[0] <= 0.5
    assert 0 <= layer.clock.sleeps[1] <= 1.0
    assert layer.clock.time == pytest.approx(100 + sum(layer.clock.sleeps))


async def test_a_query_gives_up_after_max_attempts() -> None:
    layer = mock_calls(*[mock_reply(503, {"detail": "busy"})] * 4)

    with anyio.fail_after(5), pytest.raises(Exception, match="busy"):
        await layer.calls.get("p1")

    assert len(layer.transport.requests) == POLICY.max_attempts
    assert layer.counters.retries == POLICY.max_attempts - 1


async def test_a_query_is_not_retried_on_a_final_error() -> None:
    layer = mock_calls(mock_reply(404, {"detail": "no such prediction"}))

    with anyio.fail_after(5), pytest.raises(NotFoundError):
        await layer.calls.get("p1")

    assert len(layer.transport.requests) == 1
    assert layer.clock.sleeps == []


async def test_a_refused_create_waits_the_requested_time_and_pauses_everyone() -> None:
    layer = mock_calls(
        mock_reply(429, {"detail": "slow down"}, headers={"Retry-After": "3"}),
        mock_reply(201, prediction("starting")),
    )

    with anyio.fail_after(5):
        created = await layer.create()

    assert created.id == "p1"
    assert [r.kind for r in layer.transport.requests] == ["create", "create"]
    # The retry waited exactly what the server asked, on the layer's clock.
    assert layer.clock.time - 100 == pytest.approx(3.0)
    assert layer.counters.rate_limited == layer.counters.creates_refused == 1
    assert [event.kind for event in layer.events] == ["rate_limited", "retry"]
    assert layer.events[0].delay == 3.0
    # The adaptive window halved once for the whole session.
    assert layer.window.limit == 4


async def test_a_create_failing_after_it_was_sent_is_ambiguous_and_not_retried() -> (
    None
):
    layer = mock_calls(mock_reply(503, {"detail": "busy"}))

    with anyio.fail_after(5), pytest.raises(AmbiguousSubmitError):
        await layer.create()

    assert len(layer.transport.requests) == 1
    assert layer.clock.sleeps == []


async def test_a_create_that_failed_before_sending_is_retried() -> None:
    layer = mock_calls(
        APIConnectionError("refused", request_sent=False),
        mock_reply(201, prediction("starting")),
    )

    with anyio.fail_after(5):
        created = await layer.create()

    assert created.id == "p1"
    assert len(layer.transport.requests) == 2


async def test_an_earlier_sent_create_makes_a_later_give_up_ambiguous() -> None:
    layer = mock_calls(
        APIConnectionError("reset", request_sent=True),
        mock_reply(429, {"detail": "slow down"}, headers={"Retry-After": "1"}),
        mock_reply(400, {"detail": "bad input"}),
        retry=RetryPolicy(retry_ambiguous_creates=True, initial_backoff=0.5),
    )

    with anyio.fail_after(5), pytest.raises(AmbiguousSubmitError):
        await layer.create()

    assert len(layer.transport.requests) == 3


async def test_no_retry_is_tried_that_could_not_finish_before_the_deadline() -> None:
    layer = mock_calls(
        mock_reply(429, {"detail": "slow down"}, headers={"Retry-After": "10"}),
        mock_reply(201, prediction("starting")),
    )

    with anyio.fail_after(5), pytest.raises(Exception, match="slow down"):
        await layer.create(deadline=layer.clock.now() + 5)

    assert len(layer.transport.requests) == 1
    assert layer.clock.time == 100  # gave up at once, without waiting


async def test_a_refused_create_holds_creates_but_only_slows_polls() -> None:
    layer = mock_calls(
        mock_reply(429, {"detail": "slow down"}, headers={"Retry-After": "2"}),
        mock_reply(200, prediction("processing")),
        mock_reply(201, prediction("starting")),
    )

    with anyio.fail_after(5):
        # Refused, asked to wait 2 s: the deadline lets it give up at once.
        with pytest.raises(Exception, match="slow down"):
            await layer.create(deadline=layer.clock.now() + 1)
        polled = await layer.calls.query_once(
            Prediction(id="p1", status=Status.STARTING)
        )
        await layer.create()

    assert polled.status == "processing"
    assert [r.kind for r in layer.transport.requests] == ["create", "query", "create"]
    # The poll waited only 4 poll intervals (results of running predictions are
    # still seen); the next create waited all the server asked.
    assert layer.sent_at == pytest.approx([100.0, 101.0, 102.0])


async def test_an_unknown_status_is_logged_once_per_session(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="comet_replicate_async")
    replies = [mock_reply(200, prediction("queued-for-gpu"))] * 2
    first, second = mock_calls(*replies), mock_calls(*replies)

    with anyio.fail_after(5):
        for layer in (first, second, first, second):
            got = await layer.calls.get("p1")
            assert got.status == "queued-for-gpu"

    logged = [r for r in caplog.records if "queued-for-gpu" in r.getMessage()]
    assert len(logged) == 2  # once by each session, not once per process
