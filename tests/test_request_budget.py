"""The session's request budget: a cap on requests in flight, creates and queries
together, learned from 429s that name no wait; polls go first.

The budget's decisions on the injectable clock (no wall-clock time), then whole
sessions against the fake's per-key cap and a token bucket with a burst of 1.
"""

from __future__ import annotations

import asyncio

import anyio
import pytest

from comet_replicate_async import Session
from comet_replicate_async._limits import CreatePacer
from comet_replicate_async._request_budget import RequestBudget
from comet_replicate_async.testing import FakeCometAPI, Latency

from helpers import SCHNELL, FakeClock

pytestmark = pytest.mark.anyio


# The budget, pure


def test_nothing_limits_requests_until_one_is_refused_as_crowded() -> None:
    budget = RequestBudget(FakeClock())
    tickets = [budget.take(query=k % 2 == 0) for k in range(50)]
    assert all(tickets)
    assert len(set(tickets)) == 50
    assert budget.in_flight == 50
    assert budget.in_flight_cap is None


def test_a_crowded_refusal_caps_at_the_requests_sent_before_it() -> None:
    budget = RequestBudget(FakeClock())
    tickets = [budget.take(query=False) for _ in range(9)]
    budget.done(tickets[0])  # answered before the refusal: not held by the server
    # The sixth was refused: the four before it still in flight were the cap;
    # those sent after it do not count.
    budget.on_crowded(tickets[5])
    assert budget.in_flight_cap == 4
    budget.on_crowded(tickets[8])  # the same burst, later in line: nothing new
    assert budget.in_flight_cap == 4


def test_a_create_leaves_one_place_to_the_polls() -> None:
    budget = RequestBudget(FakeClock())
    first = [budget.take(query=False) for _ in range(4)]
    budget.on_crowded(first[3])  # cap 3
    for ticket in first:
        budget.done(ticket)
    assert budget.take(query=False)
    assert budget.take(query=False)
    assert budget.take(query=False) == 0  # the third place is the polls'
    assert budget.take(query=True)
    assert budget.take(query=True) == 0  # full


async def test_the_cap_grows_by_one_per_eight_caps_answered_while_others_wait() -> None:
    budget = RequestBudget(FakeClock())
    sent = [budget.take(query=True) for _ in range(5)]
    budget.on_crowded(sent[4])  # cap 4
    budget.done(sent[4])
    for ticket in sent[:4]:  # nobody waits: the cap is not tested, not raised
        budget.done(ticket)
    sent = [budget.take(query=True) for _ in range(4)]
    assert budget.take(query=True) == 0
    waiting = [asyncio.ensure_future(budget.wait(query=True)) for _ in range(40)]
    await asyncio.sleep(0)
    for _ in range(31):  # 31 answered while others wait: still four
        budget.done(sent.pop(0))
        await asyncio.sleep(0)
        sent.append(waiting.pop(0).result())
    assert budget.in_flight_cap == 4
    budget.done(sent.pop(0))  # the 32nd: one more place, two handed out
    assert budget.in_flight_cap == 5
    await asyncio.sleep(0)
    assert budget.in_flight == 5
    for future in waiting:
        future.cancel()


def test_a_refusal_inside_the_cap_cuts_it_by_one_once_per_cooldown() -> None:
    clock = FakeClock()
    budget = RequestBudget(clock)
    sent = [budget.take(query=True) for _ in range(6)]
    budget.on_crowded(sent[5])  # cap 5
    # Another client of the key holds places: refused with only 2 of ours before.
    budget.on_crowded(sent[2])
    assert budget.in_flight_cap == 2
    budget.on_crowded(sent[4])  # four before it, over the cap: within the cooldown
    assert budget.in_flight_cap == 2
    clock.advance(1.0)
    budget.on_crowded(sent[4])
    assert budget.in_flight_cap == 1
    budget.on_crowded(sent[0])  # never below one
    assert budget.in_flight_cap == 1


async def test_polls_waiting_go_before_creates_waiting() -> None:
    budget = RequestBudget(FakeClock())
    sent = [budget.take(query=True) for _ in range(3)]
    budget.on_crowded(sent[2])  # cap 2, both places taken
    budget.done(sent[2])
    order: list[str] = []

    async def request(name: str, *, query: bool) -> None:
        ticket = await budget.wait(query=query)
        order.append(name)
        budget.done(ticket)

    with anyio.fail_after(5):
        async with anyio.create_task_group() as group:
            for k in range(3):
                group.start_soon(lambda k=k: request(f"create {k}", query=False))
            await anyio.wait_all_tasks_blocked()
            group.start_soon(lambda: request("poll", query=True))
            await anyio.wait_all_tasks_blocked()
            assert budget.waiting == 4
            budget.done(sent[0])
            budget.done(sent[1])

    assert order == ["poll", "create 0", "create 1", "create 2"]
    assert budget.in_flight == 0
    assert budget.waiting == 0


