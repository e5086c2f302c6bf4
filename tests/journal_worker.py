"""A process running a resumable batch, driven (and killed) by the tests.

`python journal_worker.py BASE_URL API_KEY JOURNAL COUNT`: runs
`as_completed` over COUNT inputs with the journal, printing "item N" as each
item is read; the tests kill it with SIGKILL half-way.
"""

from __future__ import annotations

import sys

import anyio

from comet_replicate_async import Session


def inputs(count: int) -> list[dict[str, str]]:
    """The batch's inputs, the same in the worker and the test."""
    return [{"prompt": f"input number {n}"} for n in range(count)]


async def main(base_url: str, api_key: str, journal: str, count: int) -> None:
    async with Session(api_key, base_url=base_url, max_concurrency=8) as session:
        items = session.as_completed(
            "black-forest-labs/flux-schnell", inputs(count), journal=journal
        )
        async for item in items:
            print(f"item {item.index}", flush=True)


if __name__ == "__main__":
    anyio.run(main, sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]))
