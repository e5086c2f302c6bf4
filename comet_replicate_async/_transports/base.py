"""`Transport`: what a `Session` needs from whatever sends its HTTP requests.

`AiohttpTransport` is the one the session builds by default;
`comet_replicate_async.testing.MockTransport` answers from a function. Anything
else with these four methods fits `Session(transport=...)`: the session only ever
hands it a `RequestSpec` and reads back a `RawResponse`, so retries, the 429
throttle, polling and the reading of replies stay the session's, whatever sends.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from comet_replicate_async._sansio import RawResponse, RequestSpec

__all__ = ["Transport"]


class Transport(Protocol):
    """Sends a session's requests: the one seam between the client and the network.

    The session calls `open()` when it is entered, `send` for every create and
    query, `download` for output files, and `aclose()` when it closes. A transport
    passed to `Session(transport=...)` adds the `Authorization` header itself (the
    session never hands it the key), and must send it to the API's host only,
    and not with a request whose `RequestSpec.authenticated` is False (the
    public price catalogue).

    Errors: a failure to get any reply is an `APIConnectionError` (or
    `APITimeoutError`) whose `request_sent` says whether the request may have
    reached the server; a create is retried only when it provably did not.
    """

    def open(self) -> None:
        """Get ready to send; called inside the running event loop."""

    async def aclose(self) -> None:
        """Release what `open()` and the requests took (connections, sessions)."""

    async def send(
        self, spec: RequestSpec, *, read_timeout: float | None = None
    ) -> RawResponse:
        """Send one API request and return its whole reply, whatever its status.

        `read_timeout` overrides the transport's usual read timeout (the session
        sets it for `Prefer: wait` creates). Redirects are not followed.
        """
        ...

    async def download(self, url: str, destination: Path) -> RawResponse | None:
        """Save the file at `url` (another host: no key) into `destination`.

        Returns None once the whole file is in place, or the error reply for the
        session to raise and maybe retry.
        """
        ...
