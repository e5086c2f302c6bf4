"""Never executed: checked by `mypy --strict` so a change to the public API's types
fails CI. It uses the API the way the README and docs do."""

from __future__ import annotations

from contextlib import aclosing

from comet_replicate_async import (
    AmbiguousSubmitError,
    BatchItem,
    Event,
    FluxKontextPro,
    FluxSchnell,
    InputValidationError,
    PollPolicy,
    Prediction,
    PredictionFuture,
    PredictionTimeout,
    RequestTimeout,
    RetryPolicy,
    Session,
    SessionStats,
    Status,
)
from comet_replicate_async.testing import FakeCometAPI, Fault, Latency


def on_event(event: Event) -> None:
    if event.prediction is not None:
        status: Status = event.prediction.status
        print(status.terminal)


async def single() -> tuple[str, ...]:
    async with Session(
        retry=RetryPolicy(max_attempts=3),
        poll=PollPolicy(interval=0.5),
        request_timeout=RequestTimeout(query_read=120),
        max_concurrency=8,
        timeout=600,
        on_event=on_event,
    ) as session:
        pred: Prediction = await session.run(
            "black-forest-labs/flux-schnell", {"prompt": "a paper boat"}, timeout=60
        )
        created = await session.create("black-forest-labs/flux-pro", {"prompt": "x"})
        again: Prediction = await session.get(created.id)
        done: Prediction = await session.wait(again, timeout=30)
        print(done.done, done.output)
        return pred.output_urls


async def batch() -> list[BatchItem]:
    async with Session("sk-...") as session:
        future: PredictionFuture = session.submit(
            "black-forest-labs/flux-dev", {"prompt": "x"}
        )
        maybe_id: str | None = future.id
        print(maybe_id, future.done(), future.cancel())
        try:
            await future
        except PredictionTimeout as timeout:
            print(timeout.prediction_id, timeout.last_status)
        except AmbiguousSubmitError as ambiguous:
            print(ambiguous.model, ambiguous.input)
        async with aclosing(
            session.as_completed("black-forest-labs/flux-schnell", [{"prompt": "a"}])
        ) as items:
            async for item in items:
                print(item.index, item.ok, item.error)
        stats: SessionStats = session.stats
        print(stats.requests, stats.in_flight)
        return await session.gather("black-forest-labs/flux-schnell", [{"prompt": "b"}])


async def fake() -> int:
    async with FakeCometAPI(latency={"flux-schnell": Latency.uniform(1, 3)}) as server:
        server.script("create", Fault.rate_limited("1"), Fault.ghost(502))
        async with Session(server.api_key, base_url=server.base_url) as session:
            await session.run("black-forest-labs/flux-schnell", {"prompt": "x"})
        return server.stats.duplicates + server.stats.peak_in_flight


async def typed(image: bytes) -> list[BatchItem]:
    async with Session() as session:
        one: Prediction = await session.run(FluxSchnell("a boat", num_outputs=2))
        print(one.output_urls)
        edit = FluxKontextPro("make it blue", input_image=image, safety_tolerance=2)
        await session.run("black-forest-labs/flux-kontext-pro", edit)
        try:
            FluxSchnell("x", num_outputs=9)
        except InputValidationError as error:
            problems: tuple[str, ...] = error.problems
            print(problems)
        return await session.gather(FluxSchnell, [{"prompt": "a"}, FluxSchnell("b")])
