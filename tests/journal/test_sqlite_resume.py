"""Resumable batches in the library: `as_completed(..., journal=...)`."""

from __future__ import annotations

import signal
import sqlite3
import sys
from collections.abc import AsyncIterator
from contextlib import aclosing, closing
from pathlib import Path

import anyio
import pytest
from journal_worker import inputs

from comet_replicate_async import (
    AmbiguousSubmitError,
    Journal,
    JournalInputChanged,
    JournalInUse,
    PredictionFailed,
    RetryPolicy,
    Status,
)
from comet_replicate_async._journal.sqlite.store import SqliteJournal
from comet_replicate_async.testing import FakeCometAPI, Latency

from helpers import FAST_RETRY, SCHNELL, eventually, session_for

pytestmark = pytest.mark.anyio

WORKER = Path(__file__).parents[1] / "journal_worker.py"


@pytest.fixture
async def fake() -> AsyncIterator[FakeCometAPI]:
    async with FakeCometAPI(default_latency=Latency.uniform(0.02, 0.08)) as server:
        yield server


async def test_a_rerun_yields_finished_items_again_without_a_request(
    fake: FakeCometAPI, tmp_path: Path
) -> None:
    journal = tmp_path / "batch.sqlite3"
    async with session_for(fake) as session:
        first = await session.gather(SCHNELL, inputs(6), journal=journal)
    async with session_for(fake) as session:
        again = await session.gather(SCHNELL, inputs(6), journal=journal)
        requests = session.stats.requests

    assert all(item.ok and not item.resumed for item in first)
    assert requests == 0
    assert all(item.resumed for item in again)
    assert [item.prediction.id for item in again if item.prediction] == [
        item.prediction.id for item in first if item.prediction
    ]
    assert [item.prediction.output_urls for item in again if item.prediction] == [
        item.prediction.output_urls for item in first if item.prediction
    ]
    assert fake.stats.created == 6


async def test_a_resumed_failure_keeps_its_error(tmp_path: Path) -> None:
    journal = tmp_path / "batch.sqlite3"
    async with FakeCometAPI(
        default_latency=Latency.uniform(0.02, 0.05), failure_rate=1.0
    ) as fake:
        async with session_for(fake) as session:
            first = await session.gather(SCHNELL, inputs(2), journal=journal)
        async with session_for(fake) as session:
            again = await session.gather(SCHNELL, inputs(2), journal=journal)

    assert all(isinstance(item.error, PredictionFailed) for item in first)
    assert all(isinstance(item.error, PredictionFailed) for item in again)
    assert all(item.resumed for item in again)
    assert [item.prediction.status for item in again if item.prediction] == [
        Status.FAILED
    ] * 2


async def test_a_rerun_polls_the_predictions_already_created(tmp_path: Path) -> None:
    journal = tmp_path / "batch.sqlite3"
    async with FakeCometAPI(default_latency=Latency.uniform(0.5, 0.8)) as fake:
        async with session_for(fake) as session:
            items = session.as_completed(SCHNELL, inputs(5), journal=journal)

            async def consume() -> None:
                async with aclosing(items):
                    async for _ in items:
                        pass

            async with anyio.create_task_group() as group:
                group.start_soon(consume)
                await eventually(lambda: fake.stats.created == 5)
                group.cancel_scope.cancel()  # stops reading: the rest is abandoned
        async with session_for(fake) as session:
            again = await session.gather(SCHNELL, inputs(5), journal=journal)

    assert all(item.ok for item in again)
    assert any(not item.resumed for item in again)  # polled, not read back
    assert fake.stats.created == 5
    assert fake.stats.duplicates == 0
    assert {item.prediction.id for item in again if item.prediction} == set(
        fake.predictions
    )


def mark_in_flight(journal: Path, position: int) -> None:
    """Leave the journal as a SIGKILL between "pending" and "created" does."""
    with closing(sqlite3.connect(journal)) as connection:
        connection.execute(
            "update items set state = 'pending', prediction_id = null,"
            ' prediction = null where "index" = ?',
            (position,),
        )
        connection.commit()


async def test_an_input_whose_create_was_in_flight_is_ambiguous_not_sent_again(
    fake: FakeCometAPI, tmp_path: Path
) -> None:
    journal = tmp_path / "batch.sqlite3"
    async with session_for(fake) as session:
        await session.gather(SCHNELL, inputs(3), journal=journal)
    mark_in_flight(journal, 1)

    async with session_for(fake) as session:
        reported = await session.gather(SCHNELL, inputs(3), journal=journal)
    async with session_for(fake) as session:
        reported_again = await session.gather(SCHNELL, inputs(3), journal=journal)
    async with session_for(
        fake, retry=RetryPolicy(initial_backoff=0.01, retry_ambiguous_creates=True)
    ) as session:
        resubmitted = await session.gather(SCHNELL, inputs(3), journal=journal)

    for items in (reported, reported_again):
        assert isinstance(items[1].error, AmbiguousSubmitError)
        assert items[1].resumed
        assert items[0].ok
        assert items[2].ok
    assert fake.stats.created == 4  # the opted-in resubmission paid again
    assert resubmitted[1].ok
    assert not resubmitted[1].resumed


