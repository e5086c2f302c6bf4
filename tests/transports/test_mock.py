"""The transport seam: sessions answered by `MockTransport`, with no server at all."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest

from comet_replicate_async import (
    AmbiguousSubmitError,
    APIConnectionError,
    AuthenticationError,
    BadRequestError,
    NotFoundError,
    PollPolicy,
    PredictionFailed,
    RawResponse,
    RequestSpec,
    Session,
    Status,
    Transport,
    UnexpectedResponseError,
)
from comet_replicate_async.testing import MockTransport, mock_reply

from helpers import FAST_RETRY, SCHNELL

pytestmark = pytest.mark.anyio

CREATE_PATH = f"/replicate/v1/models/{SCHNELL}/predictions"
QUICK_POLLS = PollPolicy(min_interval=0.01, max_interval=0.02, coalesce=0)


def prediction(status: str, **fields: Any) -> dict[str, Any]:
    return {"id": "p1", "model": SCHNELL, "status": status, **fields}


def answer_in_turn(*replies: RawResponse | Exception) -> MockTransport:
    """A transport whose handler gives these replies (or raises these) in order."""
    script = iter(replies)

    def handler(request: RequestSpec) -> RawResponse:
        reply = next(script)
        if isinstance(reply, Exception):
            raise reply
        return reply

    return MockTransport(handler)


def session_on(transport: Transport, **options: Any) -> Session:
    options.setdefault("retry", FAST_RETRY)
    return Session(transport=transport, **options)


def test_a_mock_transport_follows_the_protocol() -> None:
    transport: Transport = MockTransport(lambda request: mock_reply(200))

    assert repr(transport) == "<MockTransport requests=0>"


async def test_create_sends_the_request_and_reads_the_reply() -> None:
    transport = answer_in_turn(mock_reply(201, prediction("starting")))

    async with session_on(transport) as session:
        created = await session.create(SCHNELL, {"prompt": "a paper boat"})

    assert created.id == "p1"
    assert created.status is Status.STARTING
    [request] = transport.requests
    assert (request.kind, request.method, request.path) == (
        "create",
        "POST",
        CREATE_PATH,
    )
    assert request.json_body == {"input": {"prompt": "a paper boat"}}


async def test_an_async_handler_answers_get() -> None:
    async def handler(request: RequestSpec) -> RawResponse:
        await anyio.lowlevel.checkpoint()
        return mock_reply(200, prediction("processing"))

    transport = MockTransport(handler)
    async with session_on(transport) as session:
        current = await session.get("p1")

    assert current.status is Status.PROCESSING
    assert [request.path for request in transport.requests] == [
        "/replicate/v1/predictions/p1"
    ]


async def test_run_creates_then_polls_until_the_prediction_succeeds() -> None:
    output = ["https://files.example/p1-0.webp"]
    transport = answer_in_turn(
        mock_reply(201, prediction("starting")),
        mock_reply(200, prediction("processing")),
        mock_reply(200, prediction("succeeded", output=output)),
    )

    async with session_on(transport, poll=QUICK_POLLS) as session:
        with anyio.fail_after(5):
            result = await session.run(SCHNELL, {"prompt": "a fox"})

    assert result.output_urls == tuple(output)
    assert [request.kind for request in transport.requests] == [
        "create",
        "query",
        "query",
    ]


async def test_a_failed_prediction_raises_with_it() -> None:
    transport = answer_in_turn(
        mock_reply(201, prediction("failed", error="NSFW content")),
    )

    async with session_on(transport) as session:
        with pytest.raises(PredictionFailed) as raised:
            await session.run(SCHNELL, {"prompt": "a fox"})

    assert raised.value.prediction is not None
    assert raised.value.prediction.id == "p1"


async def test_a_429_on_create_is_retried_and_counted() -> None:
    transport = answer_in_turn(
        mock_reply(429, {"detail": "slow down"}, headers={"Retry-After": "0"}),
        mock_reply(201, prediction("starting")),
    )

    async with session_on(transport) as session:
        created = await session.create(SCHNELL, {"prompt": "a fox"})

    assert created.id == "p1"
    assert len(transport.requests) == 2
    assert session.stats.rate_limited == 1
    assert session.stats.retries == 1


async def test_a_create_that_never_left_is_retried() -> None:
    transport = answer_in_turn(
        APIConnectionError("POST: cannot connect", request_sent=False),
        mock_reply(201, prediction("starting")),
    )

    async with session_on(transport) as session:
        created = await session.create(SCHNELL, {"prompt": "a fox"})

    assert created.id == "p1"
    assert len(transport.requests) == 2


async def test_a_server_error_on_create_is_ambiguous_and_not_retried() -> None:
    transport = answer_in_turn(mock_reply(500, {"detail": "boom"}))

    async with session_on(transport) as session:
        with pytest.raises(AmbiguousSubmitError):
            await session.create(SCHNELL, {"prompt": "a fox"})

    assert len(transport.requests) == 1


@pytest.mark.parametrize(
    ("reply", "error_class"),
    [
        (mock_reply(400, {"detail": "bad input"}), BadRequestError),
        (mock_reply(401, {"detail": "bad key"}), AuthenticationError),
        (mock_reply(404, {"detail": "no such model"}), NotFoundError),
        (
            mock_reply(302, headers={"Location": "https://x.example/"}),
            UnexpectedResponseError,
        ),
        # Sent and answered, but unreadable: it may have created a prediction.
        (mock_reply(200, body=b"<html>not json</html>"), AmbiguousSubmitError),
    ],
)
async def test_each_reply_maps_to_its_error(
    reply: RawResponse, error_class: type[Exception]
) -> None:
    transport = answer_in_turn(reply)

    async with session_on(transport) as session:
        with pytest.raises(error_class):
            await session.create(SCHNELL, {"prompt": "a fox"})

    assert len(transport.requests) == 1


async def test_download_writes_the_handler_body(tmp_path: Path) -> None:
    url = "https://files.example/p1-0.png"
    transport = answer_in_turn(
        mock_reply(201, prediction("succeeded", output=[url])),
        mock_reply(200, body=b"\x89PNG-bytes"),
    )

    async with session_on(transport) as session:
        created = await session.create(SCHNELL, {"prompt": "a fox"})
        [path] = await session.download(created, tmp_path)

    assert path.read_bytes() == b"\x89PNG-bytes"
    assert (transport.requests[-1].kind, transport.requests[-1].path) == (
        "download",
        url,
    )


def test_a_transport_takes_no_key_and_no_http_session() -> None:
    transport = MockTransport(lambda request: mock_reply(200))

    with pytest.raises(ValueError, match="transport of your own"):
        Session("a-key", transport=transport)
