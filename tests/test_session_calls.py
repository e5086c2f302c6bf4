"""create and get over real HTTP against FakeCometAPI: errors, retries, at-most-once."""

from __future__ import annotations

import logging
import socket
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import aiohttp
import pytest

from comet_replicate_async import (
    AmbiguousSubmitError,
    APIConnectionError,
    APIError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    RequestTimeout,
    RetryPolicy,
    ServerError,
    Session,
    Status,
    UnexpectedResponseError,
)
from comet_replicate_async.testing import FakeCometAPI, Fault, Latency

from helpers import PRO, SCHNELL, session_for

pytestmark = pytest.mark.anyio


async def test_create_then_get() -> None:
    # A slow model: its prediction is still starting when the create's reply is
    # read, however late that is on a loaded machine.
    async with FakeCometAPI(default_latency=Latency.constant(30.0)) as fake:
        async with session_for(fake) as session:
            created = await session.create(SCHNELL, {"prompt": "a paper boat"})
            again = await session.get(created.id)

    assert created.status is Status.STARTING
    assert created.model == SCHNELL
    assert again.id == created.id
    assert fake.stats.created == 1


@pytest.mark.parametrize(
    ("status", "error_class"),
    [
        (400, BadRequestError),
        (401, AuthenticationError),
        (403, PermissionDeniedError),
        (404, NotFoundError),
        (500, ServerError),
        (418, APIError),
    ],
)
async def test_each_error_status_maps_to_its_class_with_the_request_id(
    fake_comet: FakeCometAPI, status: int, error_class: type[APIError]
) -> None:
    fake_comet.script(
        "create", Fault.status(status, message="nope (request id: req-42)")
    )
    fake_comet.script(
        "query", Fault.status(status, message="nope (request id: req-43)")
    )

    async with session_for(fake_comet, retry=RetryPolicy(max_attempts=1)) as session:
        with pytest.raises((error_class, AmbiguousSubmitError)) as on_create:
            await session.create(SCHNELL, {"prompt": "x"})
        with pytest.raises(error_class) as on_query:
            await session.get("abc")

    create_error = on_create.value
    if status == 500:
        # A 500 on create may hide a created prediction: reported as ambiguous.
        assert isinstance(create_error, AmbiguousSubmitError)
        create_error = create_error.__cause__
    assert type(create_error) is error_class
    assert isinstance(create_error, APIError)
    assert create_error.request_id == "req-42"
    assert on_query.value.request_id == "req-43"
    assert create_error.status_code == status


async def test_wrong_key_is_an_authentication_error(fake_comet: FakeCometAPI) -> None:
    async with Session("wrong-key", base_url=fake_comet.base_url) as session:
        with pytest.raises(AuthenticationError) as caught:
            await session.create(SCHNELL, {"prompt": "x"})

    assert caught.value.request_id
    assert fake_comet.stats.created == 0


async def test_unknown_prediction_is_not_found(fake_comet: FakeCometAPI) -> None:
    async with session_for(fake_comet) as session:
        with pytest.raises(NotFoundError):
            await session.get("doesnotexist")


RETRY_AFTER_FORMS = {
    "seconds": lambda: "0.3",
    "http-date": lambda: format_datetime(
        datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=2), usegmt=True
    ),
}


@pytest.mark.parametrize("form", sorted(RETRY_AFTER_FORMS))
async def test_create_429_waits_as_told_then_creates_exactly_once(
    fake_comet: FakeCometAPI, form: str
) -> None:
    fake_comet.script("create", Fault.rate_limited(RETRY_AFTER_FORMS[form]()))

    async with session_for(fake_comet) as session:
        started = time.monotonic()
        created = await session.create(SCHNELL, {"prompt": "once"})
        waited = time.monotonic() - started

    # An HTTP-date has whole seconds: at least one of the two asked for is left.
    assert waited >= (0.3 if form == "seconds" else 1.0)
    assert created.id in fake_comet.predictions
    assert fake_comet.stats.created == 1
    assert fake_comet.stats.count("create", 429) == 1
    assert session.stats.rate_limited == 1
    assert session.stats.retries == 1


