"""Helpers for the tests on a PostgreSQL journal: raw SQL, journal URLs, worker processes."""

from __future__ import annotations

import signal
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import anyio
import psycopg
from anyio.abc import Process

from comet_replicate_async._journal.postgres.status import batch_status
from comet_replicate_async._journal.shared import split_journal_url


async def sql(url: str, query: str) -> list[tuple[Any, ...]]:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        cursor = await conn.execute(query.encode())
        return await cursor.fetchall() if cursor.description else []


def with_query(url: str, **params: str) -> str:
    query = "&".join(f"{name}={value}" for name, value in params.items())
    return f"{url}&{query}" if "?" in url else f"{url}?{query}"


async def victim_holds_created_and_pending(url: str, pid: int) -> bool:
    status = await batch_status(url)
    held = [w.states for w in status.workers if w.pid == pid and w.alive]
    if not held or held[0].get("created", 0) == 0:
        return False
    # Only an item marked pending in the last 0.3 s: the fake answers creates
    # after a second, so its create is still in flight when the kill lands,
    # even on a loaded machine.
    libpq, batch, _ = split_journal_url(url)
    rows = await sql(
        libpq,
        "select count(*) from comet_replicate.items"
        f" where batch = '{batch}' and state = 'pending'"
        f" and worker like '%:{pid}:%'"
        " and updated_at > clock_timestamp() - interval '300 milliseconds'",
    )
    return bool(rows[0][0])


async def kill_the_first_midway(
    workers: Sequence[Process],
    journal: str,
    *,
    then: Callable[[], Awaitable[object]] | None = None,
) -> None:
    """SIGKILL the first worker once it holds created items and a create just sent
    (so still in flight), await `then()` once it is dead, and wait for every worker to end."""
    with anyio.fail_after(60):
        # Polled: the condition lives in another process's rows.
        while not await victim_holds_created_and_pending(  # noqa: ASYNC110
            journal, workers[0].pid
        ):
            await anyio.sleep(0.02)
    workers[0].send_signal(signal.SIGKILL)
    if then is not None:
        await workers[0].wait()
        await then()
    with anyio.fail_after(90):
        for worker in workers:
            await worker.wait()


async def end_all(workers: Sequence[Process]) -> None:
    """Kill the workers still running (a failed test), and close every one."""
    for worker in workers:
        if worker.returncode is None:
            worker.kill()
        await worker.aclose()
