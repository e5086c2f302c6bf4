"""A worker process on a shared PostgreSQL journal, driven by the tests.

`python postgres_worker.py URL BATCH claim`: waits for a line on stdin, then
claims items three at a time and finishes them until none is left, and prints their positions as
one JSON list.

`python postgres_worker.py URL BATCH hold LEASE`: claims items 0 to 3, creates
0 (id "p0"), leaves 1 pending (as if its create were in flight), finishes 3,
prints "ready" and waits on stdin to be killed.
"""

from __future__ import annotations

import json
import sys

import anyio

from comet_replicate_async._journal.postgres.store import PostgresJournal


async def claim_all(url: str, batch: str) -> None:
    async with PostgresJournal(url, batch=batch) as journal:
        await anyio.to_thread.run_sync(sys.stdin.readline)
        positions: list[int] = []
        while claims := await journal.claim(3):
            for claim in claims:
                positions.append(claim.index)
                await journal.finish(claim.index, "succeeded")
    print(json.dumps(positions), flush=True)


async def hold(url: str, batch: str, lease: float) -> None:
    async with PostgresJournal(url, batch=batch, lease=lease) as journal:
        claims = await journal.claim(4)
        assert [claim.index for claim in claims] == [0, 1, 2, 3], claims
        await journal.pending(0)
        await journal.created(0, "p0")
        await journal.pending(1)
        await journal.finish(3, "succeeded", prediction_id="p3")
        print("ready", flush=True)
        await anyio.to_thread.run_sync(sys.stdin.readline)


if __name__ == "__main__":
    url, batch, mode, *rest = sys.argv[1:]
    if mode == "claim":
        anyio.run(claim_all, url, batch)
    else:
        anyio.run(hold, url, batch, float(rest[0]))
