"""Benchmark child: the least a hand-written aiohttp loop does.

Under an `asyncio.Semaphore`: POST the create, then GET the prediction every
0.25 s until it is terminal. No retries, no backoff, no validation beyond status.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
from _child import TERMINAL_STATUSES, ChildArgs, Meter, Results, main

POLL_INTERVAL = 0.25


async def _predict(
    http: aiohttp.ClientSession, base_url: str, item: dict[str, Any]
) -> dict[str, Any]:
    """Create one prediction and poll it until terminal; return its last JSON."""
    create_url = f"{base_url}/replicate/v1/models/{item['model']}/predictions"
    async with http.post(create_url, json={"input": item["input"]}) as response:
        response.raise_for_status()
        prediction: dict[str, Any] = await response.json()
    query_url = f"{base_url}/replicate/v1/predictions/{prediction['id']}"
    while prediction["status"] not in TERMINAL_STATUSES:
        await asyncio.sleep(POLL_INTERVAL)
        async with http.get(query_url) as response:
            response.raise_for_status()
            prediction = await response.json()
    return prediction


async def _one(
    http: aiohttp.ClientSession,
    sem: asyncio.Semaphore,
    base_url: str,
    index: int,
    item: dict[str, Any],
    results: Results,
) -> None:
    """Run one item; report its outcome to *results*."""
    try:
        async with sem:
            prediction = await _predict(http, base_url, item)
        resolved = time.time()
    except Exception as error:  # recorded, never fatal: one item is one data point
        results.failed(index, error)
        return
    if prediction["status"] == "succeeded":
        results.succeeded(index, prediction["id"], resolved)
    else:
        results.ended(index, prediction["id"], prediction["status"], "")


async def run(args: ChildArgs, meter: Meter, results: Results) -> None:
    """Run the workload, one task per input, at most `concurrency` in flight."""
    headers = {"Authorization": f"Bearer {args.api_key}"}
    # aiohttp's default pool (100 connections): what a minimal loop gets.
    async with aiohttp.ClientSession(headers=headers) as http:
        sem = asyncio.Semaphore(args.concurrency)
        meter.start()
        async with asyncio.TaskGroup() as group:
            for index, item in enumerate(args.items):
                group.create_task(_one(http, sem, args.base_url, index, item, results))
        meter.stop()


if __name__ == "__main__":
    main(run)
