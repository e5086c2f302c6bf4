"""The recording side of telemetry, imported only when `opentelemetry` is.

`OtelTelemetry` holds a session's tracer and instruments. It observes the
session from the outside where it can: a transport that times every request
(and makes each create's HTTP span), a create pacer that reports the waits it
imposes, a listener before `on_event` for retries and 429s, and gauges read
from the session's own counters. Names are OpenTelemetry's where one exists
(the GenAI and HTTP client conventions); ours start with `comet_replicate.`.
"""

from __future__ import annotations

import collections
import itertools
import time
import weakref
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from opentelemetry import metrics, trace
from opentelemetry.metrics import CallbackOptions, Meter, Observation
from opentelemetry.trace import Status, StatusCode

from comet_replicate_async._limits import CreatePacer
from comet_replicate_async._sansio import RawResponse, RequestSpec
from comet_replicate_async._stats import Event, EventHandler
from comet_replicate_async._transports.base import Transport

from .base import CURRENT, Telemetry
from .trace import (
    OPERATION,
    OUTCOME,
    PROVIDER,
    STATUS,
    BatchTrace,
    PredictionTrace,
    error_type,
)

__all__ = [
    "Instruments",
    "OtelTelemetry",
    "TracedPacer",
    "TracedTransport",
    "create_outcome",
    "otel_telemetry",
]

SCOPE = "comet_replicate_async"
# The GenAI conventions' buckets for operation durations, stretched to the
# minutes an image model may take.
_OPERATION_BUCKETS = (
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48,
    40.96, 81.92, 163.84, 327.68, 655.36, 1310.72,
)  # fmt: skip
_HTTP_BUCKETS = (
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10,
)  # fmt: skip
# An attribute set, as the SDK takes it.
Attrs = dict[str, Any]
# Waits in the pacer shorter than this are its ordinary spacing, not a pause.
_PAUSE_WORTH_TELLING = 0.05


def _records(tracer_provider: Any, meter_provider: Any) -> tuple[bool, bool]:
    """Whether the tracer and meter providers given (or the global ones) record.

    The global ones are proxies until the SDK is configured: a session made
    before that records nothing.
    """
    tracer_provider = tracer_provider or trace.get_tracer_provider()
    meter_provider = meter_provider or metrics.get_meter_provider()
    tracing = not isinstance(
        tracer_provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider
    )
    metering = type(meter_provider).__name__ not in (
        "_ProxyMeterProvider",
        "NoOpMeterProvider",
    )
    return tracing, metering


def otel_telemetry(
    tracer_provider: Any, meter_provider: Any, *, base_url: str
) -> Telemetry:
    """`OtelTelemetry` when a provider records, else the telemetry that does not."""
    from .base import NO_TELEMETRY

    tracing, metering = _records(tracer_provider, meter_provider)
    if not (tracing or metering):
        return NO_TELEMETRY
    tracer = (
        trace.get_tracer(SCOPE, tracer_provider=tracer_provider)
        if tracing
        else trace.NoOpTracer()
    )
    meter = (
        metrics.get_meter(SCOPE, meter_provider=meter_provider)
        if metering
        else metrics.NoOpMeter(SCOPE)
    )
    return OtelTelemetry(tracer, _instruments(meter), base_url=base_url)


class Instruments:
    """One meter's instruments, made once per meter (a second `create_*` of a
    name is refused by the SDK) and shared by the sessions that use it."""

    def __init__(self, meter: Meter) -> None:
        self.operation_duration = meter.create_histogram(
            "gen_ai.client.operation.duration",
            unit="s",
            description="Predictions, from the call to the outcome",
            explicit_bucket_boundaries_advisory=_OPERATION_BUCKETS,
        )
        self.request_duration = meter.create_histogram(
            "http.client.request.duration",
            unit="s",
            description="HTTP requests to the API",
            explicit_bucket_boundaries_advisory=_HTTP_BUCKETS,
        )
        # Counted in plain dicts and observed when the reader collects: a
        # dict increment costs far less than an SDK measurement.
        self.creates: collections.Counter[str] = collections.Counter()
        self.predictions: collections.Counter[tuple[str, str]] = collections.Counter()
        meter.create_observable_counter(
            "comet_replicate.creates",
            [self._creates_observed],
            unit="{request}",
            description="Create requests sent, by outcome",
        )
        meter.create_observable_counter(
            "comet_replicate.predictions",
            [self._predictions_observed],
            unit="{prediction}",
            description="Predictions ended, by model and outcome",
        )
        # Sessions read by the observable instruments, weakly: one that is
        # gone stops being reported.
        self.sessions: weakref.WeakSet[_Readings] = weakref.WeakSet()
        gauges: list[tuple[str, str, str, Callable[[_Readings], float | None]]] = [
            ("comet_replicate.predictions.in_flight", "{prediction}",
             "Predictions asked for and not ended", lambda r: r.in_flight()),
            ("comet_replicate.concurrency.limit", "{prediction}",
             "The size of the concurrency window", lambda r: r.window()),
            ("comet_replicate.create.rate", "{request}/s",
             "Creates per second the session paces to", lambda r: r.create_rate()),
        ]  # fmt: skip
        for name, unit, description, read in gauges:
            meter.create_observable_gauge(
                name, [self._observer(read)], unit=unit, description=description
            )
        # Read from the session's counters: nothing is added per poll.
        meter.create_observable_counter(
            "comet_replicate.polls",
            [self._observer(lambda r: r.queries())],
            unit="{request}",
            description="Query requests sent (polls, and Session.get)",
        )
        meter.create_observable_counter(
            "comet_replicate.spend",
            [self._observer(lambda r: r.spent())],
            unit="USD",
            description="US dollars billed or possibly billed (as session.stats.spent)",
        )

    def _creates_observed(self, options: CallbackOptions) -> Iterable[Observation]:
        for outcome, count in list(self.creates.items()):
            yield Observation(count, {"comet_replicate.create.outcome": outcome})

    def _predictions_observed(self, options: CallbackOptions) -> Iterable[Observation]:
        for (model, outcome), count in list(self.predictions.items()):
            attributes = {"gen_ai.request.model": model, OUTCOME: outcome}
            yield Observation(count, attributes)

    def _observer(
        self, read: Callable[[_Readings], float | None]
    ) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def observe(options: CallbackOptions) -> Iterable[Observation]:
            for readings in list(self.sessions):
                value = read(readings)
                if value is not None:
                    yield Observation(value, readings.attributes)

        return observe