async def test_a_resumed_ambiguous_item_counts_as_failed_as_on_a_shared_journal(
    fake: FakeCometAPI, tmp_path: Path
) -> None:
    journal = tmp_path / "batch.sqlite3"
    async with session_for(fake) as session:
        await session.gather(SCHNELL, inputs(3), journal=journal)
    mark_in_flight(journal, 1)

    async with session_for(fake) as session:
        items = await session.gather(SCHNELL, inputs(3), journal=journal)
        stats = session.stats

    assert isinstance(items[1].error, AmbiguousSubmitError)
    # This run reports its end; the two that ended in the first run it does not.
    assert (stats.submitted, stats.failed, stats.in_flight) == (1, 1, 0)
    assert stats.creates == 0


async def test_a_changed_input_raises_before_any_create(
    fake: FakeCometAPI, tmp_path: Path
) -> None:
    journal = tmp_path / "batch.sqlite3"
    async with session_for(fake) as session:
        await session.gather(SCHNELL, inputs(3), journal=journal)
    changed = [*inputs(4)]
    changed[1] = {"prompt": "another input"}

    async with session_for(fake) as session:
        with pytest.raises(JournalInputChanged, match="input 1 differs"):
            await session.gather(SCHNELL, changed, journal=journal)
        requests = session.stats.requests

    assert requests == 0
    assert fake.stats.created == 3


async def test_one_run_per_journal(fake: FakeCometAPI, tmp_path: Path) -> None:
    journal = tmp_path / "batch.sqlite3"
    async with session_for(fake) as session:
        items = session.as_completed(SCHNELL, inputs(3), journal=journal)
        async with aclosing(items):
            first = await items.__anext__()
            with pytest.raises(JournalInUse, match=r"in use by pid \d+ on .+ since "):
                await session.gather(SCHNELL, inputs(3), journal=journal)
            rest = [item async for item in items]

    assert sorted(item.index for item in [first, *rest]) == [0, 1, 2]


async def test_a_journal_object_follows_the_protocol(
    fake: FakeCometAPI, tmp_path: Path
) -> None:
    store = SqliteJournal(tmp_path / "batch.sqlite3")
    async with session_for(fake) as session:
        items = await session.gather(SCHNELL, inputs(2), journal=store)
    async with store:
        recorded = await store.recorded()

    assert isinstance(store, Journal)
    assert sorted(recorded) == [0, 1]
    assert {record.state for record in recorded.values()} == {"succeeded"}
    assert [recorded[n].prediction_id for n in (0, 1)] == [
        item.prediction.id for item in items if item.prediction
    ]


def finished_on_disk(journal: Path) -> int:
    """How many outcomes the journal has committed (read-only)."""
    with closing(sqlite3.connect(f"file:{journal}?mode=ro", uri=True)) as reader:
        rows = reader.execute("select count(*) from items where state = 'succeeded'")
        count: int = rows.fetchone()[0]
        return count


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_a_batch_killed_half_way_resumes_paying_once(tmp_path: Path) -> None:
    count = 30
    journal = tmp_path / "batch.sqlite3"
    async with FakeCometAPI(default_latency=Latency.uniform(0.3, 1.2)) as fake:
        command = [
            sys.executable,
            str(WORKER),
            fake.base_url,
            fake.api_key,
            str(journal),
            str(count),
        ]
        async with await anyio.open_process(command) as worker:
            assert worker.stdout is not None
            read = 0
            with anyio.fail_after(60):
                async for chunk in worker.stdout:
                    read += chunk.count(b"item ")
                    if read >= 5:
                        break
                # Outcomes are committed in small groups: kill once some are.
                await eventually(lambda: finished_on_disk(journal) > 0, within=10)
            worker.send_signal(signal.SIGKILL)
            await worker.wait()
        created_before = fake.stats.created

        async with session_for(fake, retry=FAST_RETRY) as session:
            items = await session.gather(SCHNELL, inputs(count), journal=journal)

    assert worker.returncode == -signal.SIGKILL
    assert 5 <= created_before < count
    assert [item.index for item in items] == list(range(count))
    assert fake.stats.duplicates == 0
    # The outcomes committed before the kill come back from the journal; the last
    # ones may be polled again instead, which costs a query, never a create.
    assert any(item.resumed and item.ok for item in items)
    ambiguous = [item for item in items if isinstance(item.error, AmbiguousSubmitError)]
    assert all(item.ok for item in items if item not in ambiguous)
    # Every input was created exactly once, but for those whose create was in
    # flight at the kill: they may exist, and are not paid for again.
    assert fake.stats.created == count - len(ambiguous) + sum(
        1
        for item in ambiguous
        if any(p.input == item.input for p in fake.predictions.values())
    )
