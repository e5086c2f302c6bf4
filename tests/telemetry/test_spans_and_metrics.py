"""OpenTelemetry: one span per prediction, its create and polls, the metrics, the key.

The SDK records into memory here (an in-memory span exporter and metric
reader); the session gets its providers explicitly.
"""

from __future__ import annotations

import itertools
import json
import logging
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)
from opentelemetry.trace import StatusCode

from comet_replicate_async import (
    AmbiguousSubmitError,
    PredictionTimeout,
    Session,
)
from comet_replicate_async._telemetry import switch as _telemetry
from comet_replicate_async._telemetry.base import NO_TELEMETRY
from comet_replicate_async._telemetry.otel import OtelTelemetry, TracedTransport
from comet_replicate_async._telemetry.switch import build_telemetry
from comet_replicate_async.testing import FakeCometAPI, Fault, Latency

from helpers import SCHNELL, eventually, session_for

pytestmark = pytest.mark.anyio

QUICK = Latency.uniform(0.02, 0.08)
PRICE = 0.003
STATUS = "comet_replicate.prediction.status"


class Recorded:
    """An SDK tracer and meter provider recording into memory."""

    def __init__(self) -> None:
        self.spans = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.spans))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])
        self.tracer = self.tracer_provider.get_tracer("test")

    def options(self) -> dict[str, Any]:
        return {
            "tracer_provider": self.tracer_provider,
            "meter_provider": self.meter_provider,
        }

    def finished(self) -> list[ReadableSpan]:
        return list(self.spans.get_finished_spans())

    def predictions(self) -> list[ReadableSpan]:
        return [
            span
            for span in self.finished()
            if (span.attributes or {}).get("gen_ai.operation.name")
        ]

    def points(self, name: str) -> list[Any]:
        data = self.reader.get_metrics_data()
        assert data is not None
        return [
            point
            for resource in data.resource_metrics
            for scope in resource.scope_metrics
            for metric in scope.metrics
            if metric.name == name
            for point in metric.data.data_points
        ]

    def total(self, name: str, **attributes: Any) -> float:
        """The sum (or count, for a histogram) of the points matching `attributes`."""
        total = 0.0
        for point in self.points(name):
            if all(point.attributes.get(k) == v for k, v in attributes.items()):
                total += getattr(point, "value", None) or getattr(point, "count", 0)
        return total

    def shutdown(self) -> None:
        self.tracer_provider.shutdown()
        self.meter_provider.shutdown()


@pytest.fixture
def recorded() -> Iterator[Recorded]:
    recording = Recorded()
    yield recording
    recording.shutdown()


