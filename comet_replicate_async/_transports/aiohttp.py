"""The one module that imports aiohttp: send a `RequestSpec`, get a `RawResponse`.

Every aiohttp exception is translated to ours in `map_aiohttp_exceptions`, and only
there. The Authorization header is added per request, to requests for the API's
own base URL, and never set on the `ClientSession`, so a borrowed session or a
download through the same pool cannot leak it to another host.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeAlias

import aiohttp
import anyio

from comet_replicate_async._config import ApiKey, RequestTimeout, resolve_api_key
from comet_replicate_async._exceptions import APIConnectionError, APITimeoutError
from comet_replicate_async._sansio import RawResponse, RequestSpec

from .base import Transport

__all__ = [
    "AiohttpTransport",
    "ClientSession",
    "map_aiohttp_exceptions",
    "session_transport",
]

logger = logging.getLogger("comet_replicate_async")

# What `Session(http_session=...)` borrows, named here so that no other module of
# the package imports aiohttp.
ClientSession: TypeAlias = aiohttp.ClientSession


def _without_query(url: str) -> str:
    # Signed CDN links carry tokens in the query: keep them out of messages.
    return url.split("?", 1)[0]


@contextmanager
def map_aiohttp_exceptions(where: str) -> Iterator[None]:
    """Translate aiohttp's exceptions into ours, keeping whether anything was sent.

    `where` names the request in messages (a method and a path: never headers).
    `request_sent=False` only where aiohttp failed to connect: then the server
    provably saw nothing, which is what makes a create safe to retry.
    """
    try:
        yield
    except aiohttp.ConnectionTimeoutError as exc:
        raise APITimeoutError(f"{where}: connect timeout", request_sent=False) from exc
    except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
        raise APITimeoutError(
            f"{where}: no reply within the read timeout", request_sent=True
        ) from exc
    except aiohttp.ClientConnectorError as exc:
        raise APIConnectionError(
            f"{where}: cannot connect ({exc.os_error.strerror or exc.os_error})",
            request_sent=False,
        ) from exc
    except aiohttp.ServerDisconnectedError as exc:
        raise APIConnectionError(
            f"{where}: server closed the connection", request_sent=True
        ) from exc
    except aiohttp.ClientPayloadError as exc:
        raise APIConnectionError(
            f"{where}: reply body cut short", request_sent=True
        ) from exc
    except aiohttp.ClientError as exc:
        raise APIConnectionError(
            f"{where}: {type(exc).__name__}: {exc}", request_sent=True
        ) from exc
    except OSError as exc:
        raise APIConnectionError(
            f"{where}: {type(exc).__name__}: {exc}", request_sent=True
        ) from exc


class AiohttpTransport:
    """Sends API requests through one `aiohttp.ClientSession`.

    The session is created on `open()` (inside the running loop) unless one is
    borrowed through `http_session`; a borrowed session is never closed here.
    """

    def __init__(
        self,
        base_url: str,
        api_key: ApiKey,
        timeout: RequestTimeout,
        *,
        http_session: aiohttp.ClientSession | None = None,
        connection_limit: int = 100,
    ) -> None:
        self._base_url = base_url
        self._api_key = api_key
        self._timeout = timeout
        self._borrowed = http_session
        self._owned: aiohttp.ClientSession | None = None
        self._connection_limit = connection_limit
        # Output files live on other hosts: a separate pool that never carries
        # the key, whatever the borrowed session's defaults are.
        self._files: aiohttp.ClientSession | None = None
        # Built once: these go with every request.
        self._create_timeout = self._client_timeout(timeout.create_read)
        self._query_timeout = self._client_timeout(timeout.query_read)

    def _client_timeout(self, read: float) -> aiohttp.ClientTimeout:
        return aiohttp.ClientTimeout(
            total=None, connect=None, sock_connect=self._timeout.connect, sock_read=read
        )

    def open(self) -> None:
        """Create the owned `ClientSession`; call from inside the event loop."""
        if self._borrowed is None and self._owned is None:
            self._owned = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._connection_limit),
                # Default headers stay empty: the key goes on each API request only.
                raise_for_status=False,
                # The API sets no cookies; skipping the jar saves work per request.
                cookie_jar=aiohttp.DummyCookieJar(),
            )

    async def aclose(self) -> None:
        """Close the owned sessions (a borrowed one is left to its owner)."""
        owned, self._owned = self._owned, None
        files, self._files = self._files, None
        for session in (owned, files):
            if session is not None:
                await session.close()

    async def download(self, url: str, destination: Path) -> RawResponse | None:
        """Stream `url` into `destination` (through a `.part` file, renamed when whole).

        Sends no Authorization header. Returns None on success, or the error reply
        (status, headers, a short body) for the caller to turn into an error.
        """
        if self._files is None:
            self._files = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(
                    total=None,
                    sock_connect=self._timeout.connect,
                    sock_read=self._timeout.query_read,
                )
            )
        partial = destination.with_name(destination.name + ".part")
        with map_aiohttp_exceptions(f"GET {_without_query(url)}"):
            async with self._files.get(url) as response:
                if response.status >= 400:
                    body = await response.content.read(4096)
                    headers = {k.lower(): v for k, v in response.headers.items()}
                    return RawResponse(
                        status=response.status, headers=headers, body=body
                    )
                async with await anyio.open_file(partial, "wb") as file:
                    async for chunk in response.content.iter_chunked(1 << 16):
                        await file.write(chunk)
        await anyio.Path(partial).replace(destination)
        logger.debug("downloaded %s", destination.name)
        return None

    async def send(
        self, spec: RequestSpec, *, read_timeout: float | None = None
    ) -> RawResponse:
        """Send one request and read the whole reply; redirects are not followed."""
        session = self._owned or self._borrowed
        if session is None:
            raise RuntimeError("transport is not open")
        if read_timeout is not None:
            timeout = self._client_timeout(read_timeout)
        elif spec.kind == "create":
            timeout = self._create_timeout
        else:
            timeout = self._query_timeout
        headers = dict(spec.headers)
        if spec.authenticated:
            headers["Authorization"] = f"Bearer {self._api_key.reveal()}"
        data = None if spec.json_body is None else json.dumps(spec.json_body).encode()
        started = time.monotonic()
        with map_aiohttp_exceptions(f"{spec.method} {spec.path}"):
            async with session.request(
                spec.method,
                self._base_url + spec.path,
                headers=headers,
                data=data,
                allow_redirects=False,
                timeout=timeout,
            ) as response:
                body = await response.read()
                reply_headers = {
                    name.lower(): value for name, value in response.headers.items()
                }
                status = response.status
        logger.debug(
            "%s %s -> %d in %.3f s",
            spec.method,
            spec.path,
            status,
            time.monotonic() - started,
        )
        return RawResponse(status=status, headers=reply_headers, body=body)


def session_transport(
    transport: Transport | None,
    base_url: str,
    api_key: str | None,
    request_timeout: RequestTimeout,
    http_session: ClientSession | None,
    connection_limit: int,
) -> Transport:
    """A session's transport: the one passed in, else an aiohttp pool of its own."""
    if transport is None:
        return AiohttpTransport(
            base_url,
            resolve_api_key(api_key),
            request_timeout,
            http_session=http_session,
            connection_limit=connection_limit,
        )
    if api_key is not None or http_session is not None:
        raise ValueError(
            "a transport of your own authenticates and sends the requests: "
            "pass api_key and http_session to it, not to Session"
        )
    return transport
