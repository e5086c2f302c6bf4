"""Never executed: checked by `mypy --strict` so a change to the public API's types
fails CI. It uses the API the way the README and docs do."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import aclosing
from pathlib import Path
from typing import Any

from comet_replicate_async import (
    AmbiguousSubmitError,
    APIConnectionError,
    APIError,
    BatchItem,
    BatchStoppedError,
    CometReplicateError,
    Event,
    Flux11Pro,
    Flux11ProUltra,
    FluxDev,
    FluxInput,
    FluxKontextPro,
    FluxSchnell,
    HtmlGrid,
    InputValidationError,
    PollPolicy,
    Prediction,
    PredictionCanceled,
    PredictionFailed,
    PredictionFuture,
    PredictionTimeout,
    RateLimitError,
    RawResponse,
    RequestSpec,
    RequestTimeout,
    RetryPolicy,
    Session,
    SessionStats,
    Status,
    Transport,
    html_grid,
)
from comet_replicate_async.testing import (
    FakeCometAPI,
    FakeStats,
    Fault,
    Latency,
    MockTransport,
    RequestRecord,
    mock_reply,
)


def on_event(event: Event) -> None:
    if event.prediction is not None:
        status: Status = event.prediction.status
        print(status.terminal)


async def single() -> tuple[str, ...]:
    async with Session(
        retry=RetryPolicy(max_attempts=3),
        poll=PollPolicy(min_interval=0.5, interval_share=0.1),
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


async def seconds_and_no_deadline() -> Prediction:
    # Seconds for every HTTP timeout alike; no per-prediction deadline.
    async with Session(request_timeout=30.0, timeout=None) as session:
        return await session.get("q4chw5rey9rmt0cww76t4h3ma4")


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
        refused: int = stats.creates_refused
        pace: float | None = stats.create_rate
        cap: int | None = stats.in_flight_cap
        print(pace, cap, stats.requests_in_flight)
        print(refused, pace)
        return await session.gather("black-forest-labs/flux-schnell", [{"prompt": "b"}])


async def capped() -> float:
    async with Session(
        max_cost=5.0,
        prices={"black-forest-labs/flux-schnell": 0.003},
        server_deadline=True,
    ) as session:
        items = await session.gather(
            "black-forest-labs/flux-schnell", [{"prompt": "c"}]
        )
        missing: int = items[0].missing_outputs
        spent: float = session.stats.spent
        reserved: float = session.stats.reserved
        return spent + reserved + missing


async def traced() -> str:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.trace import TracerProvider

    async with Session(
        tracer_provider=TracerProvider(), meter_provider=MeterProvider()
    ) as session:
        prediction = await session.run(
            "black-forest-labs/flux-schnell", {"prompt": "d"}
        )
        return prediction.id


async def fake() -> int:
    async with FakeCometAPI(latency={"flux-schnell": Latency.uniform(1, 3)}) as server:
        server.script("create", Fault.rate_limited("1"), Fault.ghost(502))
        async with Session(server.api_key, base_url=server.base_url) as session:
            await session.run("black-forest-labs/flux-schnell", {"prompt": "x"})
        return server.stats.duplicates + server.stats.peak_in_flight


async def notebook() -> tuple[str, str]:
    async with FakeCometAPI(extra_models=["acme/sketch"]) as server:
        server.serve("acme/paint")
        served: frozenset[str] = server.models
        async with Session(server.api_key, base_url=server.base_url) as session:
            items = await session.gather(FluxSchnell, [{"prompt": "x"}])
            one = await session.run(FluxSchnell("y"))
        grid: HtmlGrid = html_grid([*items, one])
        # A notebook calls `_repr_html_`; code reads the grid's HTML as a string.
        return grid.html, str(grid) + str(served)


async def mocked() -> Prediction:
    def answer(request: RequestSpec) -> RawResponse:
        body = {"id": "p1", "status": "starting", "input": request.json_body}
        return mock_reply(201, body, headers={"X-Request-Id": "r1"})

    async def answer_later(request: RequestSpec) -> RawResponse:
        return mock_reply(200, body=b"raw")

    transport: Transport = MockTransport(answer)
    sent: list[RequestSpec] = MockTransport(answer_later).requests
    print(sent)
    async with Session(transport=transport) as session:
        return await session.create("black-forest-labs/flux-schnell", {"prompt": "x"})


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


async def mixed_models() -> list[BatchItem]:
    async with Session(max_concurrency=4) as session:
        typed = [FluxSchnell("a fox"), FluxDev("a fox"), Flux11Pro("a fox")]
        async for item in session.as_completed(typed, timeout=60):
            model: str = item.model
            print(model, item.ok)
        mixed: list[FluxInput] = [FluxSchnell("an owl"), FluxDev("an owl")]
        # Dicts name no model: a batch of them needs one (a checker says so).
        await session.gather([{"prompt": "an owl"}])  # type: ignore[list-item]
        return await session.gather(mixed, journal="owls.sqlite3")


async def prompts() -> AsyncIterator[dict[str, str]]:
    yield {"prompt": "a paper boat"}


async def docs_batches_and_downloads() -> list[Path]:
    async with Session(
        max_concurrency=4,
        adaptive_concurrency=True,
        creates_per_minute=120,
        prefer_wait=10,
        download_concurrency=4,
    ) as session:
        paths: list[Path] = []
        batch = session.as_completed("black-forest-labs/flux-schnell", prompts())
        async with aclosing(batch) as items:
            async for item in items:
                if item.ok and item.prediction is not None:
                    paths += await session.download(item.prediction, "out", stem="x")
        typed = [FluxSchnell("a fox", output_format="png")]
        async for item in session.as_completed(FluxSchnell, typed, timeout=60):
            index: int = item.index
            error: BaseException | None = item.error
            print(index, error, session.stats.concurrency_limit)
        return paths


async def docs_deadlines() -> Prediction:
    async with Session() as session:
        try:
            return await session.run(Flux11ProUltra("a lighthouse"), timeout=1)
        except PredictionTimeout as error:
            if error.prediction_id is None:
                raise
            last: Status | None = error.last_status
            print(last, error.prediction)
            owl = session.submit(FluxSchnell("an owl"))
            if not owl.done() and owl.cancel():
                seen: Prediction | None = owl.prediction
                print(seen, owl.cancelled())
            return await session.wait(error.prediction_id, timeout=300)


def docs_error_fields(error: Exception) -> tuple[int, str]:
    if isinstance(error, InputValidationError):
        return 422, "; ".join(error.problems)
    if isinstance(error, RateLimitError):
        return 503, str(error.retry_after or 10)
    if isinstance(error, BatchStoppedError):
        cause: CometReplicateError = error.reason
        return 503, str(cause)
    if isinstance(error, PredictionFailed | PredictionCanceled):
        failed: Prediction | None = error.prediction
        reason: str | None = failed.error if failed is not None else None
        return 502, reason or ""
    if isinstance(error, APIError):
        request_id: str | None = error.request_id
        return 502, f"{error.status_code} {error.message} {request_id} {error.code}"
    if isinstance(error, APIConnectionError):
        return 502, str(error.request_sent)
    return 500, ""


async def docs_testing() -> None:
    fake = FakeCometAPI(
        latency=Latency.uniform(0.05, 0.2),
        default_latency=Latency.parse("0.05"),
        failure_rate=0.1,
        abort_rate=0.0,
        server_error_rate=0.05,
        ghost_share=0.5,
        reset_rate=0.01,
        malformed_rate=0.01,
        slow_rate=0.01,
        slow_delay=0.5,
        creates_per_minute=600,
        rate_window=60.0,
        seed=7,
    )
    async with fake:
        fake.script(
            "create",
            Fault.ok(),
            Fault.status(500, message="boom"),
            Fault.rate_limited(retry_after=None),
            Fault.ghost(),
            Fault.reset(after_create=True),
            Fault.delay(0.5),
            Fault.html(502),
            Fault.truncated(),
            Fault.redirect(),
        )
        fake.script("query", Fault.status(503))
        fake.script("file", Fault.status(404))
        fake.script_polls("q4chw5rey9rmt0cww76t4h3ma4", Fault.raw(b"<html>"))

        def shout(normal: dict[str, object]) -> dict[str, object]:
            return {**normal, "status": "SUCCEEDED"}

        fake.script_polls(
            lambda record: record.model.endswith("flux-pro"),
            Fault.raw(shout, status=201),
            Fault.raw({"id": "other"}, content_type="application/json"),
            repeat_last=True,
        )
        stats: FakeStats = fake.stats
        counts: list[int] = [
            stats.count("create"),
            stats.count("create", 429),
            stats.created,
            stats.duplicates,
            stats.peak_in_flight,
            stats.in_flight_now,
        ]
        records: list[RequestRecord] = list(stats.requests_log)
        keyless = all(
            "Authorization" not in r.headers for r in records if r.route == "file"
        )
        sent: list[Mapping[str, Any]] = [p.input for p in fake.predictions.values()]
        print(counts, keyless, sent, fake.files_base_url)
        fake.reset()
