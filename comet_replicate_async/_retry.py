"""Pure retry decisions: what may be retried, when, and after how long.

The money rule: a create is retried only when it provably created nothing (a 429,
or a connection that failed before the request was sent). Anything that fails
after the request left is ambiguous: the prediction may exist and be billed.
Queries are reads and are retried on every transient failure.
"""

from __future__ import annotations

import email.utils
import math
import random
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Literal

import attrs

from ._exceptions import (
    APIConnectionError,
    APIError,
    AuthenticationError,
    CometReplicateError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ServerError,
    UnexpectedResponseError,
)
from ._refusals import Refusal, refusal_for

__all__ = [
    "CallKind",
    "RetryPolicy",
    "compute_backoff",
    "create_may_have_happened",
    "parse_retry_after",
    "quota_from_headers",
    "refusal_of",
    "retry_after_from_body",
    "retry_after_from_response",
    "stops_creates",
]

CallKind = Literal["create", "query"]

_RETRYABLE_QUERY_STATUSES = frozenset({500, 502, 503, 504, 524})
# Replicate's throttle bodies: "... resets in ~30s." and "Expected available in 1 second."
_BODY_HINTS = (
    re.compile(r"resets in ~?\s*(\d+(?:\.\d+)?)\s*s", re.IGNORECASE),
    re.compile(r"available in\s+(\d+(?:\.\d+)?)\s*sec", re.IGNORECASE),
)


@attrs.frozen
class RetryPolicy:
    """How calls are retried.

    Args:
        max_attempts: attempts per call, the first included.
        initial_backoff: the cap of the first wait, in seconds.
        max_backoff: no computed wait exceeds this.
        exp_base: how fast the cap grows per attempt.
        max_retry_after: a server-requested wait longer than this is not waited for;
            the error is raised instead.
        retry_ambiguous_creates: also retry a create whose outcome is unknown
            (5xx, reset or timeout after sending). **This may pay twice**: the first
            prediction may exist and be billed.
        breaker_failures: ambiguous create failures in a row (none accepted
            between) that stop the session's creates: the circuit breaker.
        breaker_backoff: seconds before the first create probes a stopped
            gateway; doubled per failed probe, up to `max_breaker_backoff`.
        max_breaker_backoff: the longest wait between two probes.
    """

    max_attempts: int = attrs.field(default=6, validator=attrs.validators.ge(1))
    initial_backoff: float = attrs.field(default=0.5, validator=attrs.validators.ge(0))
    max_backoff: float = attrs.field(default=30.0, validator=attrs.validators.ge(0))
    exp_base: float = attrs.field(default=2.0, validator=attrs.validators.ge(1))
    max_retry_after: float = attrs.field(
        default=120.0, validator=attrs.validators.ge(0)
    )
    retry_ambiguous_creates: bool = False
    breaker_failures: int = attrs.field(default=3, validator=attrs.validators.ge(1))
    breaker_backoff: float = attrs.field(default=5.0, validator=attrs.validators.gt(0))
    max_breaker_backoff: float = attrs.field(
        default=60.0, validator=attrs.validators.gt(0)
    )

    def backoff(self, attempt: int, rng: random.Random | None = None) -> float:
        """The wait after failed attempt number `attempt` (1-based), full jitter."""
        return compute_backoff(
            attempt,
            initial=self.initial_backoff,
            maximum=self.max_backoff,
            exp_base=self.exp_base,
            rng=rng,
        )

    def is_retryable(self, kind: CallKind, error: CometReplicateError) -> bool:
        """Whether `error` on a call of `kind` may be retried at all."""
        if isinstance(error, RateLimitError):
            return True
        if isinstance(error, APIConnectionError) and not error.request_sent:
            return True
        transient = _is_transient(error)
        if kind == "query":
            return transient
        return transient and self.retry_ambiguous_creates

    def delay(
        self,
        kind: CallKind,
        error: CometReplicateError,
        attempt: int,
        rng: random.Random | None = None,
    ) -> float | None:
        """Seconds to wait before the next attempt, or None to give up and raise.

        A server-requested wait (`Retry-After`, or the body's hint) replaces the
        computed backoff, unless it is longer than `max_retry_after`.
        """
        if not self.is_retryable(kind, error):
            return None
        # A refused create created nothing: it is retried until its deadline (the
        # caller's to enforce), never given up after a count of attempts.
        refused_create = kind == "create" and isinstance(error, RateLimitError)
        if attempt >= self.max_attempts and not refused_create:
            return None
        requested = getattr(error, "retry_after", None)
        if requested is not None:
            return None if requested > self.max_retry_after else requested
        # The session's create pace, not a growing backoff, spaces refused creates.
        return self.backoff(1 if refused_create else attempt, rng)

    def poll_delay(
        self,
        error: CometReplicateError,
        failures: int,
        max_failures: int,
        rng: random.Random | None = None,
    ) -> float | None:
        """Seconds to the next poll after `failures` failed queries in a row, or None.

        More patient than a single call: the prediction surely exists and is
        billed, so an outage of minutes (`max_failures` queries) is waited out, and
        a long server-requested wait is shortened to `max_retry_after`, not given
        up on. A success reply that is not a prediction is unlikely to become one:
        it is given up on after `max_attempts`, not an outage's patience.
        """
        if isinstance(error, UnexpectedResponseError):
            max_failures = min(max_failures, self.max_attempts)
        if not self.is_retryable("query", error) or failures >= max_failures:
            return None
        requested = getattr(error, "retry_after", None)
        if requested is not None:
            return float(min(requested, self.max_retry_after))
        return self.backoff(failures, rng)