async def test_replicate_throttle_body_without_header_is_honoured(
    fake_comet: FakeCometAPI,
) -> None:
    body = {"detail": "Request was throttled. Expected available in 1 second."}
    fake_comet.script("query", Fault.rate_limited(None, body=body))

    async with session_for(fake_comet) as session:
        created = await session.create(PRO, {"prompt": "x"})
        started = time.monotonic()
        await session.get(created.id)

    assert time.monotonic() - started >= 1.0
    assert fake_comet.stats.count("query") == 2


async def test_too_long_retry_after_is_raised_not_waited(
    fake_comet: FakeCometAPI,
) -> None:
    fake_comet.script("create", Fault.rate_limited("3600"))

    async with session_for(fake_comet) as session:
        with pytest.raises(RateLimitError) as caught:
            await session.create(SCHNELL, {"prompt": "x"})

    assert caught.value.retry_after == 3600
    assert fake_comet.stats.created == 0


AMBIGUOUS_FAULTS = {
    "502 ghost": Fault.ghost(502),
    "reset after send": Fault.reset(after_create=True),
    "read timeout": Fault.delay(1.0),
    "html": Fault.html(),
    "truncated json": Fault.truncated(),
}


@pytest.mark.parametrize("name", sorted(AMBIGUOUS_FAULTS))
async def test_create_that_may_have_happened_is_ambiguous_and_not_repeated(
    fake_comet: FakeCometAPI, name: str
) -> None:
    fake_comet.script("create", AMBIGUOUS_FAULTS[name])
    timeouts = RequestTimeout(connect=2, create_read=0.3, query_read=2)

    async with session_for(fake_comet, request_timeout=timeouts) as session:
        with pytest.raises(AmbiguousSubmitError) as caught:
            await session.create(SCHNELL, {"prompt": "pay once"})

    assert fake_comet.stats.created == 1
    assert fake_comet.stats.count("create") == 1
    assert "may" in str(caught.value)
    assert caught.value.input == {"prompt": "pay once"}
    if name == "read timeout":
        assert isinstance(caught.value.__cause__, APITimeoutError)


async def test_reset_before_create_is_still_ambiguous(fake_comet: FakeCometAPI) -> None:
    # The client cannot tell when the server dropped it: it sent the request.
    fake_comet.script("create", Fault.reset(after_create=False))

    async with session_for(fake_comet) as session:
        with pytest.raises(AmbiguousSubmitError):
            await session.create(SCHNELL, {"prompt": "x"})

    assert fake_comet.stats.created == 0


async def test_opting_in_retries_an_ambiguous_create_and_may_pay_twice(
    fake_comet: FakeCometAPI,
) -> None:
    fake_comet.script("create", Fault.ghost(502))
    retry = RetryPolicy(initial_backoff=0.01, retry_ambiguous_creates=True)

    async with session_for(fake_comet, retry=retry) as session:
        await session.create(SCHNELL, {"prompt": "twice"})

    assert fake_comet.stats.created == 2
    assert fake_comet.stats.duplicates == 1


async def test_invalid_request_500_is_not_retried_nor_ambiguous(
    fake_comet: FakeCometAPI,
) -> None:
    fake_comet.script(
        "create",
        Fault.status(
            500,
            body={
                "error": {
                    "message": "bad (request id: r)",
                    "type": "comet_api_error",
                    "code": "invalid_request",
                }
            },
        ),
    )

    async with session_for(fake_comet) as session:
        with pytest.raises(ServerError) as caught:
            await session.create(SCHNELL, {"prompt": "x"})

    assert caught.value.code == "invalid_request"
    assert fake_comet.stats.count("create") == 1


async def test_connection_refused_is_retried_then_raised_as_not_sent() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    retry = RetryPolicy(max_attempts=3, initial_backoff=0.01)

    async with Session(
        "k", base_url=f"http://127.0.0.1:{port}", retry=retry
    ) as session:
        with pytest.raises(APIConnectionError) as caught:
            await session.create(SCHNELL, {"prompt": "x"})

    assert not isinstance(caught.value, AmbiguousSubmitError)
    assert caught.value.request_sent is False
    assert session.stats.requests == 3