_BY_METER: weakref.WeakKeyDictionary[Meter, Instruments] = weakref.WeakKeyDictionary()


def _instruments(meter: Meter) -> Instruments:
    instruments = _BY_METER.get(meter)
    if instruments is None:
        instruments = _BY_METER[meter] = Instruments(meter)
    return instruments


class _Readings:
    """What the gauges read of one session."""

    _numbers = itertools.count(1)

    def __init__(
        self,
        in_flight: Callable[[], int],
        window: Callable[[], int],
        create_rate: Callable[[], float | None],
        spent: Callable[[], float],
        queries: Callable[[], int],
    ) -> None:
        self.in_flight = in_flight
        self.queries = queries
        self.window = window
        self.create_rate = create_rate
        self.spent = spent
        # Several sessions in one process are told apart.
        self.attributes = {"comet_replicate.session": next(self._numbers)}


class OtelTelemetry(Telemetry):
    """A session's tracer and instruments."""

    on = True

    def __init__(
        self, tracer: trace.Tracer, instruments: Instruments, *, base_url: str
    ) -> None:
        self.tracer = tracer
        self.instruments = instruments
        parts = urlsplit(base_url)
        # No user info or query: nothing secret goes into `url.full`.
        self.server_address = parts.hostname or ""
        self.server_port = parts.port or (443 if parts.scheme == "https" else 80)
        self.url_root = (
            f"{parts.scheme}://{self.server_address}"
            + (f":{parts.port}" if parts.port else "")
            + parts.path.rstrip("/")
        )
        self._readings: _Readings | None = None
        # Attribute sets made once and shared by every span and point that has
        # them: the SDK copies what it is given, so sharing is safe, and it
        # spares the dict building on every request and every prediction.
        self._request_attributes: dict[tuple[str, int | str], tuple[Attrs, Attrs]] = {}
        self._span_starts: dict[str, tuple[str, Attrs]] = {}
        self._create_attributes: dict[str, Attrs] = {}
        self._poll_attributes: dict[str, Attrs] = {}
        self._operation_attributes: dict[tuple[str, str, str | None], Attrs] = {}

    def prediction(
        self,
        model: str,
        *,
        batch: BatchTrace | None = None,
        index: int | None = None,
        resumed: bool = False,
    ) -> PredictionTrace:
        return PredictionTrace(self, model, batch=batch, index=index, resumed=resumed)

    def batch(self, model: str, batch_id: str) -> BatchTrace:
        return BatchTrace(self, model, batch_id)

    def transport(self, transport: Transport) -> Transport:
        return TracedTransport(transport, self)

    def pacer(self, per_minute: float | None) -> CreatePacer:
        return TracedPacer(per_minute)

    def on_event(self, handler: EventHandler | None) -> EventHandler:
        def listen(event: Event) -> None:
            current = CURRENT.get()
            if current is not None and event.error is not None:
                current.told(event.kind, event.error, event.delay)
            if handler is not None:
                handler(event)

        return listen

    def observe(
        self,
        in_flight: Callable[[], int],
        window: Callable[[], int],
        create_rate: Callable[[], float | None],
        spent: Callable[[], float],
        queries: Callable[[], int],
    ) -> None:
        # Held here: the instruments hold it weakly, for as long as the session.
        self._readings = _Readings(in_flight, window, create_rate, spent, queries)
        self.instruments.sessions.add(self._readings)

    def span_start(self, model: str) -> tuple[str, Attrs]:
        """A prediction span's name and first attributes (shared: copy to add)."""
        start = self._span_starts.get(model)
        if start is None:
            start = self._span_starts[model] = (
                f"{OPERATION} {model}",
                {
                    "gen_ai.operation.name": OPERATION,
                    "gen_ai.provider.name": PROVIDER,
                    "gen_ai.request.model": model,
                    "gen_ai.output.type": "image",
                },
            )
        return start

    def poll_attributes(self, status: str) -> Attrs:
        """A poll event's attributes, made once per status."""
        attributes = self._poll_attributes.get(status)
        if attributes is None:
            attributes = self._poll_attributes[status] = {STATUS: str(status)}
        return attributes

    def create_attributes(self, spec: RequestSpec) -> Attrs:
        """A create span's first attributes, made once per path."""
        attributes = self._create_attributes.get(spec.path)
        if attributes is None:
            attributes = self._create_attributes[spec.path] = {
                "http.request.method": spec.method,
                "server.address": self.server_address,
                "server.port": self.server_port,
                "url.full": self.url_root + spec.path,
            }
        return attributes

    def operation_attributes(self, model: str, outcome: str, kind: str | None) -> Attrs:
        """The attributes of a `gen_ai.client.operation.duration` point."""
        key = (model, outcome, kind)
        attributes = self._operation_attributes.get(key)
        if attributes is None:
            attributes = {
                "gen_ai.operation.name": OPERATION,
                "gen_ai.provider.name": PROVIDER,
                "gen_ai.request.model": model,
                OUTCOME: outcome,
            }
            if kind is not None:
                attributes["error.type"] = kind
            self._operation_attributes[key] = attributes
        return attributes

    def request_attributes(self, method: str, status: int | str) -> tuple[Attrs, Attrs]:
        """A request's metric attributes, and the few its span gets at its end
        (`status`: a code, or an error type)."""
        key = (method, status)
        pair = self._request_attributes.get(key)
        if pair is None:
            ending: Attrs = {}
            if isinstance(status, int):
                ending["http.response.status_code"] = status
                if status >= 400:
                    ending["error.type"] = str(status)
            else:
                ending["error.type"] = status
            pair = self._request_attributes[key] = (
                {
                    "http.request.method": method,
                    "server.address": self.server_address,
                    "server.port": self.server_port,
                    **ending,
                },
                ending,
            )
        return pair


