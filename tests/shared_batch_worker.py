"""One worker of a batch shared through a PostgreSQL journal, run by the tests.

`python shared_batch_worker.py BASE_URL API_KEY JOURNAL_URL COUNT`: runs
`as_completed` over COUNT inputs with the journal, printing one JSON line per
item it yields, then "done".
"""

from __future__ import annotations

import json
import sys

import anyio
from journal_worker import inputs

from comet_replicate_async import AmbiguousSubmitError, Session


async def main(base_url: str, api_key: str, journal: str, count: int) -> None:
    async with Session(api_key, base_url=base_url, max_concurrency=4) as session:
        items = session.as_completed(
            "black-forest-labs/flux-schnell", inputs(count), journal=journal
        )
        async for item in items:
            line = {
                "index": item.index,
                "ok": item.ok,
                "ambiguous": isinstance(item.error, AmbiguousSubmitError),
                "id": None if item.prediction is None else item.prediction.id,
            }
            print(json.dumps(line), flush=True)
    print("done", flush=True)


if __name__ == "__main__":
    anyio.run(main, sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]))
