"""Benchmark child: comet_replicate_async's `Session.as_completed` at its defaults.

`BENCH_OTEL=memory` makes the OpenTelemetry SDK record everything into memory
(spans to an in-memory exporter, metrics to an in-memory reader), to measure
what recording costs; `BENCH_OTEL=memory:PATH` does so only when the package is
imported from under PATH, so one A/B run can compare the same checkout with and
without it. Spans go through a `BatchSpanProcessor`, what a service exports
through (and what `comet-replicate batch` and the docs' examples use);
`BENCH_OTEL_PROCESSOR=simple` measures a `SimpleSpanProcessor` instead, which
exports each span as it ends, on the event loop's thread.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import defaultdict
from typing import Any

from _child import ChildArgs, Meter, Results, main

from comet_replicate_async import Session


def _group_by_model(items: list[dict[str, Any]]) -> dict[str, list[int]]:
    """Indices of the workload per model, in input order."""
    groups: dict[str, list[int]] = defaultdict(list)
    for index, item in enumerate(items):
        groups[item["model"]].append(index)
    return groups


async def _run_model(
    session: Session,
    model: str,
    indices: list[int],
    items: list[dict[str, Any]],
    results: Results,
) -> None:
    """One `as_completed` over one model's inputs; records each item as it resolves."""
    inputs = (items[index]["input"] for index in indices)
    async for item in session.as_completed(model, inputs):
        resolved = time.time()
        # BatchItem.index is the position within this model's inputs.
        index = indices[item.index]
        prediction_id = item.prediction.id if item.prediction is not None else None
        if item.error is None and prediction_id is not None:
            results.succeeded(index, prediction_id, resolved)
        elif item.error is not None:
            results.failed(index, item.error, prediction_id)


def _configure_otel() -> None:
    """Set the global providers when `BENCH_OTEL` asks (see the docstring)."""
    mode, _, only = os.environ.get("BENCH_OTEL", "").partition(":")
    if mode != "memory":
        return
    import comet_replicate_async

    if only and not comet_replicate_async.__file__.startswith(only):
        return
    from opentelemetry import metrics, trace
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
        InMemorySpanExporter,
    )

    tracer_provider = TracerProvider()
    exporter = InMemorySpanExporter()
    tracer_provider.add_span_processor(
        SimpleSpanProcessor(exporter)
        if os.environ.get("BENCH_OTEL_PROCESSOR") == "simple"
        else BatchSpanProcessor(exporter)
    )
    trace.set_tracer_provider(tracer_provider)
    metrics.set_meter_provider(MeterProvider(metric_readers=[InMemoryMetricReader()]))


async def run(args: ChildArgs, meter: Meter, results: Results) -> None:
    """Run the workload through one session, one `as_completed` per model.

    as_completed takes one model, so the mixed workload runs one per model at
    the same time; all of them draw from the session's one concurrency window.
    """
    groups = _group_by_model(args.items)
    _configure_otel()
    async with Session(
        args.api_key, base_url=args.base_url, max_concurrency=args.concurrency
    ) as session:
        meter.start()
        async with asyncio.TaskGroup() as group:
            for model, indices in groups.items():
                group.create_task(
                    _run_model(session, model, indices, args.items, results)
                )
        meter.stop()


if __name__ == "__main__":
    main(run)
