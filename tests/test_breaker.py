"""The circuit breaker on creates, and the create deadline.

The state machine runs on a `FakeClock`; the outage runs a batch of 220 inputs
against the fake, whose creates all answer nginx's 502 page for a few seconds.
"""

from __future__ import annotations

import math
import random

import anyio
import pytest

from comet_replicate_async import (
    AmbiguousSubmitError,
    CometReplicateError,
    Event,
    PollPolicy,
    PredictionAbandoned,
    PredictionTimeout,
    RateLimitError,
    RetryPolicy,
    ServerError,
)
from comet_replicate_async._breaker import CreateBreaker, Ticket
from comet_replicate_async.testing import FakeCometAPI, Fault, Latency

from helpers import SCHNELL, FakeClock, session_for

pytestmark = pytest.mark.anyio

BAD_GATEWAY = ServerError("502 Bad Gateway", status_code=502)
# Quick retries and a quick breaker, with the default decisions.
QUICK = RetryPolicy(initial_backoff=0.01, max_backoff=0.05, breaker_backoff=1.0)
QUICK_POLLS = PollPolicy(min_interval=0.05, max_interval=0.1)


def opened_breaker(
    clock: FakeClock, news: list[tuple[str, float | None]]
) -> CreateBreaker:
    breaker = CreateBreaker(
        clock=clock,
        rng=random.Random(1),
        on_change=lambda state, _error, delay: news.append((state, delay)),
    )
    first = breaker.admit()
    assert isinstance(first, Ticket)
    breaker.accepted(first)
    tickets = [breaker.admit() for _ in range(8)]  # a wave in flight
    for ticket in tickets:
        assert isinstance(ticket, Ticket)
        breaker.failed(ticket, BAD_GATEWAY)
    return breaker


async def test_a_new_breaker_lets_creates_go_the_budget_paces_the_first() -> None:
    # A session's first creates are let out slowly by the request budget's slow
    # start; the breaker itself holds nothing back until a create fails.
    breaker = CreateBreaker(clock=FakeClock())

    tickets = [breaker.admit() for _ in range(3)]

    assert all(isinstance(t, Ticket) and not t.solo for t in tickets)
    assert breaker.state == "closed"


async def test_a_failure_sends_the_next_create_alone_until_one_is_accepted() -> None:
    breaker = CreateBreaker(clock=FakeClock())
    first = breaker.admit()
    assert isinstance(first, Ticket)
    breaker.accepted(first)
    ticket = breaker.admit()
    assert isinstance(ticket, Ticket)

    breaker.failed(ticket, BAD_GATEWAY)

    solo = breaker.admit()
    assert isinstance(solo, Ticket)
    assert solo.solo
    assert breaker.admit() == math.inf
    breaker.accepted(solo)
    assert breaker.state == "closed"
    assert isinstance(breaker.admit(), Ticket)


async def test_three_failures_in_a_row_open_it_and_one_probe_closes_it() -> None:
    clock = FakeClock()
    news: list[tuple[str, float | None]] = []
    breaker = opened_breaker(clock, news)

    # The wave of 8 opened it once; the 5 after the third were counted already.
    assert breaker.state == "open"
    assert breaker.openings == 1
    [(state, delay)] = news
    assert state == "open"
    assert delay is not None
    assert 5.0 <= delay <= 6.25
    assert breaker.admit() == clock.now() + delay  # nothing goes before the probe

    clock.advance(delay)
    probe = breaker.admit()
    assert isinstance(probe, Ticket)
    assert probe.solo
    assert breaker.state == "probing"
    assert breaker.admit() == math.inf  # one probe, not two
    breaker.accepted(probe)

    assert breaker.state == "closed"
    assert news[-1] == ("closed", None)
    assert isinstance(breaker.admit(), Ticket)


async def test_a_failed_probe_doubles_the_wait_and_says_nothing_new() -> None:
    clock = FakeClock()
    news: list[tuple[str, float | None]] = []
    breaker = opened_breaker(clock, news)
    first_wait = news[0][1]
    assert first_wait is not None
    clock.advance(first_wait)
    probe = breaker.admit()
    assert isinstance(probe, Ticket)

    breaker.failed(probe, BAD_GATEWAY)

    assert breaker.state == "open"
    assert breaker.openings == 1
    assert len(news) == 1
    wait = breaker.probe_in
    assert wait is not None
    assert 10.0 <= wait <= 12.5


async def test_a_refused_probe_lets_another_probe_go() -> None:
    clock = FakeClock()
    breaker = opened_breaker(clock, [])
    clock.advance(7.0)
    probe = breaker.admit()
    assert isinstance(probe, Ticket)

    breaker.released(probe)  # a 429: no news of the gateway

    assert breaker.state == "probing"
    assert isinstance(breaker.admit(), Ticket)


async def test_waiting_creates_go_when_the_probe_is_accepted() -> None:
    clock = FakeClock()
    breaker = opened_breaker(clock, [])
    admitted: list[Ticket] = []

    async def create() -> None:
        admitted.append(await breaker.wait_admitted())

    async with anyio.create_task_group() as group:
        for _ in range(5):
            group.start_soon(create)
        await clock.run_timers_until(lambda: len(admitted) == 1)
        assert admitted[0].solo  # the probe, alone
        breaker.accepted(admitted[0])
    assert len(admitted) == 5