async def test_queries_survive_injected_5xx_and_resets() -> None:
    async with FakeCometAPI(server_error_rate=0.05, reset_rate=0.05, seed=7) as fake:
        fake.script("create", Fault.delay(0))  # scripted: spared the random faults
        async with session_for(fake) as session:
            created = await session.create(PRO, {"prompt": "x"})
            for _ in range(200):
                assert (await session.get(created.id)).id == created.id

        failed_queries = fake.stats.count("query") - fake.stats.count("query", 200)

    # aiohttp itself resends an idempotent GET once when a pooled connection was
    # reset, so the client sees (and retries) only some of the injected failures.
    assert session.stats.retries > 0
    assert failed_queries >= session.stats.retries
    assert session.stats.queries == 200 + session.stats.retries


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        (Fault.html(), "HTML"),
        (Fault.truncated(), "not valid JSON"),
        (Fault.redirect(), "not followed"),
    ],
)
async def test_malformed_query_replies_are_unexpected_responses(
    fake_comet: FakeCometAPI, fault: Fault, reason: str
) -> None:
    async with session_for(fake_comet, retry=RetryPolicy(max_attempts=1)) as session:
        created = await session.create(PRO, {"prompt": "x"})
        fake_comet.script("query", fault)
        with pytest.raises(UnexpectedResponseError, match=reason):
            await session.get(created.id)

    assert fake_comet.stats.count("other") == 0  # the redirect target never asked


async def test_redirect_on_create_is_not_followed(fake_comet: FakeCometAPI) -> None:
    fake_comet.script("create", Fault.redirect())

    async with session_for(fake_comet) as session:
        with pytest.raises(UnexpectedResponseError) as caught:
            await session.create(SCHNELL, {"prompt": "x"})

    assert caught.value.status_code == 301
    assert fake_comet.stats.count("other") == 0
    assert fake_comet.stats.created == 0


async def test_key_never_logged_shown_or_raised(
    fake_comet: FakeCometAPI, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    secret = fake_comet.api_key
    texts: list[str] = []
    fake_comet.script("create", Fault.rate_limited("0"), Fault.ghost(502))
    fake_comet.script("query", Fault.status(503), Fault.html())

    async with session_for(fake_comet) as session:
        texts.append(repr(session))
        texts.append(repr(session.stats))
        with pytest.raises(AmbiguousSubmitError) as ambiguous:
            await session.create(SCHNELL, {"prompt": "x"})
        texts += [
            str(ambiguous.value),
            repr(ambiguous.value),
            str(ambiguous.value.__cause__),
        ]
        created = await session.create(SCHNELL, {"prompt": "y"})
        await session.get(created.id)
        await session.run(SCHNELL, {"prompt": "z"})
        with pytest.raises(NotFoundError) as missing:
            await session.get("nope")
        texts += [str(missing.value), repr(missing.value), missing.value.body]

    texts += [record.getMessage() for record in caplog.records]
    texts += [str(record.args) for record in caplog.records]
    assert caplog.records  # DEBUG logging really ran
    assert all(secret not in text for text in texts)


async def test_borrowed_http_session_is_used_and_left_open(
    fake_comet: FakeCometAPI,
) -> None:
    async with aiohttp.ClientSession() as borrowed:
        async with session_for(fake_comet, http_session=borrowed) as session:
            await session.create(SCHNELL, {"prompt": "x"})
        assert not borrowed.closed
        # The key was never made a default of the borrowed session.
        assert "Authorization" not in borrowed.headers


async def test_a_closed_session_cannot_be_reopened(fake_comet: FakeCometAPI) -> None:
    session = session_for(fake_comet)
    async with session:
        pass

    with pytest.raises(RuntimeError, match="reopened"):
        async with session:
            pass
    with pytest.raises(RuntimeError, match="closed"):
        await session.create(SCHNELL, {"prompt": "x"})


async def test_an_unopened_session_says_how_to_open_it(
    fake_comet: FakeCometAPI,
) -> None:
    session = session_for(fake_comet)

    with pytest.raises(RuntimeError, match="async with"):
        await session.get("abc")
    await session.aclose()


async def test_bad_model_costs_no_request(fake_comet: FakeCometAPI) -> None:
    async with session_for(fake_comet) as session:
        with pytest.raises(ValueError, match="owner/name"):
            await session.create("flux-schnell", {"prompt": "x"})

    assert fake_comet.stats.count("create") == 0
