"""`MockTransport`: a `Session` that answers from a function, with no server."""

from __future__ import annotations

import inspect
import json
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, TypeAlias

import anyio

from comet_replicate_async._sansio import RawResponse, RequestSpec

__all__ = ["MockHandler", "MockTransport", "mock_reply"]

MockHandler: TypeAlias = Callable[[RequestSpec], RawResponse | Awaitable[RawResponse]]


def mock_reply(
    status: int,
    json_body: Any = None,
    *,
    body: bytes = b"",
    headers: Mapping[str, str] | None = None,
) -> RawResponse:
    """A reply for a `MockTransport` handler to return.

    `json_body` is serialised (with a JSON `content-type`); otherwise `body` is
    sent as it is. Header names are lower-cased, as a transport hands them over.
    """
    names = {name.lower(): value for name, value in (headers or {}).items()}
    if json_body is not None:
        body = json.dumps(json_body).encode()
        names.setdefault("content-type", "application/json")
    return RawResponse(status=status, headers=names, body=body)


class MockTransport:
    """Answers a session's requests by calling `handler`, as httpx's MockTransport.

    `Session(transport=MockTransport(handler))` sends nothing over the network:
    every create and query becomes `handler(request)`, a plain or async function
    that takes the `RequestSpec` and returns a `RawResponse` (build it with
    `mock_reply`) or raises, e.g. `APIConnectionError(..., request_sent=False)`
    for a connection that failed before sending. Retries, the 429 throttle,
    polling and the reading of replies are the session's own, as in production.

    Output-file downloads reach the handler too, as a `RequestSpec` of kind
    `"download"` whose `path` is the whole URL; the body of a reply below 400 is
    written to the file.

    Attributes:
        requests: every request the handler was called with, in order.
    """

    def __init__(self, handler: MockHandler) -> None:
        self._handler = handler
        self.requests: list[RequestSpec] = []

    def __repr__(self) -> str:
        return f"<MockTransport requests={len(self.requests)}>"

    def open(self) -> None:
        """Nothing to open."""

    async def aclose(self) -> None:
        """Nothing to close."""

    async def send(
        self, spec: RequestSpec, *, read_timeout: float | None = None
    ) -> RawResponse:
        """Record `spec` and return the handler's reply (awaited if need be)."""
        self.requests.append(spec)
        reply = self._handler(spec)
        if inspect.isawaitable(reply):
            reply = await reply
        return reply

    async def download(self, url: str, destination: Path) -> RawResponse | None:
        """Ask the handler for `url`; write the body to `destination` if it is not an error."""
        reply = await self.send(RequestSpec(kind="download", method="GET", path=url))
        if reply.status >= 400:
            return reply
        await anyio.Path(destination).write_bytes(reply.body)
        return None
