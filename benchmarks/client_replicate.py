"""Benchmark child: the official `replicate` client (1.0.x, httpx) at its defaults.

Each prediction is `models.predictions.async_create` then `Prediction.async_wait`
(a reload every `poll_interval`, 0.5 s by default), under an `asyncio.Semaphore`.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from _child import ChildArgs, ItemResult, Meter, main, record_error
from replicate.client import Client


async def _one(
    client: Client,
    sem: asyncio.Semaphore,
    item: dict[str, Any],
    result: ItemResult,
) -> None:
    """Create one prediction and wait for it; errors land in *result*."""
    try:
        async with sem:
            prediction = await client.models.predictions.async_create(
                model=item["model"], input=item["input"]
            )
            result.prediction_id = prediction.id
            await prediction.async_wait()
        resolved = time.time()
    except Exception as error:  # recorded, never fatal: one item is one data point
        record_error(result, error)
        return
    if prediction.status == "succeeded":
        result.resolved_wall = resolved
    else:
        result.error = f"prediction ended {prediction.status}: {prediction.error}"
        result.error_type = "PredictionEnded"


async def run(args: ChildArgs, meter: Meter, results: list[ItemResult]) -> None:
    """Run the workload, one task per input, at most `concurrency` in flight."""
    # The client joins "/v1/..." onto the base URL's path, so the fake's
    # "/replicate/v1/..." routes need "/replicate" here; it sends "Bearer <token>".
    client = Client(api_token=args.api_key, base_url=f"{args.base_url}/replicate")
    sem = asyncio.Semaphore(args.concurrency)
    meter.start()
    async with asyncio.TaskGroup() as group:
        for item, result in zip(args.items, results, strict=True):
            group.create_task(_one(client, sem, item, result))
    meter.stop()
    await client._async_client.aclose()  # the client offers no public close


if __name__ == "__main__":
    main(run)
