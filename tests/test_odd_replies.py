"""Replies a real gateway can send and our fake normally does not, over real HTTP.

Each of the first seven tests is one case that used to hang, crash the session,
lose a result or misread a value.
"""

from __future__ import annotations

import inspect
import logging
import math
import time
from datetime import UTC, datetime
from typing import Any

import anyio
import pytest

from comet_replicate_async import (
    AmbiguousSubmitError,
    CometReplicateError,
    PollPolicy,
    Prediction,
    PredictionTimeout,
    RequestTimeout,
    RetryPolicy,
    Session,
    Status,
    UnexpectedResponseError,
)
from comet_replicate_async._polling.poller import Poller
from comet_replicate_async._polling.registry import Registry
from comet_replicate_async.testing import FakeCometAPI, Fault, PredictionRecord

from helpers import PRO, SCHNELL, session_for

pytestmark = pytest.mark.anyio

URL = "https://replicate.delivery/xezq/abc/out-0.webp"
AWARE = datetime(2026, 3, 12, 11, 27, 18, tzinfo=UTC)


def succeeded(prediction_id: str, **fields: Any) -> dict[str, Any]:
    """A succeeded reply in the documented shape, with `fields` changed."""
    return {
        "id": prediction_id,
        "model": PRO,
        "version": "hidden",
        "input": {"prompt": "x"},
        "output": URL,
        "data_removed": False,
        "error": None,
        "status": "succeeded",
        "created_at": "2026-03-12T11:27:18.258Z",
        "started_at": "2026-03-12T11:27:18.9Z",
        "completed_at": "2026-03-12T11:27:21.5Z",
        "urls": {"get": f"https://api.replicate.com/v1/predictions/{prediction_id}"},
        **fields,
    }


async def wait_through(fake: FakeCometAPI, **fields: Any) -> Prediction:
    """Wait for a new prediction whose every poll answers `succeeded(id, **fields)`."""
    async with session_for(fake) as session:
        created = await session.create(PRO, {"prompt": "x"})
        # On every poll, as a gateway with that habit would: 40 outlast the wait.
        reply = Fault.status(200, body=succeeded(created.id, **fields))
        fake.script("query", *[reply] * 40)
        with anyio.fail_after(10):
            return await session.wait(created, timeout=3)


# 1. A poll reply naming another id


async def test_a_poll_reply_naming_another_id_is_read_as_the_one_asked_for(
    fake_comet: FakeCometAPI, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="comet_replicate_async")
    fake_comet.script(
        "query", Fault.status(200, body={"id": "someoneelse", "status": "processing"})
    )

    async with session_for(fake_comet) as session:
        with anyio.fail_after(10):
            prediction = await session.run(PRO, {"prompt": "x"})

    assert prediction.status is Status.SUCCEEDED
    assert prediction.id in fake_comet.predictions
    warnings = [
        r.getMessage() for r in caplog.records if "someoneelse" in r.getMessage()
    ]
    assert len(warnings) == 1
    assert prediction.id in warnings[0]


# 2. `Z` on one timestamp, no zone on another


@pytest.mark.slow
async def test_a_zoned_and_a_naive_timestamp_in_one_reply_do_not_crash_the_session(
    fake_comet: FakeCometAPI,
) -> None:
    async with session_for(fake_comet) as session:
        created = await session.create(PRO, {"prompt": "x"})
        fake_comet.script(
            "query",
            Fault.status(
                200,
                body=succeeded(
                    created.id,
                    created_at="2026-03-12T11:27:18.258Z",
                    completed_at="2026-03-12T11:27:21.5",
                ),
            ),
        )
        with anyio.fail_after(10):
            prediction = await session.wait(created)
        after = await session.run(PRO, {"prompt": "the session still works"})

    assert prediction.completed_at is not None
    assert prediction.completed_at.utcoffset() is not None
    assert prediction.output_urls == (URL,)
    assert after.status is Status.SUCCEEDED


# 3. One unparseable timestamp in a succeeded reply


async def test_an_unparseable_timestamp_keeps_the_succeeded_result(
    fake_comet: FakeCometAPI,
) -> None:
    prediction = await wait_through(fake_comet, started_at="84 seconds")

    assert prediction.status is Status.SUCCEEDED
    assert prediction.output_urls == (URL,)
    assert prediction.started_at is None
    assert prediction.completed_at is not None


# 4. A create reply without a usable id


@pytest.mark.parametrize("bad_id", ["abc def", "", None, 123, "../x", "abc\n"])
async def test_a_create_reply_without_a_usable_id_is_ambiguous(
    fake_comet: FakeCometAPI, bad_id: object
) -> None:
    fake_comet.script(
        "create",
        Fault.status(201, body={"id": bad_id, "status": "starting", "model": PRO}),
    )

    async with session_for(fake_comet) as session:
        with pytest.raises(AmbiguousSubmitError) as raised:
            await session.run(PRO, {"prompt": "x"})

    assert "may exist and be billed" in str(raised.value)
    assert "no usable prediction id" in str(raised.value)
    assert '"status": "starting"' in str(raised.value)  # the body excerpt
    assert fake_comet.stats.count("create") == 1  # never sent twice
    assert fake_comet.stats.count("query") == 0


# 5. Values read as they are meant


async def test_a_status_in_capitals_ends_the_wait(fake_comet: FakeCometAPI) -> None:
    prediction = await wait_through(fake_comet, status=" SUCCEEDED ")

    assert prediction.status is Status.SUCCEEDED
    assert prediction.output_urls == (URL,)


# 6. A float request timeout


