"""Replies as plain values, and how a fault turns a normal reply into a bad one."""

from __future__ import annotations

import asyncio
import json
import math
import secrets
import time
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from types import MappingProxyType
from typing import Any, Final

import attrs

from ._faults import Fault

__all__ = ["Reply", "apply_fault", "comet_error", "json_reply", "new_request_id"]

#: What nginx or Cloudflare answers when the upstream is gone.
BAD_GATEWAY_PAGE: Final = (
    b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    b"<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n"
    b"</body>\r\n</html>\r\n"
)
_PHRASES: Final = MappingProxyType({524: "a timeout occurred"})


@attrs.frozen
class Reply:
    """An HTTP reply, not yet written.

    Attributes:
        status: HTTP status.
        body: Raw body.
        content_type: `Content-Type` of the body.
        headers: Extra headers.
        drop: Close the connection abruptly instead of replying.
        prediction_id: The prediction this reply is about, for the request log.
    """

    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: tuple[tuple[str, str], ...] = ()
    drop: bool = False
    prediction_id: str | None = None


def new_request_id() -> str:
    """A fresh id in CometAPI's style: a timestamp followed by random hex."""
    return time.strftime("%Y%m%d%H%M%S") + secrets.token_hex(8)


def json_reply(status: int, payload: Any, *, prediction_id: str | None = None) -> Reply:
    """A JSON reply."""
    return Reply(status, json.dumps(payload).encode(), prediction_id=prediction_id)


def comet_error(
    status: int, message: str, request_id: str, *, code: str | None = None
) -> Reply:
    """CometAPI's error envelope; *message* gets the request id appended.

    `code` defaults to `"invalid_request"` for 400 and `""` otherwise: a
    500 with `invalid_request` means "do not retry", which a random fault
    must never claim.
    """
    if code is None:
        code = "invalid_request" if status == 400 else ""
    envelope = {
        "error": {
            "message": f"{message} (request id: {request_id})",
            "type": "comet_api_error",
            "param": "",
            "code": code,
        }
    }
    return json_reply(status, envelope)


async def apply_fault(
    fault: Fault,
    normal: Callable[[], Awaitable[Reply]],
    *,
    request_id: str,
    moved_url: str,
) -> Reply:
    """Answer a request the way *fault* says.

    Args:
        fault: The fault for this request (`Fault.ok()` for none).
        normal: Does the request's real work (e.g. creates the prediction) and
            returns the normal reply; called at most once.
        request_id: Request id for error envelopes.
        moved_url: Default redirect target.
    """
    match fault.kind:
        case "ok":
            return await normal()
        case "status" | "rate_limited":
            return _fault_reply(fault, request_id)
        case "ghost":
            done = await normal()
            return attrs.evolve(
                _fault_reply(fault, request_id), prediction_id=done.prediction_id
            )
        case "reset":
            done = await normal() if fault.after_create else Reply(0)
            return Reply(0, drop=True, prediction_id=done.prediction_id)
        case "delay":
            if fault.after_create:
                done = await normal()
                await asyncio.sleep(fault.seconds)
                return done
            await asyncio.sleep(fault.seconds)
            return await normal()
        case "html":
            done = await normal()
            status = fault.status_code or 200
            return Reply(
                status, BAD_GATEWAY_PAGE, "text/html", prediction_id=done.prediction_id
            )
        case "truncated":
            done = await normal()
            return attrs.evolve(done, body=done.body[: len(done.body) // 2])
        case "redirect":
            location = fault.location or moved_url
            return Reply(fault.status_code or 301, headers=(("Location", location),))
        case "raw":
            done = await normal()
            return Reply(
                fault.status_code or 200,
                _raw_body(fault.body, done.body),
                fault.content_type,
                headers=fault.headers,
                prediction_id=done.prediction_id,
            )


def _raw_body(body: Any, normal_body: bytes) -> bytes:
    if callable(body):
        try:
            normal = json.loads(normal_body)
        except ValueError:
            normal = None
        body = body(normal)
    if isinstance(body, str):
        return body.encode()
    if isinstance(body, bytes):
        return body
    return json.dumps(body).encode()


def _fault_reply(fault: Fault, request_id: str) -> Reply:
    status = fault.status_code or 500
    if isinstance(fault.body, bytes | str):
        body = fault.body.encode() if isinstance(fault.body, str) else fault.body
        return Reply(status, body, fault.content_type, headers=fault.headers)
    if fault.body is not None:
        return attrs.evolve(json_reply(status, fault.body), headers=fault.headers)
    if fault.kind == "rate_limited":
        seconds = _whole_seconds(dict(fault.headers).get("Retry-After"))
        detail = f"Request was throttled. Your rate limit resets in ~{seconds}s."
        return attrs.evolve(
            json_reply(status, {"detail": detail}), headers=fault.headers
        )
    message = fault.message or _phrase(status)
    return attrs.evolve(comet_error(status, message, request_id), headers=fault.headers)


def _whole_seconds(retry_after: str | None) -> int:
    try:
        return max(1, math.ceil(float(retry_after or "1")))
    except ValueError:  # an HTTP date: the body only needs a plausible number
        return 1


def _phrase(status: int) -> str:
    if status in _PHRASES:
        return _PHRASES[status]
    try:
        return HTTPStatus(status).phrase.lower()
    except ValueError:
        return "upstream error"