async def test_a_waiter_cancelled_gives_its_place_on() -> None:
    budget = RequestBudget(FakeClock())
    sent = [budget.take(query=True) for _ in range(2)]
    budget.on_crowded(sent[1])  # cap 1, taken
    budget.done(sent[1])
    cancelled = asyncio.ensure_future(budget.wait(query=True))
    following = asyncio.ensure_future(budget.wait(query=True))
    await asyncio.sleep(0)  # both wait
    budget.done(sent[0])  # the place goes to the first ...
    cancelled.cancel()  # ... cancelled before it could run: handed on
    with anyio.fail_after(5):
        ticket = await following
    assert cancelled.cancelled()
    assert budget.in_flight == 1
    budget.done(ticket)
    assert (budget.in_flight, budget.waiting) == (0, 0)


# Whole sessions against the fake


async def test_a_per_key_cap_counting_polls_is_learned_and_kept() -> None:
    async with FakeCometAPI(
        max_in_flight=4,
        create_delay=0.05,
        query_delay=0.05,
        default_latency=Latency.uniform(0.2, 0.5),
    ) as fake:
        async with Session(
            fake.api_key, base_url=fake.base_url, max_concurrency=20
        ) as session:
            with anyio.fail_after(25):
                items = [
                    item
                    async for item in session.as_completed(
                        SCHNELL, ({"prompt": f"p{k}"} for k in range(60))
                    )
                ]
            stats = session.stats
        assert all(item.ok for item in items)
        assert len(fake.predictions) == 60  # nothing lost, nothing twice
        assert fake.stats.duplicates == 0
        requests = fake.stats.count("create") + fake.stats.count("query")
        refused = fake.stats.count("create", 429) + fake.stats.count("query", 429)
        assert refused <= 0.1 * requests
        assert stats.in_flight_cap is not None
        assert stats.in_flight_cap <= 6
        assert stats.requests_in_flight == 0
        assert stats.rate_limited == refused


@pytest.mark.slow
async def test_a_bucket_with_a_burst_of_one_refuses_few_creates() -> None:
    async with FakeCometAPI(
        creates_per_second=2, burst=1, default_latency=Latency.constant(0.05)
    ) as fake:
        async with Session(
            fake.api_key, base_url=fake.base_url, max_concurrency=10
        ) as session:
            with anyio.fail_after(25):
                results = await session.gather(
                    SCHNELL, [{"prompt": f"p{k}"} for k in range(12)]
                )
        assert all(item.ok for item in results)
        assert len(fake.predictions) == 12
        assert fake.stats.duplicates == 0
        # The first wave goes out one by one (a burst of ten would see nine
        # refused), then the pace keeps the full gap a burst of 1 needs.
        assert fake.stats.count("create", 429) <= 4


# A rate that counts queries too


async def test_once_queries_count_they_keep_the_gap_and_creates_keep_theirs() -> None:
    clock = FakeClock()
    pacer = CreatePacer(per_minute=60, clock=clock)  # one request a second
    pacer.counts_queries = True
    with anyio.fail_after(5):
        await pacer.wait_turn()  # a create, at once
        assert clock.now() == 100.0
        await pacer.query_turn()  # a poll: the gap after the create
        assert clock.now() == 101.0
        # The next create's slot was at 101: the poll took it, the create keeps
        # a full gap after the poll.
        await pacer.wait_turn()
        assert clock.now() == 102.0
        await pacer.query_turn()
        assert clock.now() == 103.0


@pytest.mark.slow
async def test_a_rate_that_counts_queries_is_kept_with_nothing_lost() -> None:
    async with FakeCometAPI(
        creates_per_second=4,
        burst=2,
        rate_counts_queries=True,
        default_latency=Latency.constant(0.3),
    ) as fake:
        async with Session(
            fake.api_key, base_url=fake.base_url, max_concurrency=8
        ) as session:
            with anyio.fail_after(25):
                results = await session.gather(
                    SCHNELL, [{"prompt": f"p{k}"} for k in range(12)]
                )
            stats = session.stats
        assert all(item.ok for item in results)
        assert len(fake.predictions) == 12
        assert fake.stats.duplicates == 0
        requests = fake.stats.count("create") + fake.stats.count("query")
        refused = fake.stats.count("create", 429) + fake.stats.count("query", 429)
        assert refused <= 0.25 * requests
        assert stats.create_rate is not None


@pytest.mark.slow
async def test_slow_replies_end_the_slow_start_after_a_second() -> None:
    # Creates that take 1.5 s each: a slow start of 1, 2, 4, ... per reply would
    # crawl; after a second the rest go together.
    async with FakeCometAPI(
        create_delay=1.5, default_latency=Latency.constant(0.05)
    ) as fake:
        async with Session(
            fake.api_key, base_url=fake.base_url, max_concurrency=8
        ) as session:
            with anyio.fail_after(20):
                results = await session.gather(
                    SCHNELL, [{"prompt": f"p{k}"} for k in range(8)]
                )
        assert all(item.ok for item in results)
        arrived = sorted(
            record.monotonic
            for record in fake.stats.requests_log
            if record.route == "create"
        )
        assert len(arrived) == 8
        # One at first, then, a second later, the other seven together (not two,
        # then four, each wave 1.5 s after the one before).
        assert arrived[1] - arrived[0] == pytest.approx(1.0, abs=0.45)
        assert arrived[-1] - arrived[1] < 1.2