async def test_request_timeout_in_seconds_applies_to_connect_and_read(
    fake_comet: FakeCometAPI,
) -> None:
    async with session_for(fake_comet, request_timeout=0.5) as session:
        prediction = await session.run(PRO, {"prompt": "x"})

    assert session.request_timeout == RequestTimeout(0.5, 0.5, 0.5)
    assert prediction.status is Status.SUCCEEDED


@pytest.mark.parametrize("value", ["1", True, [1.0], {"connect": 1}])
def test_request_timeout_of_another_type_is_a_type_error(value: object) -> None:
    with pytest.raises(TypeError, match="request_timeout"):
        Session("key", request_timeout=value)  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [0, -1.0, math.nan])
def test_request_timeout_must_be_positive(value: float) -> None:
    with pytest.raises(ValueError, match="request_timeout"):
        Session("key", request_timeout=value)


# 7. A finite deadline by default


def test_the_default_deadline_is_finite_and_longer_than_replicates() -> None:
    default = inspect.signature(Session).parameters["timeout"].default

    assert Session("key").timeout == default
    assert isinstance(default, float)
    assert 30 * 60 < default < math.inf
    assert Session("key", timeout=None).timeout is None


async def test_a_prediction_that_never_finishes_ends_at_the_sessions_deadline(
    fake_comet: FakeCometAPI,
) -> None:
    fake_comet.script_polls(
        lambda record: True,
        Fault.raw(lambda normal: {**normal, "status": "queued-for-gpu"}),
        repeat_last=True,
    )

    async with session_for(fake_comet, timeout=0.3) as session:
        with anyio.fail_after(10), pytest.raises(PredictionTimeout) as raised:
            await session.run(PRO, {"prompt": "x"})

    assert raised.value.last_status == "queued-for-gpu"


# Deliver 1: one prediction's reply affects that prediction only


def _odd(record: PredictionRecord) -> bool:
    return str(record.input["prompt"]).startswith("odd")


async def test_a_bad_reply_fails_its_own_prediction_and_no_sibling(
    fake_comet: FakeCometAPI,
) -> None:
    fake_comet.script_polls(
        _odd, Fault.raw(b"<html>proxy error</html>", content_type="text/html"),
        repeat_last=True,
    )  # fmt: skip

    async with session_for(fake_comet) as session:
        with anyio.fail_after(10):
            items = await session.gather(
                SCHNELL, [{"prompt": "fine 1"}, {"prompt": "odd"}, {"prompt": "fine 2"}]
            )

    assert [item.ok for item in items] == [True, False, True]
    error = items[1].error
    assert isinstance(error, UnexpectedResponseError)
    assert error.status_code == 200
    assert "proxy error" in error.body
    assert items[1].prediction is not None
    assert items[1].prediction.id in str(error)


async def test_the_poller_outlives_a_reply_it_cannot_handle() -> None:
    # A prediction whose values break the poller's own bookkeeping (here: an aware
    # and a naive time, which cannot be subtracted) fails alone.
    broken = Prediction(
        id="broken",
        status=Status.SUCCEEDED,
        model=PRO,
        created_at=AWARE,
        completed_at=AWARE.replace(tzinfo=None),
    )

    async def query_once(known: Prediction) -> Prediction:
        if known.id == "broken":
            return broken
        return Prediction(id=known.id, status=Status.SUCCEEDED, model=PRO)

    registry = Registry()
    poller = Poller(
        registry,
        query_once,
        policy=PollPolicy(min_interval=0.01, max_interval=0.01),
        retry=RetryPolicy(),
        on_update=lambda previous, current: None,
    )
    async with anyio.create_task_group() as group:
        await group.start(poller.run)
        bad = poller.watch(Prediction(id="broken", status=Status.STARTING, model=PRO))
        good = poller.watch(Prediction(id="good", status=Status.STARTING, model=PRO))
        with anyio.fail_after(5):
            with pytest.raises(UnexpectedResponseError, match="broken"):
                await bad.outcome
            assert (await good.outcome).status is Status.SUCCEEDED
        group.cancel_scope.cancel()


# Deliver 4: unreadable replies are bounded


@pytest.mark.slow
async def test_replies_that_are_never_a_prediction_fail_within_a_minute_at_the_defaults(
    fake_comet: FakeCometAPI,
) -> None:
    async with Session(fake_comet.api_key, base_url=fake_comet.base_url) as session:
        created = await session.create(PRO, {"prompt": "x"})
        fake_comet.script_polls(
            created.id, Fault.raw({"ok": True, "queued": 3}), repeat_last=True
        )
        started = time.monotonic()
        with anyio.fail_after(60), pytest.raises(UnexpectedResponseError) as raised:
            await session.wait(created)
        elapsed = time.monotonic() - started

    assert raised.value.status_code == 200
    assert created.id in str(raised.value)
    assert '"queued": 3' in raised.value.body
    assert fake_comet.stats.count("query") == RetryPolicy().max_attempts
    assert elapsed < 60


# Deliver 3: a get is about the id asked for


async def test_get_reads_a_reply_naming_another_id_as_the_one_asked_for(
    fake_comet: FakeCometAPI,
) -> None:
    async with session_for(fake_comet) as session:
        created = await session.create(PRO, {"prompt": "x"})
        fake_comet.script_polls(created.id, Fault.raw(succeeded("someoneelse")))
        got = await session.get(created.id)

    assert got.id == created.id
    assert got.status is Status.SUCCEEDED


async def test_every_error_of_a_bad_reply_is_ours(fake_comet: FakeCometAPI) -> None:
    fake_comet.script_polls(_odd, Fault.raw(b"[" * 100_000), repeat_last=True)

    async with session_for(fake_comet) as session:
        with pytest.raises(CometReplicateError):
            await session.run(PRO, {"prompt": "odd"})
