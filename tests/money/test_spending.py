"""Spend control through the session, against FakeCometAPI over HTTP: prices from
its catalogue (asked without the key), a cost cap reserved before every create,
costs in the batch journal, and a rerun with a larger cap that goes on from there."""

from __future__ import annotations

import logging
import sqlite3
from collections import Counter
from pathlib import Path

import anyio
import pytest

from comet_replicate_async import (
    AmbiguousSubmitError,
    BadRequestError,
    BudgetExceededError,
    PollPolicy,
    PredictionCanceled,
    Session,
)
from comet_replicate_async._money.prices import FALLBACK_PRICES
from comet_replicate_async.testing import FakeCometAPI, Fault, Latency

from helpers import FAST_RETRY, SCHNELL, session_for

pytestmark = pytest.mark.anyio

QUICK_POLLS = PollPolicy(min_interval=0.02, max_interval=0.02)
QUICK = Latency.constant(0.05)


def creates_per_prompt(fake: FakeCometAPI) -> Counter[str]:
    return Counter(str(p.input["prompt"]) for p in fake.stats.predictions.values())


async def test_a_fifty_cent_cap_creates_fifty_and_a_rerun_finishes_the_rest(
    tmp_path: Path,
) -> None:
    inputs = [{"prompt": f"boat {index}"} for index in range(100)]
    journal = tmp_path / "journal.sqlite"
    async with FakeCometAPI(prices={SCHNELL: 0.01}, default_latency=QUICK) as fake:
        with anyio.fail_after(60):
            async with session_for(fake, poll=QUICK_POLLS, max_cost=0.50) as session:
                first = await session.gather(SCHNELL, inputs, journal=journal)
                spent, reserved = session.stats.spent, session.stats.reserved
            refused = [item for item in first if item.error is not None]

            assert fake.stats.created == 50
            assert len(refused) == 50
            assert all(isinstance(item.error, BudgetExceededError) for item in refused)
            assert all(item.prediction is None for item in refused)
            assert (spent, reserved) == (0.50, 0.0)

            async with session_for(fake, poll=QUICK_POLLS, max_cost=1.00) as session:
                second = await session.gather(SCHNELL, inputs, journal=journal)
                spent = session.stats.spent

    assert [item.index for item in second] == list(range(100))
    assert all(item.ok for item in second)
    assert sum(item.resumed for item in second) == 50
    assert {item.index for item in second if not item.resumed} == {
        item.index for item in refused
    }
    assert spent == 1.00
    # Exactly one create per input over both runs.
    assert creates_per_prompt(fake) == Counter(str(i["prompt"]) for i in inputs)
    assert fake.stats.duplicates == 0
    # Read once, then from the file cache; never with the key.
    catalogue = [r for r in fake.stats.requests_log if r.route == "catalogue"]
    assert len(catalogue) == 1
    assert "Authorization" not in catalogue[0].headers
    with sqlite3.connect(journal) as db:
        costs = db.execute("select count(*), sum(cost) from items").fetchone()
    assert costs == (100, pytest.approx(1.00))


async def test_single_calls_are_refused_past_the_cap_with_nothing_sent() -> None:
    async with FakeCometAPI(default_latency=QUICK) as fake:
        async with session_for(
            fake, poll=QUICK_POLLS, max_cost=0.02, prices={SCHNELL: 0.01}
        ) as session:
            await session.run(SCHNELL, {"prompt": "one"})
            created = await session.create(SCHNELL, {"prompt": "two"})
            assert session.stats.reserved == 0.01  # until its end is seen
            with pytest.raises(BudgetExceededError) as refused:
                await session.run(SCHNELL, {"prompt": "three"})
            with pytest.raises(BudgetExceededError):
                await session.submit(SCHNELL, {"prompt": "four"})
            await session.wait(created)
            stats = session.stats

    assert fake.stats.created == 2
    assert (stats.spent, stats.reserved) == (0.02, 0.0)
    assert refused.value.cap == 0.02
    assert "nothing was sent" in str(refused.value)
    # Overrides covered the model: no catalogue request was needed.
    assert fake.stats.count("catalogue") == 0


async def test_images_are_priced_one_by_one() -> None:
    async with FakeCometAPI(prices={SCHNELL: 0.01}, default_latency=QUICK) as fake:
        async with session_for(fake, poll=QUICK_POLLS, max_cost=0.05) as session:
            await session.run(SCHNELL, {"prompt": "x", "num_outputs": 3})
            with pytest.raises(BudgetExceededError):
                await session.run(SCHNELL, {"prompt": "y", "num_outputs": 3})
            assert session.stats.spent == 0.03
    assert fake.stats.created == 1


async def test_aborted_is_free_and_an_ambiguous_create_counts_as_spent() -> None:
    async with FakeCometAPI(abort_rate=1.0, default_latency=QUICK) as fake:
        async with session_for(
            fake, poll=QUICK_POLLS, max_cost=1.0, prices={SCHNELL: 0.25}
        ) as session:
            with pytest.raises(PredictionCanceled):
                await session.run(SCHNELL, {"prompt": "aborted"})
            assert (session.stats.spent, session.stats.reserved) == (0.0, 0.0)
            fake.script("create", Fault.status(502))
            with pytest.raises(AmbiguousSubmitError):
                await session.run(SCHNELL, {"prompt": "lost reply"})
            assert (session.stats.spent, session.stats.reserved) == (0.25, 0.0)
            fake.script("create", Fault.status(400))
            with pytest.raises(BadRequestError):
                await session.create(SCHNELL, {"prompt": "refused"})
            assert (session.stats.spent, session.stats.reserved) == (0.25, 0.0)


