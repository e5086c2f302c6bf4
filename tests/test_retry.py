from __future__ import annotations

import math
import random
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from comet_replicate_async import (
    APIConnectionError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    CometReplicateError,
    RateLimitError,
    RetryPolicy,
    ServerError,
    UnexpectedResponseError,
)
from comet_replicate_async._retry import (
    compute_backoff,
    create_may_have_happened,
    parse_retry_after,
    retry_after_from_body,
    retry_after_from_response,
)

NOW = datetime(2026, 11, 21, 12, 0, 0, tzinfo=UTC)


def server(status: int, code: str | None = None) -> ServerError:
    return ServerError("boom", status_code=status, code=code)


@given(
    attempt=st.integers(min_value=1, max_value=10_000),
    initial=st.floats(min_value=0, max_value=60, allow_nan=False),
    maximum=st.floats(min_value=0, max_value=600, allow_nan=False),
    exp_base=st.floats(min_value=1, max_value=10, allow_nan=False),
    seed=st.integers(),
)
def test_backoff_stays_within_zero_and_the_cap(
    attempt: int, initial: float, maximum: float, exp_base: float, seed: int
) -> None:
    delay = compute_backoff(
        attempt,
        initial=initial,
        maximum=maximum,
        exp_base=exp_base,
        rng=random.Random(seed),
    )

    try:
        cap = initial * exp_base ** (attempt - 1)
    except OverflowError:
        cap = math.inf if initial > 0 else 0.0
    assert 0 <= delay <= min(maximum, cap)


@given(attempt=st.integers(min_value=1, max_value=30))
def test_backoff_cap_grows_until_the_maximum(attempt: int) -> None:
    # With a generator that always draws the top of the range, the wait is the cap.
    class Top(random.Random):
        def uniform(self, a: float, b: float) -> float:
            return b

    first = compute_backoff(attempt, initial=0.5, maximum=30, rng=Top())
    second = compute_backoff(attempt + 1, initial=0.5, maximum=30, rng=Top())

    assert first <= second <= 30
    assert first == min(30, 0.5 * 2 ** (attempt - 1))


@given(seconds=st.integers(min_value=0, max_value=10**6))
def test_retry_after_delta_seconds(seconds: int) -> None:
    assert parse_retry_after(str(seconds)) == seconds


@given(
    seconds=st.floats(
        min_value=0, max_value=10**6, allow_nan=False, allow_infinity=False
    )
)
def test_retry_after_fractional_seconds(seconds: float) -> None:
    assert parse_retry_after(repr(seconds)) == pytest.approx(seconds)


@given(seconds=st.integers(min_value=0, max_value=10**6))
def test_retry_after_http_date(seconds: int) -> None:
    value = format_datetime(NOW + timedelta(seconds=seconds), usegmt=True)

    assert parse_retry_after(value, now=NOW) == seconds


def test_retry_after_date_in_the_past_means_now() -> None:
    value = format_datetime(NOW - timedelta(seconds=30), usegmt=True)

    assert parse_retry_after(value, now=NOW) == 0


@pytest.mark.timeout(120)
@given(text=st.text(max_size=40))
def test_retry_after_never_raises(text: str) -> None:
    result = parse_retry_after(text, now=NOW)

    assert result is None or result >= 0


@pytest.mark.parametrize("value", ["", "soon", "-5", "nan", "inf"])
def test_retry_after_rejects_nonsense(value: str) -> None:
    assert parse_retry_after(value, now=NOW) is None


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("Request was throttled. Your rate limit resets in ~30s.", 30),
        ("Request was throttled. Expected available in 1 second.", 1),
        ("Request was throttled. Expected available in 12 seconds.", 12),
        ("resets in ~2.5s", 2.5),
        ("something else", None),
    ],
)
def test_replicate_throttle_bodies(text: str, seconds: float | None) -> None:
    assert retry_after_from_body(text) == seconds


