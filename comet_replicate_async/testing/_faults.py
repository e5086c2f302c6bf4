"""What can go wrong with a request: scripted faults and random faults."""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any, Final, Literal

import attrs

__all__ = [
    "Fault",
    "FaultKind",
    "FaultRates",
    "check_probability",
]

FaultKind = Literal[
    "ok", "status", "rate_limited", "ghost", "reset", "delay", "html", "truncated",
    "redirect", "raw",
]  # fmt: skip

#: The 5xx codes CometAPI documents as retryable platform failures.
SERVER_ERROR_CODES: Final = (500, 502, 503, 504, 524)


def _freeze_headers(headers: Mapping[str, str] | None) -> tuple[tuple[str, str], ...]:
    return tuple((headers or {}).items())


def check_probability(
    _instance: object, attribute: attrs.Attribute[float], value: float
) -> None:
    """Attrs validator: *value* is a share between 0 and 1."""
    if not 0.0 <= value <= 1.0:
        msg = f"{attribute.name} must be within [0, 1], got {value}"
        raise ValueError(msg)


@attrs.frozen
class Fault:
    """One scripted misbehaviour, applied to one request.

    Build faults with the class methods and queue them with
    `FakeCometAPI.script(route, *faults)`. Faults marked *after_create* let
    a create go through (the prediction exists) before the reply goes wrong,
    which is what makes a blind client retry pay twice.

    Attributes:
        kind: Which misbehaviour.
        status_code: HTTP status of the reply, when the fault sets one.
        body: Reply body: JSON-able values are encoded, `str`/`bytes` sent as is.
        headers: Extra reply headers.
        message: Message of the CometAPI error envelope.
        after_create: Whether the normal work happens before the fault.
        seconds: Delay before replying.
        location: Redirect target (`None`: `/moved` + the request path).
        content_type: `Content-Type` of a raw reply.
    """

    kind: FaultKind
    status_code: int | None = None
    body: Any = attrs.field(default=None, hash=False)
    headers: tuple[tuple[str, str], ...] = attrs.field(
        default=(), converter=_freeze_headers
    )
    message: str | None = None
    after_create: bool = False
    seconds: float = 0.0
    location: str | None = None
    content_type: str = "application/json"

    @classmethod
    def ok(cls) -> Fault:
        """No scripted fault: the request goes on as if the script were empty."""
        return cls("ok")

    @classmethod
    def status(
        cls,
        code: int,
        *,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
        message: str | None = None,
    ) -> Fault:
        """Reply *code* with a CometAPI error envelope (or *body*); create nothing."""
        return cls("status", code, body, headers, message)

    @classmethod
    def rate_limited(cls, retry_after: str | None = "1", *, body: Any = None) -> Fault:
        """Reply 429 with Replicate's throttle body; create nothing.

        Args:
            retry_after: `Retry-After` value sent verbatim (seconds such as
                `"1.5"`, or an HTTP date); `None` sends no header.
            body: Replaces the default `{"detail": "Request was throttled..."}`.
        """
        headers = {} if retry_after is None else {"Retry-After": retry_after}
        return cls("rate_limited", 429, body, headers)

    @classmethod
    def ghost(cls, code: int = 502) -> Fault:
        """Create the prediction, then reply *code* as if it had failed."""
        return cls("ghost", code, after_create=True)

    @classmethod
    def reset(cls, *, after_create: bool = False) -> Fault:
        """Close the connection abruptly without any reply."""
        return cls("reset", after_create=after_create)

    @classmethod
    def delay(cls, seconds: float, *, after_create: bool = True) -> Fault:
        """Wait *seconds*, then reply normally (for read-timeout tests).

        With *after_create* (the default) the prediction is created first and
        only the reply is late: a create answered late, which is how a test
        makes a cancellation land while a billed create is in flight.
        """
        return cls("delay", seconds=seconds, after_create=after_create)

    @classmethod
    def html(cls, status: int = 200) -> Fault:
        """Reply an HTML "502 Bad Gateway" page with *status* (after creating)."""
        return cls("html", status, after_create=True)

    @classmethod
    def truncated(cls) -> Fault:
        """Reply the normal status with the first half of the JSON (after creating)."""
        return cls("truncated", after_create=True)

    @classmethod
    def raw(
        cls,
        body: Any,
        *,
        status: int = 200,
        content_type: str = "application/json",
        headers: Mapping[str, str] | None = None,
    ) -> Fault:
        """Reply exactly *body* with *status*, after doing the normal work.

        *body* is sent as is when `bytes` or `str`; a callable is given the
        normal reply's decoded JSON (None if it is not JSON) and its result is
        sent; anything else is encoded as JSON. With `FakeCometAPI.script_polls`
        this serves any reply a real gateway might send, for one prediction.

        Usage:

        ```python
        fake.script_polls(prediction.id, Fault.raw({"status": "SUCCEEDED"}))
        fake.script_polls(
            prediction.id, Fault.raw(lambda normal: {**normal, "id": "other"})
        )
        ```
        """
        return cls(
            "raw", status, body, headers, after_create=True, content_type=content_type
        )

    @classmethod
    def redirect(cls, location: str | None = None, status: int = 301) -> Fault:
        """Reply *status* pointing at *location*, like a mistyped base URL does."""
        return cls("redirect", status, location=location)


@attrs.frozen
class FaultRates:
    """Random faults: each rate is the share of create and query requests hit.

    The four request rates partition one random draw, so at most one applies to
    a request and together they may not exceed 1.
    """

    server_error_rate: float = attrs.field(default=0.0, validator=check_probability)
    ghost_share: float = attrs.field(default=0.0, validator=check_probability)
    reset_rate: float = attrs.field(default=0.0, validator=check_probability)
    malformed_rate: float = attrs.field(default=0.0, validator=check_probability)
    slow_rate: float = attrs.field(default=0.0, validator=check_probability)
    slow_delay: float = attrs.field(default=1.0, validator=attrs.validators.ge(0.0))

    def __attrs_post_init__(self) -> None:
        total = self.server_error_rate + self.reset_rate + self.malformed_rate
        if total + self.slow_rate > 1.0:
            msg = "server_error_rate + reset_rate + malformed_rate + slow_rate > 1"
            raise ValueError(msg)

    def draw(self, route: Literal["create", "query"], rng: random.Random) -> Fault:
        """The fault for one request (`Fault.ok()` for most of them)."""
        roll = rng.random()
        if roll < self.server_error_rate:
            if route == "create" and rng.random() < self.ghost_share:
                return Fault.ghost(502)
            return Fault.status(rng.choice(SERVER_ERROR_CODES))
        roll -= self.server_error_rate
        if roll < self.reset_rate:
            # A reset may hit before the gateway forwarded the create, or after.
            return Fault.reset(after_create=route == "create" and rng.random() < 0.5)
        roll -= self.reset_rate
        if roll < self.malformed_rate:
            # What a broken proxy sends: its own error page, or a cut-off body.
            return Fault.html(502) if rng.random() < 0.5 else Fault.truncated()
        roll -= self.malformed_rate
        if roll < self.slow_rate:
            return Fault.delay(self.slow_delay)
        return Fault.ok()
