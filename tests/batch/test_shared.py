"""One batch run by many workers on a PostgreSQL journal, against a real server."""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path
from typing import Any

import anyio
import attrs
import pytest
from anyio.abc import Process
from cli_support import run_cli
from journal_worker import inputs
from postgres_support import end_all, kill_the_first_midway, sql, with_query

from comet_replicate_async import AmbiguousSubmitError, JournalInputChanged
from comet_replicate_async._journal.postgres.status import batch_status
from comet_replicate_async._journal.postgres.store import PostgresJournal
from comet_replicate_async._journal.shared import split_journal_url
from comet_replicate_async.testing import FakeCometAPI, Latency

from helpers import FAST_RETRY, SCHNELL, session_for

pytestmark = pytest.mark.anyio

WORKER = Path(__file__).parents[1] / "shared_batch_worker.py"


def test_the_batch_and_lease_come_out_of_the_url() -> None:
    url = "postgresql://u@/db?host=%2Ftmp%2Fpg&batch=boats&lease=2.5"
    assert split_journal_url(url) == (
        "postgresql://u@/db?host=%2Ftmp%2Fpg",
        "boats",
        2.5,
    )
    assert split_journal_url("postgresql://h/db") == (
        "postgresql://h/db",
        "default",
        30.0,
    )


async def test_one_worker_runs_a_shared_batch(postgres_url: str) -> None:
    journal = (
        f"{postgres_url}&batch=one"
        if "?" in postgres_url
        else f"{postgres_url}?batch=one"
    )
    async with FakeCometAPI(default_latency=Latency.constant(0.01)) as fake:
        async with session_for(fake) as session:
            items = await session.gather(SCHNELL, inputs(6), journal=journal)
            again = await session.gather(SCHNELL, inputs(6), journal=journal)
    assert [item.index for item in items] == list(range(6))
    assert all(item.ok for item in items)
    assert again == []  # every item ended in the first run: nothing is left to do
    assert fake.stats.created == 6
    status = await batch_status(journal)
    assert status.states == {"succeeded": 6}


async def test_a_changed_input_raises_before_any_create(postgres_url: str) -> None:
    journal = with_query(postgres_url, batch="changed")
    changed = inputs(4)
    changed[2] = {"prompt": "another boat"}
    async with FakeCometAPI() as fake:
        async with session_for(fake) as session:
            await session.gather(SCHNELL, inputs(4), journal=journal)
            created = fake.stats.created
            with pytest.raises(JournalInputChanged, match="item 2 of batch 'changed'"):
                await session.gather(SCHNELL, changed, journal=journal)
    assert created == 4
    assert fake.stats.created == 4


async def read_lines(
    process: Process, into: list[dict[str, Any]], done: anyio.Event
) -> None:
    assert process.stdout is not None
    assert process.stderr is not None
    async with anyio.create_task_group() as group:
        group.start_soon(keep_stderr, process, into)
        await read_stdout(process, into, done)


async def keep_stderr(process: Process, into: list[dict[str, Any]]) -> None:
    """Read the worker's stderr (so it never blocks on a full pipe); kept for the
    failure message."""
    assert process.stderr is not None
    into.extend(
        [{"stderr": chunk.decode(errors="replace")} async for chunk in process.stderr]
    )


async def read_stdout(
    process: Process, into: list[dict[str, Any]], done: anyio.Event
) -> None:
    assert process.stdout is not None
    buffer = b""
    async for chunk in process.stdout:
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        for line in lines:
            if line == b"done":
                done.set()
            elif line:
                into.append(json.loads(line))


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_workers_share_a_batch_and_finish_a_killed_ones_items(
    postgres_url: str,
) -> None:
    count = 48
    journal = with_query(postgres_url, batch="kill", lease="2")
    latency = Latency.uniform(0.5, 1.5)
    outputs: list[list[dict[str, Any]]] = [[] for _ in range(4)]
    done = [anyio.Event() for _ in range(4)]
    in_flight_at_death: set[int] = set()

    async def read_in_flight() -> None:
        # Read once the victim is dead: its pending rows are exactly the creates
        # it had in flight, whatever answered between the check and the kill.
        rows = await sql(
            postgres_url,
            "select \"index\" from comet_replicate.items where batch = 'kill'"
            f" and state = 'pending' and worker like '%:{workers[0].pid}:%'",
        )
        in_flight_at_death.update(position for (position,) in rows)

    # Creates answer after a second: the victim dies with some still in flight.
    async with FakeCometAPI(default_latency=latency, create_delay=1.0) as fake:
        command = [sys.executable, str(WORKER), fake.base_url, fake.api_key, journal]
        workers = [await anyio.open_process([*command, str(count)]) for _ in range(4)]
        try:
            async with anyio.create_task_group() as group:
                for worker, into, event in zip(workers, outputs, done, strict=True):
                    group.start_soon(read_lines, worker, into, event)
                victim = workers[0]
                await kill_the_first_midway(workers, journal, then=read_in_flight)
        finally:
            await end_all(workers)
        rows = await sql(
            postgres_url,
            'select "index", state, worker, created_by from comet_replicate.items'
            " where batch = 'kill' order by \"index\"",
        )
    assert victim.returncode == -signal.SIGKILL
    errors = [line["stderr"] for lines in outputs for line in lines if "stderr" in line]
    assert all(event.is_set() for event in done[1:]), "".join(errors)
    outputs = [[line for line in lines if "stderr" not in line] for lines in outputs]
    survivors = [line for lines in outputs[1:] for line in lines]
    # Each input is yielded by exactly one survivor, or only by the victim.
    survivor_indexes = [line["index"] for line in survivors]
    assert len(survivor_indexes) == len(set(survivor_indexes))
    victim_indexes = {line["index"] for line in outputs[0]}
    assert set(survivor_indexes) | victim_indexes == set(range(count))
    # One the victim yielded but had not journaled yet is polled again: same id.
    by_id = {line["index"]: line["id"] for line in outputs[0]}
    for line in survivors:
        if line["index"] in by_id:
            assert line["id"] == by_id[line["index"]]
    # Every input has one outcome in the journal.
    assert len(rows) == count
    assert {state for _, state, _, _ in rows} <= {"succeeded", "ambiguous"}
    # No input was created twice, and the in-flight ones were not sent again.
    assert fake.stats.duplicates == 0
    ambiguous = [line for line in survivors if line["ambiguous"]]
    assert ambiguous
    assert not any(line["ok"] for line in ambiguous)
    assert all(line["ok"] for line in survivors if not line["ambiguous"])
    victim_tag = f":{victim.pid}:"
    taken_over = [
        position
        for position, state, worker, created_by in rows
        if state == "succeeded"
        and victim_tag in (created_by or "")
        and victim_tag not in worker
    ]
    assert taken_over  # created by the victim, polled by id by a survivor
    ambiguous_rows = {
        position for position, state, _, _ in rows if state == "ambiguous"
    }
    assert ambiguous_rows == {line["index"] for line in ambiguous}
    assert ambiguous_rows == in_flight_at_death
    assert fake.stats.created <= count
    assert fake.stats.created >= count - len(ambiguous)