def attrs_of(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


@pytest.mark.slow
@pytest.mark.timeout(90)
async def test_a_200_input_batch_has_one_span_per_input_and_metrics_equal_to_stats(
    recorded: Recorded,
) -> None:
    fake = FakeCometAPI(
        default_latency=Latency.uniform(0.05, 0.3),
        server_error_rate=0.05,
        creates_per_second=150,
        burst=10,
        seed=11,
    )
    inputs = [{"prompt": f"input {index}"} for index in range(200)]
    async with fake:
        async with session_for(
            fake, max_concurrency=60, prices={SCHNELL: PRICE}, **recorded.options()
        ) as session:
            with recorded.tracer.start_as_current_span("caller") as caller:
                with anyio.fail_after(60):
                    items = await session.gather(SCHNELL, inputs)
            stats = session.stats
            in_flight = recorded.total("comet_replicate.predictions.in_flight")

    spans = recorded.finished()
    [batch] = [span for span in spans if span.name == f"batch {SCHNELL}"]
    assert batch.parent is not None
    assert batch.parent.span_id == caller.get_span_context().span_id
    assert attrs_of(batch)["comet_replicate.batch.inputs"] == 200
    assert attrs_of(batch)["comet_replicate.batch.succeeded"] == stats.succeeded

    # Exactly one prediction span per input, under the batch, linked to it.
    predictions = recorded.predictions()
    by_index = {
        attrs_of(span)["comet_replicate.batch.index"]: span for span in predictions
    }
    assert len(predictions) == 200
    assert sorted(by_index) == list(range(200))
    batch_id = batch.context.span_id
    for item in items:
        span = by_index[item.index]
        attributes = attrs_of(span)
        assert span.parent is not None
        assert span.parent.span_id == batch_id
        assert [link.context.span_id for link in span.links] == [batch_id]
        assert span.context.trace_id == caller.get_span_context().trace_id
        assert attributes["gen_ai.request.model"] == SCHNELL
        assert attributes["gen_ai.provider.name"] == "cometapi"
        assert attributes["gen_ai.output.type"] == "image"
        if item.prediction is not None:
            assert attributes["comet_replicate.prediction.id"] == item.prediction.id
            status = item.prediction.status.value
            assert attributes["comet_replicate.prediction.status"] == status
        if item.error is None:
            assert attributes["comet_replicate.outcome"] == "succeeded"
            assert span.status.status_code is StatusCode.UNSET
            assert attributes["comet_replicate.polls"] >= 1
            assert attributes["comet_replicate.cost.usd"] == PRICE
        else:
            assert span.status.status_code is StatusCode.ERROR
            assert attributes["error.type"] == type(item.error).__name__
    outcomes = Counter(
        attrs_of(span)["comet_replicate.outcome"] for span in predictions
    )
    assert outcomes["succeeded"] == stats.succeeded > 150

    # Create spans: children of their prediction, with their status codes.
    creates = [span for span in spans if span.name == "POST"]
    prediction_ids = {span.context.span_id for span in predictions}
    assert len(creates) == stats.creates == fake.stats.count("create")
    assert all(
        span.parent and span.parent.span_id in prediction_ids for span in creates
    )
    codes = Counter(attrs_of(span)["http.response.status_code"] for span in creates)
    assert codes[429] == stats.creates_refused == fake.stats.count("create", 429) > 0
    assert codes[201] == fake.stats.count("create", 201)
    attempts = sum(
        attrs_of(span)["comet_replicate.create.attempts"] for span in predictions
    )
    assert attempts == stats.creates
    assert all(
        attrs_of(span)["url.full"].startswith(fake.base_url + "/replicate/v1/models/")
        for span in creates
    )
    # Each refusal is an event on its prediction's span.
    events = Counter(event.name for span in predictions for event in span.events)
    assert events["rate_limited"] == stats.creates_refused
    assert events["create_paused"] > 0  # creates held back after the 429s
    # Every poll is counted on its span; a reply is an event when it tells a
    # new status, and each failed poll is one (with error.type).
    polls = sum(attrs_of(span)["comet_replicate.polls"] for span in predictions)
    assert polls == stats.queries
    changes = 0
    for span in predictions:
        statuses = [
            (event.attributes or {})[STATUS]
            for event in span.events
            if event.name == "poll" and STATUS in (event.attributes or {})
        ]
        assert all(before != after for before, after in itertools.pairwise(statuses))
        if statuses:
            assert statuses[-1] == attrs_of(span)[STATUS]
        changes += len(statuses)
    assert 0 < changes < stats.queries
    failed_polls = sum(
        fake.stats.count("query", code) for code in (500, 502, 503, 504, 524)
    )
    assert failed_polls > 0
    assert failed_polls == sum(
        1
        for span in predictions
        for event in span.events
        if event.name == "poll" and "error.type" in (event.attributes or {})
    )

    # Metrics: the same sums as the session's counters and the fake's.
    assert recorded.total("comet_replicate.creates") == stats.creates
    assert (
        recorded.total(
            "comet_replicate.creates", **{"comet_replicate.create.outcome": "refused"}
        )
        == stats.creates_refused
    )
    accepted = recorded.total(
        "comet_replicate.creates", **{"comet_replicate.create.outcome": "accepted"}
    )
    assert accepted == fake.stats.count("create", 201)
    assert recorded.total("comet_replicate.polls") == stats.queries
    assert stats.queries == fake.stats.count("query")
    assert recorded.total("http.client.request.duration") == stats.requests
    assert recorded.total("gen_ai.client.operation.duration") == 200
    assert recorded.total("comet_replicate.predictions") == stats.submitted == 200
    assert (
        recorded.total(
            "comet_replicate.predictions", **{"comet_replicate.outcome": "succeeded"}
        )
        == stats.succeeded
    )
    assert recorded.total("comet_replicate.spend") == pytest.approx(stats.spent)
    assert stats.spent >= stats.succeeded * PRICE > 0
    assert in_flight == 0


async def test_run_and_submit_are_children_of_the_callers_span(
    recorded: Recorded,
) -> None:
    async with FakeCometAPI(default_latency=QUICK) as fake:
        async with session_for(fake, **recorded.options()) as session:
            with recorded.tracer.start_as_current_span("caller") as caller:
                ran = await session.run(SCHNELL, {"prompt": "a"})
                future = session.submit(SCHNELL, {"prompt": "b"})
            submitted = await future

    caller_id = caller.get_span_context().span_id
    spans = {
        attrs_of(span)["comet_replicate.prediction.id"]: span
        for span in recorded.predictions()
    }
    for prediction in (ran, submitted):
        span = spans[prediction.id]
        assert span.parent is not None
        assert span.parent.span_id == caller_id
        assert span.name == f"generate_content {SCHNELL}"
        attributes = attrs_of(span)
        assert attributes["comet_replicate.outcome"] == "succeeded"
        assert attributes["comet_replicate.prediction.status"] == "succeeded"
        assert attributes["comet_replicate.create.attempts"] == 1
        assert attributes["comet_replicate.queue.duration"] >= 0
        [create] = [
            s
            for s in recorded.finished()
            if s.parent and s.parent.span_id == span.context.span_id
        ]
        assert attrs_of(create)["http.response.status_code"] == 201
        assert attrs_of(create)["http.request.method"] == "POST"
        assert span.start_time <= create.start_time < create.end_time <= span.end_time


async def test_the_duration_points_exemplars_name_the_prediction_spans(
    recorded: Recorded,
) -> None:
    async with FakeCometAPI(default_latency=QUICK) as fake:
        async with session_for(fake, **recorded.options()) as session:
            await session.run(SCHNELL, {"prompt": "a"})
            await session.run(SCHNELL, {"prompt": "b"})

    span_ids = {span.context.span_id for span in recorded.predictions()}
    [point] = recorded.points("gen_ai.client.operation.duration")
    assert point.count == 2
    assert {exemplar.span_id for exemplar in point.exemplars} <= span_ids
    assert point.exemplars
    # The HTTP points are recorded outside any span: no exemplar.
    assert not any(p.exemplars for p in recorded.points("http.client.request.duration"))


async def test_a_cancelled_run_ends_its_span_cancelled(recorded: Recorded) -> None:
    async with FakeCometAPI(default_latency=Latency.constant(30)) as fake:
        async with session_for(fake, **recorded.options()) as session:
            async with anyio.create_task_group() as group:
                group.start_soon(session.run, SCHNELL, {"prompt": "a"})
                await eventually(lambda: len(session._parts.registry) == 1)
                group.cancel_scope.cancel()

    [span] = recorded.predictions()
    attributes = attrs_of(span)
    assert attributes["comet_replicate.outcome"] == "cancelled"
    assert attributes["error.type"] == "CancelledError"
    assert attributes["comet_replicate.prediction.id"]
    assert span.status.status_code is StatusCode.ERROR


async def test_a_timeout_ends_its_span_with_the_id_and_last_status(
    recorded: Recorded,
) -> None:
    async with FakeCometAPI(default_latency=Latency.constant(30)) as fake:
        async with session_for(fake, **recorded.options()) as session:
            with pytest.raises(PredictionTimeout) as caught:
                await session.run(SCHNELL, {"prompt": "a"}, timeout=0.5)

    [span] = recorded.predictions()
    attributes = attrs_of(span)
    assert attributes["comet_replicate.outcome"] == "timeout"
    assert attributes["error.type"] == "PredictionTimeout"
    assert attributes["comet_replicate.prediction.id"] == caught.value.prediction_id
    assert attributes["comet_replicate.prediction.status"] in ("starting", "processing")
    assert span.status.status_code is StatusCode.ERROR
    assert (
        recorded.total(
            "gen_ai.client.operation.duration", **{"comet_replicate.outcome": "timeout"}
        )
        == 1
    )


async def test_an_ambiguous_create_ends_its_span_ambiguous(recorded: Recorded) -> None:
    async with FakeCometAPI(default_latency=QUICK) as fake:
        fake.script("create", Fault.status(502))
        async with session_for(fake, **recorded.options()) as session:
            with pytest.raises(AmbiguousSubmitError):
                await session.run(SCHNELL, {"prompt": "a"})

    [span] = recorded.predictions()
    attributes = attrs_of(span)
    assert attributes["comet_replicate.outcome"] == "ambiguous"
    assert attributes["error.type"] == "AmbiguousSubmitError"
    assert "comet_replicate.prediction.id" not in attributes
    [create] = [s for s in recorded.finished() if s.name == "POST"]
    assert attrs_of(create)["http.response.status_code"] == 502
    assert attrs_of(create)["error.type"] == "502"
    assert create.status.status_code is StatusCode.ERROR
    outcome = {"comet_replicate.create.outcome": "ambiguous"}
    assert recorded.total("comet_replicate.creates", **outcome) == 1


async def test_resumed_journal_items_are_marked(
    recorded: Recorded, tmp_path: Path
) -> None:
    journal = tmp_path / "batch.sqlite"
    inputs = [{"prompt": f"p{index}"} for index in range(3)]
    async with FakeCometAPI(default_latency=QUICK) as fake:
        async with session_for(fake) as session:
            first = await session.gather(SCHNELL, inputs, journal=journal)
        async with session_for(fake, **recorded.options()) as session:
            again = await session.gather(SCHNELL, inputs, journal=journal)

    assert all(item.resumed for item in again)
    spans = recorded.predictions()
    assert len(spans) == 3
    ids = {item.prediction.id for item in first if item.prediction is not None}
    for span in spans:
        attributes = attrs_of(span)
        assert attributes["comet_replicate.resumed"] is True
        assert attributes["comet_replicate.outcome"] == "succeeded"
        assert attributes["comet_replicate.prediction.id"] in ids
        assert attributes["comet_replicate.create.attempts"] == 0
    [batch] = [span for span in recorded.finished() if span.name.startswith("batch ")]
    assert attrs_of(batch)["comet_replicate.batch.resumed"] == 3


@pytest.mark.slow
@pytest.mark.timeout(60)
async def test_the_key_is_in_no_attribute_event_or_log_record(
    recorded: Recorded, caplog: pytest.LogCaptureFixture
) -> None:
    canary = "sk-canary-7f3a9c1e5b"
    caplog.set_level(logging.DEBUG)
    async with FakeCometAPI(
        api_key=canary,
        default_latency=QUICK,
        server_error_rate=0.1,
        reset_rate=0.05,
        creates_per_second=50,
        burst=2,
        seed=4,
    ) as fake:
        async with session_for(
            fake, max_concurrency=10, **recorded.options()
        ) as session:
            with anyio.fail_after(40):
                await session.gather(SCHNELL, [{"prompt": f"p{i}"} for i in range(30)])

    texts = [span.to_json() for span in recorded.finished()]
    data = recorded.reader.get_metrics_data()
    assert data is not None
    texts.append(data.to_json())
    texts += [json.dumps(vars(record), default=repr) for record in caplog.records]
    assert len(texts) > 30
    assert not [text for text in texts if canary in text]


async def test_without_a_configured_provider_nothing_is_observed() -> None:
    async with FakeCometAPI(default_latency=QUICK) as fake:
        async with session_for(fake) as session:
            assert session._parts.telemetry is NO_TELEMETRY
            assert not isinstance(session._parts.transport, TracedTransport)
            await session.run(SCHNELL, {"prompt": "a"})
            assert all(
                entry.trace is None for entry in session._parts.registry.entries()
            )


async def test_log_records_carry_the_prediction_model_and_batch(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="comet_replicate_async")
    async with FakeCometAPI(default_latency=Latency.constant(30)) as fake:
        async with session_for(fake) as session:
            # A run cancelled while its prediction runs: the id is logged.
            async with anyio.create_task_group() as group:
                group.start_soon(session.run, SCHNELL, {"prompt": "a"})
                await eventually(lambda: len(session._parts.registry) == 1)
                group.cancel_scope.cancel()
            # A batch stopped while its prediction runs: the id is logged too.
            items = session.as_completed(SCHNELL, [{"prompt": "b"}])
            async with anyio.create_task_group() as group:
                group.start_soon(anext, items)
                await eventually(lambda: len(session._parts.registry) == 1)
                group.cancel_scope.cancel()
            await items.aclose()
    records = [r for r in caplog.records if getattr(r, "prediction_id", None)]
    assert len(records) >= 2
    assert all(getattr(r, "model", None) == SCHNELL for r in records)
    assert any(getattr(r, "batch", None) for r in records)


def test_without_opentelemetry_installed_providers_are_ignored_with_a_warning(
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    recorded: Recorded,
) -> None:
    monkeypatch.setattr(_telemetry, "HAVE_OTEL", False)
    assert build_telemetry(None, None, "https://api.cometapi.com") is NO_TELEMETRY
    assert not caplog.records
    built = build_telemetry(recorded.tracer_provider, None, "https://api.cometapi.com")
    assert built is NO_TELEMETRY
    assert "not installed" in caplog.records[-1].getMessage()


def test_url_full_has_no_user_info_or_query(recorded: Recorded) -> None:
    built = build_telemetry(
        recorded.tracer_provider, None, "https://user:secret@api.example.com:8443/x?k=v"
    )
    assert isinstance(built, OtelTelemetry)
    assert built.url_root == "https://api.example.com:8443/x"
    assert (built.server_address, built.server_port) == ("api.example.com", 8443)


def test_session_takes_providers_as_keywords_only() -> None:
    with pytest.raises(TypeError):
        Session("key", None, None)  # type: ignore[misc]