def create_outcome(status: int | None, error: BaseException | None) -> str:
    """What a create request's reply says: `accepted`, `refused` (429: nothing
    created, retried), `rejected` (another 4xx, or never sent) or `ambiguous`
    (a 5xx or a lost reply: it may have created a prediction)."""
    if status is not None:
        if status < 300:
            return "accepted"
        if status == 429:
            return "refused"
        return "rejected" if status < 500 else "ambiguous"
    return "ambiguous" if getattr(error, "request_sent", True) else "rejected"


class TracedTransport:
    """A transport that times each request and spans each create."""

    def __init__(self, inner: Transport, telemetry: OtelTelemetry) -> None:
        self.inner = inner
        self._telemetry = telemetry

    def open(self) -> None:
        self.inner.open()

    async def aclose(self) -> None:
        await self.inner.aclose()

    async def download(self, url: str, destination: Path) -> RawResponse | None:
        return await self.inner.download(url, destination)

    async def send(
        self, spec: RequestSpec, *, read_timeout: float | None = None
    ) -> RawResponse:
        span = None
        if spec.kind == "create":
            owner = CURRENT.get()
            if owner is not None:
                span = owner.create_span(spec)
        started = time.perf_counter()
        try:
            response = await self.inner.send(spec, read_timeout=read_timeout)
        except BaseException as error:
            self._ended(spec, None, error, started, span)
            raise
        self._ended(spec, response.status, None, started, span)
        return response

    def _ended(
        self,
        spec: RequestSpec,
        status: int | None,
        error: BaseException | None,
        started: float,
        span: trace.Span | None,
    ) -> None:
        telemetry = self._telemetry
        attributes, ending = telemetry.request_attributes(
            spec.method, status if status is not None else error_type(error)
        )
        telemetry.instruments.request_duration.record(
            time.perf_counter() - started, attributes
        )
        if spec.kind == "create":
            outcome = create_outcome(status, error)
            telemetry.instruments.creates[outcome] += 1
        if span is None:
            return
        span.set_attributes(ending)
        if "error.type" in ending:
            span.set_status(Status(StatusCode.ERROR))
        span.end()


class TracedPacer(CreatePacer):
    """The create pacer, telling a traced create how long it was held back."""

    async def wait_turn(self) -> None:
        started = time.monotonic()
        await super().wait_turn()
        waited = time.monotonic() - started
        if waited >= _PAUSE_WORTH_TELLING and (owner := CURRENT.get()) is not None:
            owner.paused(waited)