async def test_a_create_held_past_its_deadline_created_nothing() -> None:
    clock = FakeClock()
    breaker = opened_breaker(clock, [])

    errors: list[PredictionTimeout] = []

    async def create() -> None:
        try:
            await breaker.wait_admitted(deadline=clock.now() + 2.0)
        except PredictionTimeout as error:
            errors.append(error)

    async with anyio.create_task_group() as group:
        group.start_soon(create)
        await clock.run_timers_until(lambda: bool(errors))
    assert clock.now() == pytest.approx(102.0)
    assert "nothing was created" in str(errors[0])
    assert errors[0].prediction_id is None


# -- against the fake ---------------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(90)
async def test_an_outage_mid_batch_costs_a_few_ambiguous_items_and_loses_none() -> None:
    events: list[Event] = []
    inputs = [{"prompt": f"p{n}"} for n in range(220)]
    outcomes: dict[int, CometReplicateError | None] = {}
    async with FakeCometAPI(latency=Latency.constant(0.02)) as fake:
        async with session_for(
            fake,
            max_concurrency=8,
            retry=QUICK,
            poll=QUICK_POLLS,
            on_event=events.append,
        ) as session:
            async for item in session.as_completed(SCHNELL, inputs, timeout=60):
                outcomes[item.index] = item.error
                if len(outcomes) == 20:
                    fake.script_outage(3.0)
            stats = session.stats

    ambiguous = [i for i, error in outcomes.items() if error is not None]
    assert len(outcomes) == 220
    assert all(isinstance(outcomes[i], AmbiguousSubmitError) for i in ambiguous)
    assert 1 <= len(ambiguous) <= 10
    # Every other input was created and succeeded; the outage created nothing.
    assert len(fake.predictions) == 220 - len(ambiguous)
    assert fake.stats.count("create", 502) == len(ambiguous)
    assert stats.breaker == "closed"
    assert stats.breaker_openings == 1
    kinds = [event.kind for event in events if event.kind.startswith("breaker")]
    assert kinds == ["breaker_opened", "breaker_closed"]


@pytest.mark.slow
@pytest.mark.timeout(60)
async def test_an_outage_from_the_first_create_costs_three_and_a_probe_or_none() -> (
    None
):
    inputs = [{"prompt": f"p{n}"} for n in range(200)]
    async with FakeCometAPI(latency=Latency.constant(0.02)) as fake:
        fake.script_outage(1.5, from_first_create=True)
        async with session_for(
            fake, max_concurrency=8, retry=QUICK, poll=QUICK_POLLS
        ) as session:
            items = await session.gather(SCHNELL, inputs, timeout=60)

    ambiguous = [item for item in items if item.error is not None]
    assert all(isinstance(item.error, AmbiguousSubmitError) for item in ambiguous)
    # Alone, one after the other: three open it; the probe 1 to 1.25 s later
    # fails (unless a slow machine took that long for the three); the next one,
    # 2 to 2.5 s after that, is accepted.
    assert 3 <= len(ambiguous) <= 4
    assert len(fake.predictions) == 200 - len(ambiguous)


@pytest.mark.timeout(30)
async def test_closing_with_a_grace_ends_the_creates_the_breaker_holds() -> None:
    slow_probe = RetryPolicy(breaker_backoff=60.0)
    async with FakeCometAPI() as fake:
        fake.script_outage(60.0, from_first_create=True)
        session = session_for(fake, retry=slow_probe)
        async with session:
            futures = [session.submit(SCHNELL, {"prompt": f"p{n}"}) for n in range(6)]
            with anyio.fail_after(5):
                while session.stats.breaker != "open":  # noqa: ASYNC110
                    await anyio.sleep(0.01)
            # Within the test's timeout: the probe would be a minute away.
            await session.aclose(grace=0.1)
        errors = [future.exception() for future in futures]

    # Three went alone and may have created; the three held ones never went.
    assert sum(isinstance(error, AmbiguousSubmitError) for error in errors) == 3
    held = [error for error in errors if isinstance(error, PredictionAbandoned)]
    assert len(held) == 3
    assert all("not started" in str(error) for error in held)
    assert fake.stats.count("create") == 3


# -- the create deadline ----------------------------------------------------


@pytest.mark.timeout(20)
async def test_create_under_a_429_that_never_lifts_raises_at_the_deadline() -> None:
    async with FakeCometAPI() as fake:
        fake.script("create", *[Fault.rate_limited("1")] * 50)
        async with session_for(fake, timeout=1.5) as session:
            started = anyio.current_time()
            with pytest.raises(RateLimitError):
                await session.create(SCHNELL, {"prompt": "a"})
            took = anyio.current_time() - started
            with pytest.raises(RateLimitError):
                await session.create(SCHNELL, {"prompt": "a"}, timeout=0.5)

    assert took <= 1.5
    assert len(fake.predictions) == 0
