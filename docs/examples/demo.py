"""Run a 50-prompt batch against the built-in fake server: no key, no network.

python docs/examples/demo.py
"""

from __future__ import annotations

import time

import anyio

from comet_replicate_async import Session
from comet_replicate_async.testing import FakeCometAPI, Latency

PROMPTS = [f"a paper boat on a lake, study {n}" for n in range(50)]


async def main() -> None:
    latency = {"flux-schnell": Latency.uniform(0.5, 1.5)}
    async with FakeCometAPI(latency=latency, failure_rate=0.04, seed=1) as fake:
        async with Session(
            fake.api_key, base_url=fake.base_url, max_concurrency=16
        ) as session:
            started = time.monotonic()
            async for item in session.as_completed(
                "black-forest-labs/flux-schnell", [{"prompt": p} for p in PROMPTS]
            ):
                if item.prediction and item.error is None:
                    print(
                        f"#{item.index:02d} succeeded  {item.prediction.output_urls[0]}"
                    )
                else:
                    print(
                        f"#{item.index:02d} {type(item.error).__name__}: {item.error}"
                    )
            elapsed = time.monotonic() - started
        stats = session.stats
        print(
            f"\n{stats.succeeded} succeeded, {stats.failed} failed in {elapsed:.1f} s; "
            f"{stats.requests} HTTP requests ({stats.requests / len(PROMPTS):.2f} per prompt), "
            f"server-side duplicates: {fake.stats.duplicates}"
        )


if __name__ == "__main__":
    anyio.run(main)
