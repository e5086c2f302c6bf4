"""Creates under a gateway's limits: learned pacing, 429s retried, fatal stops."""

from __future__ import annotations

import asyncio
import itertools
import time

import aiohttp
import pytest

from comet_replicate_async import (
    AuthenticationError,
    BatchStoppedError,
    RateLimitError,
    RetryPolicy,
    Session,
)
from comet_replicate_async._exceptions import APIError, NotFoundError, ServerError
from comet_replicate_async._limits import CreatePacer
from comet_replicate_async._retry import quota_from_headers, stops_creates
from comet_replicate_async.testing import FakeCometAPI, Fault, Latency

from helpers import SCHNELL, FakeClock, session_for

pytestmark = pytest.mark.anyio


def accept(pacer: CreatePacer, clock: FakeClock, count: int, every: float) -> None:
    """`count` creates accepted, `every` seconds apart, with callers kept waiting."""
    for _ in range(count):
        clock.advance(every)
        pacer.reserve()
        pacer.reserve()  # a second caller in line: the pace holds it back
        pacer.on_accepted()


def test_the_pace_does_not_rise_while_nobody_waits_for_it() -> None:
    clock = FakeClock()
    pacer = CreatePacer(clock=clock)
    accept(pacer, clock, 10, every=0.2)
    pacer.on_refused()
    learned = pacer.rate
    for _ in range(10):
        clock.advance(5)  # one create now and then: the pace holds nobody back
        assert pacer.reserve() == 0.0
        pacer.on_accepted()
    assert pacer.rate == learned


# The pacer, pure


def test_pacer_is_off_until_the_server_refuses() -> None:
    clock = FakeClock()
    pacer = CreatePacer(clock=clock)
    assert pacer.rate is None
    assert [pacer.reserve() for _ in range(5)] == [0.0] * 5


def test_first_refusal_paces_to_the_rate_accepted_just_before() -> None:
    clock = FakeClock()
    pacer = CreatePacer(clock=clock)
    accept(pacer, clock, 10, every=0.25)  # 4 a second
    pacer.on_refused()
    assert pacer.rate == pytest.approx(4.0, rel=0.15)
    waits = [pacer.reserve() for _ in range(4)]
    gaps = [later - earlier for earlier, later in itertools.pairwise(waits)]
    assert gaps == pytest.approx([1 / pacer.rate] * 3)


def test_a_burst_of_refusals_cuts_once_and_acceptances_probe_upwards() -> None:
    clock = FakeClock()
    pacer = CreatePacer(clock=clock)
    accept(pacer, clock, 10, every=0.2)
    pacer.on_refused()  # learned: about 5 a second
    accept(pacer, clock, 10, every=0.2)  # fast probing: +5 % each
    grown = pacer.rate
    assert grown is not None
    assert grown > 5 * 1.5
    pacer.on_refused()  # the second refusal ends fast probing
    settled = pacer.rate
    assert settled is not None
    assert settled < grown
    for _ in range(20):  # the same burst: within the cooldown, ignored
        pacer.on_refused()
    assert pacer.rate == settled
    clock.advance(5)
    pacer.on_refused()
    assert pacer.rate == pytest.approx(settled * 0.98)
    cut = pacer.rate
    accept(pacer, clock, 10, every=0.2)
    assert pacer.rate == pytest.approx(cut * (1 + 0.0003 / cut) ** 10, rel=1e-3)


async def test_a_pause_voids_the_slots_it_swallowed() -> None:
    pacer = CreatePacer(per_minute=600)  # one every 0.1 s
    assert pacer.reserve() == 0.0
    assert pacer.reserve() == pytest.approx(0.1, abs=0.01)
    pacer.pause(0.3)
    # The caller whose slot fell inside the pause takes a new one after it.
    started = time.monotonic()
    await pacer.wait_turn()
    assert time.monotonic() - started >= 0.3
    assert pacer.reserve() == pytest.approx(
        0.4 - (time.monotonic() - started), abs=0.05
    )


