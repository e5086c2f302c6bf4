"""Benchmark child: the official `replicate` client (1.0.x, httpx) at its defaults.

Each prediction is `models.predictions.async_create` then `Prediction.async_wait`
(a reload every `poll_interval`, 0.5 s by default), under an `asyncio.Semaphore`.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from _child import ChildArgs, Meter, Results, main
from replicate.client import Client


async def _one(
    client: Client,
    sem: asyncio.Semaphore,
    index: int,
    item: dict[str, Any],
    results: Results,
) -> None:
    """Create one prediction and wait for it; report its outcome to *results*."""
    try:
        async with sem:
            prediction = await client.models.predictions.async_create(
                model=item["model"], input=item["input"]
            )
            results.created(index, prediction.id)
            await prediction.async_wait()
        resolved = time.time()
    except Exception as error:  # recorded, never fatal: one item is one data point
        results.failed(index, error)
        return
    if prediction.status == "succeeded":
        results.succeeded(index, prediction.id, resolved)
    else:
        results.ended(index, prediction.id, prediction.status, f": {prediction.error}")


async def run(args: ChildArgs, meter: Meter, results: Results) -> None:
    """Run the workload, one task per input, at most `concurrency` in flight."""
    # The client joins "/v1/..." onto the base URL's path, so the fake's
    # "/replicate/v1/..." routes need "/replicate" here; it sends "Bearer <token>".
    client = Client(api_token=args.api_key, base_url=f"{args.base_url}/replicate")
    sem = asyncio.Semaphore(args.concurrency)
    meter.start()
    async with asyncio.TaskGroup() as group:
        for index, item in enumerate(args.items):
            group.create_task(_one(client, sem, index, item, results))
    meter.stop()
    await client._async_client.aclose()  # the client offers no public close


if __name__ == "__main__":
    main(run)
