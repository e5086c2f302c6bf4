"""The fake's side of HTTP: the request log, reading a create, writing a `Reply`.

A `Reply` is a value (`_replies.py`); here it becomes an aiohttp response, or a
connection reset with a TCP RST when the fault says to drop it.
"""

from __future__ import annotations

import json
import re
import socket
import struct
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from ._faults import Fault
from ._replies import Reply, apply_fault, comet_error, new_request_id
from ._stats import FakeStats, RequestRecord

__all__ = [
    "PREDICTION_ID",
    "Dropped",
    "answer",
    "authorized",
    "crowded",
    "invalid_token",
    "moved",
    "moved_url",
    "prefer_wait",
    "read_input",
    "request_log",
    "send",
]

#: The prediction a request is about, for its line in the request log.
PREDICTION_ID: Final = web.RequestKey("prediction_id", str)

#: Replicate's `Prefer: wait` grammar; a bare `wait` means 60 s.
_PREFER_WAIT: Final = re.compile(r"\bwait(?:=(\d+))?\b")


class Dropped(web.Response):
    """Stands in for the reply of a reset connection; it is never written."""


def request_log(stats: FakeStats) -> Middleware:
    """A middleware that logs every request in *stats*, whatever happens to it."""

    @web.middleware
    async def record(request: web.Request, handler: Handler) -> web.StreamResponse:
        monotonic, wall = stats.clock.now(), time.time()
        status = 0  # stays 0 if the handler is cancelled (client went away)
        try:
            response = await handler(request)
            status = 0 if isinstance(response, Dropped) else response.status
            return response
        except web.HTTPException as exc:  # unknown path or method
            status = exc.status
            raise
        finally:
            name = request.match_info.route.name or "other"
            stats.record_request(
                RequestRecord(
                    route=name.partition("-")[0],
                    method=request.method,
                    path=request.path,
                    status=status,
                    headers=dict(request.headers),
                    monotonic=monotonic,
                    wall=wall,
                    prediction_id=request.get(PREDICTION_ID),
                )
            )

    return record


async def read_input(request: web.Request, request_id: str) -> dict[str, Any] | Reply:
    """The `input` object of a create body, or the 400 reply explaining why not."""
    try:
        body = json.loads(await request.read())
    except ValueError:
        return comet_error(400, "request body is not valid JSON", request_id)
    if not isinstance(body, dict) or not isinstance(body.get("input"), dict):
        return comet_error(400, "input is required and must be an object", request_id)
    prompt = body["input"].get("prompt")
    if not isinstance(prompt, str) or not prompt:
        return comet_error(400, "input.prompt is required", request_id)
    input: dict[str, Any] = body["input"]
    return input


def authorized(request: web.Request, api_key: str) -> bool:
    """Whether *request* carries the one accepted bearer token."""
    return request.headers.get("Authorization") == f"Bearer {api_key}"


def invalid_token(request_id: str) -> Reply:
    return comet_error(401, "invalid token", request_id, code="")


def prefer_wait(prefer: str) -> int:
    """Seconds a `Prefer: wait[=N]` header asks to hold the reply (0: none)."""
    match = _PREFER_WAIT.search(prefer)
    if match is None:
        return 0
    return min(max(int(match[1] or 60), 1), 60)


async def moved(request: web.Request) -> web.StreamResponse:
    """Where a followed redirect lands: a 200 that is not a prediction."""
    return web.json_response({"moved": True, "path": request.path})


def moved_url(request: web.Request) -> str:
    return f"{request.url.origin()}/moved{request.path}"


def crowded(request: web.Request) -> web.StreamResponse:
    """new-api's refusal past a key's requests in flight: 429, no `Retry-After`."""
    request_id = new_request_id()
    message = "too many concurrent requests for this key"
    return send(request, comet_error(429, message, request_id, code=""), request_id)


def send(request: web.Request, reply: Reply, request_id: str) -> web.StreamResponse:
    """*reply* as the response to *request*, or a reset connection."""
    if reply.drop:
        _reset_connection(request)
        return Dropped()
    response = web.Response(
        status=reply.status, body=reply.body, content_type=reply.content_type
    )
    response.headers.update(reply.headers)
    response.headers["X-Request-Id"] = request_id
    return response


async def answer(
    request: web.Request,
    request_id: str,
    fault: Fault,
    normal: Callable[[], Awaitable[Reply]],
) -> web.StreamResponse:
    """Answer *request* the way *fault* says; *normal* makes the reply without one."""
    reply = await apply_fault(
        fault, normal, request_id=request_id, moved_url=moved_url(request)
    )
    return send(request, reply, request_id)


def _reset_connection(request: web.Request) -> None:
    """Close the connection with a TCP RST, the way a crashing proxy does."""
    transport = request.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        # Linger 0 turns close() into a RST instead of an orderly FIN.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()
