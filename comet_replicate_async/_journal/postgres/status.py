"""A shared batch's progress, read from PostgreSQL: by state, and per worker.

Reading it joins nothing: `comet-replicate status` uses it from any machine
while the workers run.
"""

from __future__ import annotations

from typing import Any

import psycopg

from comet_replicate_async._journal.shared import (
    BatchStatus,
    WorkerStatus,
    split_journal_url,
)

__all__ = ["LIVE_WORKERS", "OPEN_ELSEWHERE", "batch_status", "read_status"]

#: Items not ended that this worker does not hold: (batch, this worker).
#: Whoever holds them, alive or not: a claim that found nothing free can race
#: with a lease that expires just after it, and the items of that dead worker
#: must keep the batch open until the next claim takes them over.
OPEN_ELSEWHERE = (
    "select count(*) from comet_replicate.items"
    " where batch = %s and worker is distinct from %s"
    " and state in ('queued', 'pending', 'created')"
)
#: Workers of a batch whose lease has not expired: (batch,).
LIVE_WORKERS = (
    "select count(*) from comet_replicate.workers"
    " where batch = %s and lease_until >= clock_timestamp()"
)


async def read_status(
    connection: psycopg.AsyncConnection[Any], batch: str
) -> BatchStatus:
    """Counts by state for the whole batch, and per worker that holds items."""
    cursor = await connection.execute("select to_regclass('comet_replicate.items')")
    if (await cursor.fetchall())[0][0] is None:  # no worker has opened it yet
        return BatchStatus(batch, {}, ())
    cursor = await connection.execute(
        """
        select i.worker, w.host, w.pid, w.lease_until > clock_timestamp(),
               i.state, count(*)
        from comet_replicate.items i
        left join comet_replicate.workers w
            on w.batch = i.batch and w.worker = i.worker
        where i.batch = %s
        group by 1, 2, 3, 4, 5 order by 1, 5
        """,
        (batch,),
    )
    states: dict[str, int] = {}
    who: dict[str, tuple[str, int, bool]] = {}
    per_worker: dict[str, dict[str, int]] = {}
    for worker, host, pid, alive, state, count in await cursor.fetchall():
        states[state] = states.get(state, 0) + count
        if worker is not None:
            who[worker] = (host, pid, bool(alive))
            per_worker.setdefault(worker, {})[state] = count
    workers = tuple(
        WorkerStatus(worker, *who[worker], per_worker[worker]) for worker in who
    )
    return BatchStatus(batch, states, workers)


async def batch_status(url: str) -> BatchStatus:
    """The progress of the batch a journal URL names (`?batch=`, or "default")."""
    libpq, batch, _ = split_journal_url(url)
    async with await psycopg.AsyncConnection.connect(
        libpq, autocommit=True
    ) as connection:
        return await read_status(connection, batch)