def test_ceiling_from_creates_per_minute_always_holds() -> None:
    clock = FakeClock()
    pacer = CreatePacer(per_minute=60, clock=clock)
    assert pacer.rate == 1.0
    accept(pacer, clock, 10, every=0.1)
    pacer.on_refused()
    accept(pacer, clock, 50, every=0.1)
    assert pacer.rate is not None
    assert pacer.rate <= 1.0


def test_ratelimit_headers_spread_the_quota_and_wait_for_its_reset() -> None:
    clock = FakeClock()
    pacer = CreatePacer(clock=clock)
    pacer.on_accepted(remaining=4, reset=2.0)  # 4 left in 2 s: one per 0.5 s
    assert [pacer.reserve() for _ in range(3)] == pytest.approx([0.0, 0.5, 1.0])
    clock.advance(10)  # the hint has expired
    pacer.on_accepted(remaining=0, reset=3.0)  # spent: wait for the reset
    assert pacer.reserve() == pytest.approx(3.0)


def test_quota_headers_are_read_only_when_both_make_sense() -> None:
    headers = {"ratelimit-remaining": "7", "ratelimit-reset": "1.5"}
    assert quota_from_headers(headers) == (7, 1.5)
    assert quota_from_headers({"ratelimit-remaining": "7"}) is None
    assert quota_from_headers({**headers, "ratelimit-reset": "soon"}) is None
    assert quota_from_headers({**headers, "ratelimit-remaining": "-1"}) is None


# Retry decisions, pure


def test_a_refused_create_is_retried_past_max_attempts_a_query_is_not() -> None:
    policy = RetryPolicy(max_attempts=2)
    refused = RateLimitError("throttled", status_code=429, retry_after=1.0)
    assert policy.delay("create", refused, attempt=50) == 1.0
    assert policy.delay("query", refused, attempt=50) is None


@pytest.mark.parametrize(
    ("error", "fatal"),
    [
        (AuthenticationError("invalid token", status_code=401), True),
        (APIError("forbidden", status_code=403), False),  # a bare 403 is not typed
        (NotFoundError("no such model", status_code=404), True),
        (APIError("no quota", status_code=403, code="insufficient_user_quota"), True),
        (APIError("pay", status_code=402), True),
        (RateLimitError("slow down", status_code=429), False),
        (ServerError("oops", status_code=500), False),
    ],
)
def test_which_create_errors_stop_a_batch(error: APIError, fatal: bool) -> None:
    assert stops_creates(error) is fatal


# Against the fake


@pytest.mark.slow
async def test_every_refused_create_is_retried_and_counted() -> None:
    async with FakeCometAPI(
        creates_per_second=50, burst=2, default_latency=Latency.constant(0.01)
    ) as fake:
        async with session_for(fake, retry=RetryPolicy(max_attempts=1)) as session:
            items = await session.gather(
                SCHNELL, [{"prompt": f"p{i}"} for i in range(8)]
            )
            stats = session.stats
        refused = fake.stats.requests_log

    assert [item.error for item in items] == [None] * 8
    refusals = sum(r.route == "create" and r.status == 429 for r in refused)
    assert refusals > 0
    assert stats.creates_refused == refusals
    assert stats.create_rate is not None
    assert fake.stats.duplicates == 0


async def test_a_create_refused_until_its_deadline_raises_rate_limit_error() -> None:
    async with FakeCometAPI() as fake:
        fake.script("create", *[Fault.rate_limited("0.05")] * 200)
        async with session_for(fake) as session:
            with pytest.raises(RateLimitError):
                await session.run(SCHNELL, {"prompt": "never"}, timeout=0.5)
        assert fake.predictions == {}