def test_retry_after_ms_header_is_read_first() -> None:
    headers = {"retry-after-ms": "250", "retry-after": "9"}

    assert retry_after_from_response(headers, "") == 0.25


def test_policy_honours_a_requested_wait() -> None:
    error = RateLimitError("slow down", status_code=429, retry_after=1.5)

    assert RetryPolicy().delay("create", error, 1) == 1.5
    assert RetryPolicy().delay("query", error, 1) == 1.5


def test_policy_gives_up_when_the_requested_wait_is_too_long() -> None:
    error = RateLimitError("slow down", status_code=429, retry_after=600)

    assert RetryPolicy(max_retry_after=120).delay("query", error, 1) is None


def test_policy_gives_up_after_max_attempts() -> None:
    error = server(503)
    policy = RetryPolicy(max_attempts=3)

    assert policy.delay("query", error, 2) is not None
    assert policy.delay("query", error, 3) is None


SENT = APIConnectionError("reset", request_sent=True)
NOT_SENT = APIConnectionError("refused", request_sent=False)
READ_TIMEOUT = APITimeoutError("read", request_sent=True)
CONNECT_TIMEOUT = APITimeoutError("connect", request_sent=False)
BAD_BODY = UnexpectedResponseError("html", status_code=200)
REDIRECT = UnexpectedResponseError("moved", status_code=301)

# (error, retried on query, retried on create, create may have happened)
DECISIONS: list[tuple[CometReplicateError, bool, bool, bool]] = [
    (RateLimitError("x", status_code=429), True, True, False),
    (NOT_SENT, True, True, False),
    (CONNECT_TIMEOUT, True, True, False),
    (SENT, True, False, True),
    (READ_TIMEOUT, True, False, True),
    (server(500), True, False, True),
    (server(500, "invalid_request"), False, False, False),
    (server(502), True, False, True),
    (server(503), True, False, True),
    (server(504), True, False, True),
    (server(524), True, False, True),
    (server(501), False, False, True),
    (BAD_BODY, True, False, True),
    (REDIRECT, False, False, False),
    (BadRequestError("x", status_code=400), False, False, False),
    (AuthenticationError("x", status_code=401), False, False, False),
]


@pytest.mark.parametrize(("error", "query", "create", "ambiguous"), DECISIONS)
def test_retry_decisions(
    error: CometReplicateError, query: bool, create: bool, ambiguous: bool
) -> None:
    policy = RetryPolicy()

    assert policy.is_retryable("query", error) is query
    assert policy.is_retryable("create", error) is create
    assert create_may_have_happened(error) is ambiguous


@pytest.mark.parametrize(("error", "query", "create", "ambiguous"), DECISIONS)
def test_opting_in_retries_ambiguous_creates_like_queries(
    error: CometReplicateError, query: bool, create: bool, ambiguous: bool
) -> None:
    policy = RetryPolicy(retry_ambiguous_creates=True)

    assert policy.is_retryable("create", error) is query


def test_polls_wait_out_more_failures_than_a_single_call() -> None:
    policy = RetryPolicy(max_attempts=2)

    assert policy.delay("query", server(503), 2) is None
    assert policy.poll_delay(server(503), 2, max_failures=5) is not None
    assert policy.poll_delay(server(503), 5, max_failures=5) is None


def test_polls_shorten_a_long_requested_wait_instead_of_giving_up() -> None:
    error = RateLimitError("slow down", status_code=429, retry_after=600)
    policy = RetryPolicy(max_retry_after=120)

    assert policy.delay("query", error, 1) is None
    assert policy.poll_delay(error, 1, max_failures=5) == 120


def test_polls_give_up_on_an_unreadable_reply_after_max_attempts() -> None:
    policy = RetryPolicy(max_attempts=2)

    assert policy.poll_delay(BAD_BODY, 1, max_failures=50) is not None
    assert policy.poll_delay(BAD_BODY, 2, max_failures=50) is None
    assert policy.poll_delay(REDIRECT, 1, max_failures=50) is None
