"""The PostgreSQL journal against a real server: schema, claims, leases, budget."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import anyio
import pytest
from postgres_support import sql

from comet_replicate_async import ConfigurationError
from comet_replicate_async._journal.postgres import schema as _journal_postgres_schema
from comet_replicate_async._journal.postgres.store import (
    SCHEMA_VERSION,
    ClaimLost,
    JournalInputChanged,
    PostgresJournal,
    input_digest,
)

from helpers import eventually

pytestmark = pytest.mark.anyio

WORKER = Path(__file__).parents[1] / "postgres_worker.py"
INPUTS = [(position, {"prompt": f"boat {position}"}) for position in range(200)]


async def expire_lease(url: str, journal: PostgresJournal) -> None:
    """What the server sees when `journal`'s worker stops renewing."""
    await sql(
        url,
        "update comet_replicate.workers set lease_until = clock_timestamp()"
        f" where worker = '{journal.worker}'",
    )


def spawn(url: str, batch: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(WORKER), url, batch, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


async def test_schema_is_created_once_with_its_version(postgres_url: str) -> None:
    # Four workers open a fresh database at once: one creates, the others wait.
    async def open_one(name: str) -> None:
        async with PostgresJournal(postgres_url, batch="b", worker=name) as journal:
            assert await journal.schema_version() == SCHEMA_VERSION

    async with anyio.create_task_group() as group:
        for number in range(4):
            group.start_soon(open_one, f"w{number}")

    assert await sql(postgres_url, "select version from comet_replicate.schema") == [
        (SCHEMA_VERSION,)
    ]
    workers = await sql(postgres_url, "select worker from comet_replicate.workers")
    assert sorted(row[0] for row in workers) == ["w0", "w1", "w2", "w3"]


async def test_a_newer_schema_is_refused(postgres_url: str) -> None:
    async with PostgresJournal(postgres_url, batch="b"):
        pass
    await sql(postgres_url, "update comet_replicate.schema set version = version + 1")
    with pytest.raises(ConfigurationError, match="newer than this client"):
        async with PostgresJournal(postgres_url, batch="b"):
            pass


async def test_record_is_idempotent_and_refuses_a_changed_input(
    postgres_url: str,
) -> None:
    async with PostgresJournal(postgres_url, batch="b") as journal:
        assert await journal.record(INPUTS[:3]) == 3
        assert await journal.record(INPUTS[:4]) == 1
        changed = [(4, {"prompt": "new"}), (1, {"prompt": "another boat"})]
        with pytest.raises(JournalInputChanged, match="item 1 of batch 'b'"):
            await journal.record(changed)

    rows = await sql(postgres_url, 'select "index", digest from comet_replicate.items')
    # Nothing of the refused call was recorded, not even its new position 4.
    assert sorted(rows) == [
        (position, input_digest(input)) for position, input in INPUTS[:4]
    ]
    # Key order does not change the digest: it is the canonical JSON's.
    assert input_digest({"a": 1, "b": "é"}) == input_digest({"b": "é", "a": 1})


async def test_concurrent_claimers_never_get_the_same_item(postgres_url: str) -> None:
    async with PostgresJournal(postgres_url, batch="b") as journal:
        await journal.record(INPUTS)
    taken: dict[str, list[int]] = {}

    async def claimer(name: str) -> None:
        async with PostgresJournal(postgres_url, batch="b", worker=name) as journal:
            taken[name] = []
            while claims := await journal.claim(3):
                for claim in claims:
                    taken[name].append(claim.index)
                    await journal.finish(claim.index, "succeeded")

    with spawn(postgres_url, "b", "claim") as process:
        try:
            with anyio.fail_after(30):
                async with anyio.create_task_group() as group:
                    assert process.stdin is not None
                    process.stdin.write("go\n")
                    process.stdin.flush()
                    for number in range(4):
                        group.start_soon(claimer, f"w{number}")
                out, _ = await anyio.to_thread.run_sync(process.communicate)
        finally:
            process.kill()
            process.wait()
    taken["process"] = json.loads(out)

    everything = [position for positions in taken.values() for position in positions]
    assert sorted(everything) == [position for position, _ in INPUTS]
    # Every claimer got a share, the other process included.
    assert sum(1 for positions in taken.values() if positions) >= 3


async def test_a_killed_workers_items_are_reclaimed_by_state(
    postgres_url: str,
) -> None:
    async with PostgresJournal(postgres_url, batch="b") as journal:
        await journal.record(INPUTS[:5])
    with spawn(postgres_url, "b", "hold", "0.5") as process:
        try:
            assert process.stdout is not None
            ready = await anyio.to_thread.run_sync(process.stdout.readline)
            assert ready == "ready\n"
        finally:
            process.send_signal(signal.SIGKILL)
            process.wait()
    assert process.returncode == -signal.SIGKILL

    async with PostgresJournal(postgres_url, batch="b") as journal:
        # While the dead worker's lease runs, only the unclaimed item is free.
        first = await journal.claim(10)
        claims = list(first)
        with anyio.fail_after(10):
            while len(claims) < 4:
                claims += await journal.claim(10)
                await anyio.sleep(0.05)
        by_position = {claim.index: claim for claim in claims}
        status = await journal.status()

    assert [claim.index for claim in first] in ([4], [0, 1, 2, 4])
    assert sorted(by_position) == [0, 1, 2, 4]  # 3 was finished: never claimed
    assert (by_position[0].state, by_position[0].prediction_id) == ("created", "p0")
    assert by_position[1].state == "ambiguous"  # in flight: never sent again
    assert by_position[2].state == "queued"
    assert by_position[0].claims == 2
    assert status.states == {"ambiguous": 1, "created": 1, "queued": 2, "succeeded": 1}


async def test_an_opt_in_sends_an_in_flight_create_again(postgres_url: str) -> None:
    async with PostgresJournal(postgres_url, batch="b") as first:
        await first.record(INPUTS[:1])
        await first.claim(1)
        await first.pending(0)
    # Leaving expired the lease at once: the next claimer sees a dead worker.
    async with PostgresJournal(postgres_url, batch="b") as second:
        [claim] = await second.claim(1, retry_ambiguous=True)
        assert claim.state == "queued"
        await second.pending(0)
        await second.created(0, "p0-again")
        await second.finish(0, "succeeded", outcome={"output_urls": ["https://x/0"]})

    rows = await sql(
        postgres_url, "select state, prediction_id, outcome from comet_replicate.items"
    )
    assert rows == [("succeeded", "p0-again", {"output_urls": ["https://x/0"]})]


async def test_a_dead_workers_items_keep_the_batch_open(postgres_url: str) -> None:
    # A claim that found nothing free, then a lease that expires before the
    # check: the dead worker's item still keeps the batch open, so the last
    # worker claims it next rather than ending with it undone.
    async with (
        PostgresJournal(postgres_url, batch="b", worker="dead") as dead,
        PostgresJournal(postgres_url, batch="b", worker="alive") as alive,
    ):
        await dead.record(INPUTS[:2])
        assert [claim.index for claim in await dead.claim(1)] == [0]
        assert [claim.index for claim in await alive.claim(1)] == [1]
        assert await alive.claim(1) == []
        assert await alive.open_elsewhere() == 1  # the dead one's, not its own
        await expire_lease(postgres_url, dead)
        assert await alive.open_elsewhere() == 1
        assert [claim.index for claim in await alive.claim(1)] == [0]
        assert await alive.open_elsewhere() == 0


async def test_a_renewed_lease_keeps_its_claims(postgres_url: str) -> None:
    async with PostgresJournal(postgres_url, batch="b", lease=0.3) as holder:
        await holder.record(INPUTS[:3])
        assert len(await holder.claim(10)) == 3
        started = time.monotonic()
        await eventually(lambda: holder.renewals >= 4)
        assert time.monotonic() - started > holder.lease
        async with PostgresJournal(postgres_url, batch="b") as other:
            assert await other.claim(10) == []
            status = await other.status()
    [worker] = status.workers
    assert (worker.worker, worker.alive, worker.states) == (
        holder.worker,
        True,
        {"queued": 3},
    )


async def test_a_worker_that_lost_its_lease_is_fenced_out(postgres_url: str) -> None:
    async with PostgresJournal(postgres_url, batch="b") as slow:
        await slow.record(INPUTS[:2])
        await slow.claim(2)
        await slow.pending(0)
        await slow.pending(1)
        await expire_lease(postgres_url, slow)
        async with PostgresJournal(postgres_url, batch="b") as other:
            claims = await other.claim(2)
            assert [claim.state for claim in claims] == ["ambiguous", "ambiguous"]
            # The create did happen after all: its late id is kept, not lost.
            await slow.created(0, "late")
            with pytest.raises(ClaimLost):
                await slow.finish(1, "failed")
            with pytest.raises(ClaimLost):
                await other.finish(0, "failed")
            status = await other.status()

    assert status.states == {"created": 1, "ambiguous": 1}
    workers = {worker.worker: worker.states for worker in status.workers}
    assert workers == {slow.worker: {"created": 1}, other.worker: {"ambiguous": 1}}


async def test_the_shared_create_budget_holds_its_rate(postgres_url: str) -> None:
    rate, takers, each = 100.0, 4, 25
    slots: list[float] = []
    turns: list[float] = []

    async def taker(name: str) -> None:
        async with PostgresJournal(
            postgres_url, batch="b", worker=name, creates_per_second=rate
        ) as journal:
            for _ in range(each):
                turn = await journal.create_rate.take_token()
                assert turn.at is not None
                slots.append(turn.at)
                await anyio.sleep(turn.wait)
                turns.append(time.monotonic())

    with anyio.fail_after(30):
        async with anyio.create_task_group() as group:
            for number in range(takers):
                group.start_soon(taker, f"w{number}")

    # On the database's clock the slots are exact: after the burst of one, the
    # k-th slot is at least k / rate after the first, whoever took it.
    slots.sort()
    assert all(slot - slots[0] >= (k - 1) / rate - 1e-6 for k, slot in enumerate(slots))
    # What the takers saw, on their own clock, with the event loop's delays.
    turns.sort()
    measured = (len(turns) - 1) / (turns[-1] - turns[0])
    print(f"{len(turns)} creates by {takers} workers at {measured:.1f}/s")
    assert rate * 0.7 <= measured <= rate * 1.1


async def test_a_new_migration_upgrades_an_older_database(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with PostgresJournal(postgres_url, batch="b") as journal:
        await journal.record(INPUTS[:2])
    # How the schema changes: one more entry at the end of the list.
    upgraded = (
        *_journal_postgres_schema._MIGRATIONS,
        "alter table comet_replicate.items add column note text default 'kept'",
    )
    monkeypatch.setattr(_journal_postgres_schema, "_MIGRATIONS", upgraded)
    monkeypatch.setattr(_journal_postgres_schema, "SCHEMA_VERSION", len(upgraded))

    async with PostgresJournal(postgres_url, batch="b") as journal:
        assert await journal.schema_version() == SCHEMA_VERSION + 1
        assert await journal.record(INPUTS[:3]) == 1
    rows = await sql(postgres_url, 'select "index", note from comet_replicate.items')
    assert sorted(rows) == [(0, "kept"), (1, "kept"), (2, "kept")]


async def test_one_journal_serves_many_tasks_at_once(postgres_url: str) -> None:
    # An engine calls one worker's journal from many tasks, beside the renewals.
    async with PostgresJournal(postgres_url, batch="b", lease=0.05) as journal:
        await journal.record(INPUTS[:60])
        claims = await journal.claim(60)

        async def run_one(position: int) -> None:
            await journal.pending(position)
            await journal.created(position, f"p{position}")
            await journal.finish(position, "succeeded")

        with anyio.fail_after(30):
            async with anyio.create_task_group() as group:
                for claim in claims:
                    group.start_soon(run_one, claim.index)
        status = await journal.status()
    assert status.states == {"succeeded": 60}
    assert journal.renewals > 0