async def test_creates_waiting_their_turn_do_not_hold_polls_back() -> None:
    async with FakeCometAPI(default_latency=Latency.constant(0.02)) as fake:
        async with session_for(fake, creates_per_minute=120) as session:
            batch = session.as_completed(
                SCHNELL, [{"prompt": f"p{i}"} for i in range(3)]
            )
            first = await anext(batch)
            creates_when_first_done = sum(
                r.route == "create" for r in fake.stats.requests_log
            )
            rest = [item async for item in batch]

    # One create every 0.5 s: the first result came before the second create.
    assert first.error is None
    assert creates_when_first_done == 1
    assert len(rest) == 2


async def test_a_wrong_key_stops_the_batch_after_the_creates_in_flight() -> None:
    # Each create takes 0.2 s on the server, so the creates in flight when the
    # first 401 went back are exactly those that arrived before it.
    async with FakeCometAPI(create_delay=0.2) as fake:
        async with Session("wrong-key", base_url=fake.base_url) as session:
            items = await session.gather(
                SCHNELL, [{"prompt": f"p{i}"} for i in range(300)]
            )
        creates = [r for r in fake.stats.requests_log if r.route == "create"]

    first_401_sent = min(r.monotonic for r in creates) + 0.2
    assert all(r.status == 401 for r in creates)
    assert all(r.monotonic < first_401_sent for r in creates)
    assert len(items) == 300
    refused = [item for item in items if isinstance(item.error, AuthenticationError)]
    not_sent = [item for item in items if isinstance(item.error, BatchStoppedError)]
    assert len(refused) == len(creates)
    assert len(refused) + len(not_sent) == 300
    reasons = [
        i.error.reason for i in not_sent if isinstance(i.error, BatchStoppedError)
    ]
    assert all(isinstance(reason, AuthenticationError) for reason in reasons)
    assert "nothing was sent" in str(not_sent[0].error)


# The fake's limit shapes


async def create_statuses(
    fake: FakeCometAPI, count: int
) -> list[tuple[int, dict[str, str]]]:
    """Send `count` creates at once, raw; return each reply's status and headers."""
    url = f"{fake.base_url}/replicate/v1/models/{SCHNELL}/predictions"
    headers = {"Authorization": f"Bearer {fake.api_key}"}

    async def one(http: aiohttp.ClientSession) -> tuple[int, dict[str, str]]:
        async with http.post(
            url, json={"input": {"prompt": "x"}}, headers=headers
        ) as r:
            return r.status, {k.lower(): v for k, v in r.headers.items()}

    async with aiohttp.ClientSession() as http:
        return list(await asyncio.gather(*(one(http) for _ in range(count))))


async def test_fake_token_bucket_admits_its_burst_then_names_the_wait() -> None:
    async with FakeCometAPI(
        creates_per_second=1, burst=2, ratelimit_headers=True
    ) as fake:
        replies = await create_statuses(fake, 5)
    statuses = sorted(status for status, _ in replies)
    assert statuses == [201, 201, 429, 429, 429]
    refused = [headers for status, headers in replies if status == 429]
    assert all(headers["retry-after"] == "1" for headers in refused)
    assert all(headers["ratelimit-remaining"] == "0" for headers in refused)
    assert all(float(headers["ratelimit-reset"]) <= 1.0 for headers in refused)


async def test_fake_sliding_window_reports_its_quota() -> None:
    async with FakeCometAPI(creates_per_minute=3, ratelimit_headers=True) as fake:
        replies = await create_statuses(fake, 4)
    accepted = sorted(int(h["ratelimit-remaining"]) for s, h in replies if s == 201)
    assert accepted == [0, 1, 2]
    assert sum(status == 429 for status, _ in replies) == 1
    assert all(h["ratelimit-limit"] == "3" for _, h in replies)


async def test_fake_caps_requests_in_flight_without_naming_a_wait() -> None:
    async with FakeCometAPI(max_in_flight=2, create_delay=0.2) as fake:
        replies = await create_statuses(fake, 5)
    assert sorted(status for status, _ in replies) == [201, 201, 429, 429, 429]
    assert all("retry-after" not in headers for _, headers in replies)