async def create_rate(url: str) -> list[tuple[Any, ...]]:
    return await sql(url, "select per_second, burst from comet_replicate.create_rates")


async def test_a_set_create_rate_is_shared_by_the_workers(postgres_url: str) -> None:
    journal = with_query(postgres_url, batch="paced")
    async with FakeCometAPI(default_latency=Latency.constant(0.01)) as fake:
        async with session_for(fake, creates_per_minute=600) as session:
            items = await session.gather(SCHNELL, inputs(3), journal=journal)
    assert all(item.ok for item in items)
    assert await create_rate(postgres_url) == [(10.0, 1.0)]


@pytest.mark.slow
async def test_a_rate_learned_from_a_refusal_is_published(postgres_url: str) -> None:
    journal = with_query(postgres_url, batch="learned")
    fake = FakeCometAPI(
        default_latency=Latency.constant(0.01), creates_per_second=20, burst=2
    )
    async with fake, session_for(fake, max_concurrency=32) as session:
        items = await session.gather(SCHNELL, inputs(40), journal=journal)
    assert all(item.ok for item in items)
    assert fake.stats.count("create", 429) > 0
    [(per_second, _)] = await create_rate(postgres_url)
    # This worker was the only one live: the row holds its pacer's rate.
    assert 1.0 <= per_second <= 40.0
    assert fake.stats.duplicates == 0


async def test_status_prints_the_shared_batch_by_state_and_worker(
    postgres_url: str,
) -> None:
    url = with_query(postgres_url, batch="shown")
    async with PostgresJournal(postgres_url, batch="shown", worker="w1") as journal:
        await journal.record((n, {"prompt": f"boat {n}"}) for n in range(5))
        await journal.claim(2)
        await journal.pending(0)
        await journal.finish(1, "succeeded")
        done = await anyio.to_thread.run_sync(
            run_cli, ["status", "--journal", url], None
        )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "batch shown: 1/5 ended",
        "  pending 1, queued 3, succeeded 1",
        f"  w1 ({journal.host}, pid {journal.pid}, alive): pending 1, succeeded 1",
    ]


async def test_status_reads_an_sqlite_journal(tmp_path: Path) -> None:
    journal = tmp_path / "batch.sqlite3"
    async with FakeCometAPI(default_latency=Latency.constant(0.01)) as fake:
        async with session_for(fake) as session:
            await session.gather(SCHNELL, inputs(3), journal=journal)
    done = await anyio.to_thread.run_sync(
        run_cli, ["status", "--journal", str(journal)], None
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "succeeded 3\n"


async def leave_one_in_flight(postgres_url: str, batch: str) -> None:
    """Leave item 0 of `batch` as a worker killed during its create does."""
    async with PostgresJournal(postgres_url, batch=batch, worker="dead") as dead:
        await dead.record(enumerate(inputs(3)))
        await dead.claim(1)
        await dead.pending(0)
    # Leaving gave the lease up at once, as its expiry would have.


@pytest.mark.parametrize("opted_in", [False, True])
async def test_a_reclaimed_in_flight_create_is_ambiguous_unless_opted_in(
    postgres_url: str, opted_in: bool
) -> None:
    await leave_one_in_flight(postgres_url, "inflight")
    journal = with_query(postgres_url, batch="inflight")
    retry = attrs.evolve(FAST_RETRY, retry_ambiguous_creates=opted_in)
    async with FakeCometAPI(default_latency=Latency.constant(0.01)) as fake:
        async with session_for(fake, retry=retry) as session:
            items = await session.gather(SCHNELL, inputs(3), journal=journal)
    assert [item.index for item in items] == [0, 1, 2]
    assert all(item.ok for item in items[1:])
    if opted_in:
        assert items[0].ok
        assert fake.stats.created == 3
    else:
        assert isinstance(items[0].error, AmbiguousSubmitError)
        assert fake.stats.created == 2
    status = await batch_status(journal)
    assert status.states == (
        {"succeeded": 3} if opted_in else {"succeeded": 2, "ambiguous": 1}
    )


def test_status_of_a_missing_journal_is_one_error_line(tmp_path: Path) -> None:
    done = run_cli(["status", "--journal", str(tmp_path / "none.sqlite3")], None)
    assert done.returncode == 2
    assert done.stderr.startswith(f"error: no journal file at {tmp_path}")
    assert "Traceback" not in done.stderr