async def test_without_a_cap_no_price_is_looked_up() -> None:
    async with FakeCometAPI(default_latency=QUICK) as fake:
        async with session_for(fake, poll=QUICK_POLLS) as session:
            await session.run(SCHNELL, {"prompt": "x"})
            assert session.stats.spent == 0.0
        async with session_for(
            fake, poll=QUICK_POLLS, prices={SCHNELL: 0.004}
        ) as session:
            await session.run(SCHNELL, {"prompt": "y"})
            assert session.stats.spent == 0.004
    assert fake.stats.count("catalogue") == 0


async def test_an_unreachable_catalogue_falls_back_to_the_bundled_table_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with FakeCometAPI(default_latency=QUICK) as fake:
        fake.script("catalogue", Fault.status(503))
        async with session_for(fake, poll=QUICK_POLLS, max_cost=1.0) as session:
            async with anyio.create_task_group() as group:
                for n in range(3):
                    group.start_soon(session.run, SCHNELL, {"prompt": f"p{n}"})
            spent = session.stats.spent
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "bundled estimates" in warnings[0].getMessage()
    assert spent == pytest.approx(3 * FALLBACK_PRICES[SCHNELL])
    assert fake.stats.count("catalogue") == 1


@pytest.mark.parametrize(("server_deadline", "header"), [(True, "2m"), (False, None)])
async def test_server_deadline_sends_cancel_after_matching_the_deadline(
    server_deadline: bool, header: str | None
) -> None:
    async with FakeCometAPI(default_latency=QUICK) as fake:
        async with session_for(
            fake, poll=QUICK_POLLS, timeout=120, server_deadline=server_deadline
        ) as session:
            await session.run(SCHNELL, {"prompt": "x"})
            await session.gather(SCHNELL, [{"prompt": "y"}], timeout=30)
            await session.create(SCHNELL, {"prompt": "z"})  # no deadline: no header
    creates = [r for r in fake.stats.requests_log if r.route == "create"]
    sent = [r.headers.get("Cancel-After") for r in creates]
    assert sent == [header, header and "30s", None]


async def test_a_ledger_is_settled_when_the_session_closes_first() -> None:
    async with FakeCometAPI(default_latency=Latency.constant(30)) as fake:
        session = Session(
            fake.api_key,
            base_url=fake.base_url,
            retry=FAST_RETRY,
            max_cost=1.0,
            prices={SCHNELL: 0.1},
        )
        async with session:
            await session.create(SCHNELL, {"prompt": "left running"})
            assert (session.stats.spent, session.stats.reserved) == (0.0, 0.1)
        # It runs on upstream, and may be billed.
        assert (session.stats.spent, session.stats.reserved) == (0.1, 0.0)


async def test_a_journal_without_costs_is_priced_when_a_capped_rerun_needs_it(
    tmp_path: Path,
) -> None:
    inputs = [{"prompt": f"fox {index}"} for index in range(8)]
    journal = tmp_path / "journal.sqlite"
    async with FakeCometAPI(default_latency=QUICK) as fake:
        async with session_for(fake, poll=QUICK_POLLS) as session:
            await session.gather(SCHNELL, inputs[:3], journal=journal)
        with sqlite3.connect(journal) as db:  # as written before costs were kept
            assert db.execute("select cost from items").fetchall() == [(None,)] * 3
            db.execute("alter table items drop column cost")

        async with session_for(
            fake, poll=QUICK_POLLS, max_cost=0.05, prices={SCHNELL: 0.01}
        ) as session:
            items = await session.gather(SCHNELL, inputs, journal=journal)
            spent = session.stats.spent

    assert [item.resumed for item in items] == [True] * 3 + [False] * 5
    assert sum(item.ok for item in items) == 5
    refused = [item for item in items if isinstance(item.error, BudgetExceededError)]
    assert len(refused) == 3
    assert fake.stats.created == 5
    assert spent == 0.05
    with sqlite3.connect(journal) as db:
        costs = db.execute('select cost from items order by "index"').fetchall()
    assert costs == [(None,)] * 3 + [(0.01,)] * 2


async def test_the_journal_keeps_an_aborted_input_at_no_cost(tmp_path: Path) -> None:
    journal = tmp_path / "journal.sqlite"
    async with FakeCometAPI(abort_rate=1.0, default_latency=QUICK) as fake:
        async with session_for(
            fake, poll=QUICK_POLLS, max_cost=1.0, prices={SCHNELL: 0.2}
        ) as session:
            [item] = await session.gather(SCHNELL, [{"prompt": "x"}], journal=journal)
            spent = session.stats.spent
    assert isinstance(item.error, PredictionCanceled)
    assert spent == 0.0
    with sqlite3.connect(journal) as db:
        assert db.execute("select state, cost from items").fetchall() == [
            ("failed", 0.0)
        ]
