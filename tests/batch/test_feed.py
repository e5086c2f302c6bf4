"""The batch engine's feeder on MockTransport: how it pulls inputs and ends, with no server.

Every create is answered with its prediction already succeeded, so no item waits
for a poll: the tests see the feeder, the creators and the tracker alone.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Iterator
from contextlib import aclosing

import anyio
import anyio.lowlevel
import pytest

from comet_replicate_async import (
    BatchItem,
    BatchStoppedError,
    RawResponse,
    RequestSpec,
    Session,
)
from comet_replicate_async.testing import MockTransport, mock_reply

from helpers import FAST_RETRY, SCHNELL

pytestmark = pytest.mark.anyio


def finished_at_once() -> MockTransport:
    """A transport that answers each create with a new, succeeded prediction."""
    ids = itertools.count()

    def handler(request: RequestSpec) -> RawResponse:
        assert request.kind == "create"
        assert request.json_body is not None
        prediction_id = f"p{next(ids)}"
        return mock_reply(
            201,
            {
                "id": prediction_id,
                "model": SCHNELL,
                "status": "succeeded",
                "input": request.json_body["input"],
                "output": [f"https://files.example/{prediction_id}.webp"],
            },
        )

    return MockTransport(handler)


def session_on(transport: MockTransport, max_concurrency: int) -> Session:
    return Session(
        transport=transport, retry=FAST_RETRY, max_concurrency=max_concurrency
    )


async def test_inputs_are_pulled_lazily() -> None:
    pulled = 0

    def endless() -> Iterator[dict[str, str]]:
        nonlocal pulled
        while True:
            pulled += 1
            yield {"prompt": f"p{pulled}"}

    transport = finished_at_once()
    with anyio.fail_after(10):
        async with session_on(transport, max_concurrency=5) as session:
            seen = 0
            async with aclosing(session.as_completed(SCHNELL, endless())) as items:
                async for item in items:
                    assert item.ok
                    seen += 1
                    # Never more than the window plus the one waiting for a slot.
                    assert pulled <= seen + 5 + 1
                    if seen == 20:
                        break

    assert seen == 20
    assert len(transport.requests) <= 20 + 5


async def test_async_iterable_inputs() -> None:
    async def prompts() -> AsyncIterator[dict[str, str]]:
        for i in range(10):
            await anyio.lowlevel.checkpoint()
            yield {"prompt": f"p{i}"}

    with anyio.fail_after(10):
        async with session_on(finished_at_once(), max_concurrency=3) as session:
            items = await session.gather(SCHNELL, prompts())

    assert [item.index for item in items] == list(range(10))
    assert [item.input for item in items] == [{"prompt": f"p{i}"} for i in range(10)]
    assert all(item.ok for item in items)


async def test_a_failing_input_iterable_finishes_started_items_then_raises() -> None:
    def five_then_broken() -> Iterator[dict[str, str]]:
        for n in range(5):
            yield {"prompt": f"p{n}"}
        raise ValueError("the prompt source broke")

    seen: list[BatchItem] = []

    async def collect(session: Session) -> None:
        async for item in session.as_completed(SCHNELL, five_then_broken()):
            seen.append(item)  # noqa: PERF401 - kept even when the loop raises

    transport = finished_at_once()
    with anyio.fail_after(10):
        async with session_on(transport, max_concurrency=2) as session:
            with pytest.raises(ValueError, match="prompt source broke"):
                await collect(session)

    assert sorted(item.index for item in seen) == [0, 1, 2, 3, 4]
    assert all(item.ok for item in seen)
    assert len(transport.requests) == 5


async def test_stop_creating_sends_no_more_creates_and_lets_the_batch_end() -> None:
    transport = finished_at_once()
    with anyio.fail_after(10):
        async with session_on(transport, max_concurrency=1) as session:
            prompts = [{"prompt": f"p{i}"} for i in range(3)]
            items = session.as_completed(SCHNELL, prompts)
            seen: list[BatchItem] = []
            async for item in items:
                seen.append(item)
                if len(seen) == 1:
                    # Before the next input has its slot: it is never sent.
                    items.stop_creating()

    assert seen[0].ok
    assert [item.index for item in seen] == [0, 1, 2]
    for item in seen[1:]:
        assert isinstance(item.error, BatchStoppedError)
        assert str(item.error.reason) == "stop_creating() was called"
    assert len(transport.requests) == 1