def refusal_of(error: CometReplicateError) -> Refusal | None:
    """The row of the refusal table (`_refusals.py`) an error reply matches."""
    if not isinstance(error, APIError) or isinstance(error, UnexpectedResponseError):
        return None
    return refusal_for(error.code, error.error_type, error.message)


def _is_transient(error: CometReplicateError) -> bool:
    if isinstance(error, APIConnectionError):
        return True
    refusal = refusal_of(error)
    if refusal is not None and refusal.action != "ambiguous":
        return refusal.action == "retry"
    if isinstance(error, ServerError):
        return error.status_code in _RETRYABLE_QUERY_STATUSES
    # A 2xx whose body could not be read: a broken proxy, worth another read.
    return isinstance(error, UnexpectedResponseError) and 200 <= error.status_code < 300


def create_may_have_happened(error: CometReplicateError) -> bool:
    """Whether a failed create may still have created (and billed) a prediction.

    The envelope's code decides first: a row of the refusal table may prove
    that nothing was created. Otherwise the status decides.
    """
    if isinstance(error, RateLimitError):
        return False
    if isinstance(error, APIConnectionError):
        return error.request_sent
    refusal = refusal_of(error)
    if refusal is not None and refusal.created_nothing:
        return False
    if isinstance(error, ServerError):
        return True
    return isinstance(error, UnexpectedResponseError) and 200 <= error.status_code < 300


def stops_creates(error: CometReplicateError) -> bool:
    """Whether a create's error means no other create can succeed either.

    A wrong key (401), a key without access (403), a model path that does not
    exist (404), a model the gateway does not serve and a quota or billing
    refusal fail every create alike: sending more only wastes requests (and,
    for quota, may bill what slips through).
    """
    if isinstance(error, AuthenticationError | PermissionDeniedError | NotFoundError):
        return True
    refusal = refusal_of(error)
    if refusal is not None:
        return refusal.action == "stop"
    return isinstance(error, APIError) and error.status_code == 402


def compute_backoff(
    attempt: int,
    *,
    initial: float,
    maximum: float,
    exp_base: float = 2.0,
    rng: random.Random | None = None,
) -> float:
    """Exponential backoff with full jitter: uniform in [0, min(maximum, cap)].

    `cap = initial * exp_base ** (attempt - 1)`; huge attempts do not overflow.
    """
    try:
        cap = initial * exp_base ** max(attempt - 1, 0)
    except OverflowError:
        cap = math.inf if initial > 0 else 0.0
    cap = min(maximum, cap)
    return (rng or random).uniform(0.0, cap)


def parse_retry_after(value: str, *, now: datetime | None = None) -> float | None:
    """Seconds from a `Retry-After` value: delta-seconds or an HTTP-date.

    Returns None for a value that is neither; a date in the past gives 0.
    """
    value = value.strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return seconds if math.isfinite(seconds) and seconds >= 0 else None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    now = now or datetime.now(UTC)
    return max(0.0, (when - now).total_seconds())


def retry_after_from_body(text: str) -> float | None:
    """Seconds from Replicate's throttle text ("resets in ~30s", "available in 1 second")."""
    for pattern in _BODY_HINTS:
        match = pattern.search(text)
        if match:
            return float(match.group(1))
    return None


def retry_after_from_response(
    headers: Mapping[str, str], message: str, *, now: datetime | None = None
) -> float | None:
    """The wait a reply asks for: `retry-after-ms`, `Retry-After`, then the body hint."""
    if "retry-after-ms" in headers:
        try:
            milliseconds = float(headers["retry-after-ms"])
        except ValueError:
            milliseconds = math.nan
        if math.isfinite(milliseconds) and milliseconds >= 0:
            return milliseconds / 1000
    if "retry-after" in headers:
        seconds = parse_retry_after(headers["retry-after"], now=now)
        if seconds is not None:
            return seconds
    return retry_after_from_body(message)


def quota_from_headers(headers: Mapping[str, str]) -> tuple[int, float] | None:
    """`(remaining, reset seconds)` from `ratelimit-remaining` and `ratelimit-reset`.

    None unless both are present and make sense.
    """
    try:
        remaining = int(headers["ratelimit-remaining"])
        reset = float(headers["ratelimit-reset"])
    except (KeyError, ValueError):
        return None
    if remaining < 0 or not math.isfinite(reset) or reset < 0:
        return None
    return remaining, reset
