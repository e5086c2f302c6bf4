"""The recording side of telemetry, imported only when `opentelemetry` is.

`OtelTelemetry` holds a session's tracer and instruments (`instruments.py`),
and the attribute sets its spans, events and points share. It observes the
session from the outside where it can: a transport that times every request
(and has each create's HTTP span made), a create pacer that reports the waits
it imposes, a listener before `on_event` for retries and 429s, and gauges read
from the session's own counters. Names are OpenTelemetry's where one exists
(the GenAI and HTTP client conventions); ours start with `comet_replicate.`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from opentelemetry import context as otel_context
from opentelemetry import metrics, trace

from comet_replicate_async._limits import CreatePacer
from comet_replicate_async._sansio import RawResponse, RequestSpec
from comet_replicate_async._stats import Event, EventHandler
from comet_replicate_async._transports.base import Transport

from .base import CURRENT, NO_TELEMETRY, Telemetry
from .instruments import Attrs, Instruments, Readings, instruments_for
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
    "OtelTelemetry",
    "TracedPacer",
    "TracedTransport",
    "create_outcome",
    "otel_telemetry",
]

SCOPE = "comet_replicate_async"
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
    return OtelTelemetry(tracer, instruments_for(meter), base_url=base_url)


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
        self._readings: Readings | None = None
        # Attribute sets made once and shared by every span and point that has
        # them: the SDK copies what it is given, so sharing is safe, and it
        # spares the dict building on every request and every prediction.
        self._request_attributes: dict[tuple[str, int | str], Attrs] = {}
        self._span_starts: dict[str, tuple[str, Attrs]] = {}
        self._create_attributes: dict[tuple[str, int | str], Attrs] = {}
        self._poll_attributes: dict[str, Attrs] = {}
        self._operation_attributes: dict[tuple[str, str, str | None], Attrs] = {}

    def prediction(self, model: str) -> PredictionTrace:
        return PredictionTrace(self, model)

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
        self._readings = Readings(in_flight, window, create_rate, spent, queries)
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

    def create_attributes(self, spec: RequestSpec, status: int | str) -> Attrs:
        """A create span's attributes, made once per path and status (`status`:
        a code, or an error type)."""
        key = (spec.path, status)
        attributes = self._create_attributes.get(key)
        if attributes is None:
            attributes = self._create_attributes[key] = {
                "http.request.method": spec.method,
                "server.address": self.server_address,
                "server.port": self.server_port,
                "url.full": self.url_root + spec.path,
                **_ending(status),
            }
        return attributes

    def prediction_ended(
        self,
        model: str,
        outcome: str,
        kind: str | None,
        seconds: float,
        context: otel_context.Context,
    ) -> None:
        """A prediction's duration point (in `context`: its span's) and count."""
        instruments = self.instruments
        instruments.point(
            instruments.operation_duration,
            seconds,
            self._operation_attributes_of(model, outcome, kind),
            context,
        )
        instruments.predictions[model, outcome] += 1

    def _operation_attributes_of(
        self, model: str, outcome: str, kind: str | None
    ) -> Attrs:
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

    def request_attributes(self, method: str, status: int | str) -> Attrs:
        """A request's metric attributes (`status`: a code, or an error type)."""
        key = (method, status)
        attributes = self._request_attributes.get(key)
        if attributes is None:
            attributes = self._request_attributes[key] = {
                "http.request.method": method,
                "server.address": self.server_address,
                "server.port": self.server_port,
                **_ending(status),
            }
        return attributes


def _ending(status: int | str) -> Attrs:
    """What a request's reply adds to its attributes: its status code, and an
    `error.type` (the code of a 4xx or 5xx, or the error's type)."""
    if isinstance(status, str):
        return {"error.type": status}
    if status >= 400:
        return {"http.response.status_code": status, "error.type": str(status)}
    return {"http.response.status_code": status}


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
        # A create's span is made once it has ended, with its start time: its
        # attributes then go in at once, and nothing needs it while it runs.
        started_at = time.time_ns() if spec.kind == "create" else 0
        started = time.perf_counter()
        try:
            response = await self.inner.send(spec, read_timeout=read_timeout)
        except BaseException as error:
            self._ended(spec, None, error, started, started_at)
            raise
        self._ended(spec, response.status, None, started, started_at)
        return response

    def _ended(
        self,
        spec: RequestSpec,
        status: int | None,
        error: BaseException | None,
        started: float,
        started_at: int,
    ) -> None:
        telemetry = self._telemetry
        code = status if status is not None else error_type(error)
        instruments = telemetry.instruments
        instruments.point(
            instruments.request_duration,
            time.perf_counter() - started,
            telemetry.request_attributes(spec.method, code),
        )
        if spec.kind == "create":
            instruments.creates[create_outcome(status, error)] += 1
            owner = CURRENT.get()
            if owner is not None:
                owner.create_sent(spec, started_at, code)


class TracedPacer(CreatePacer):
    """The create pacer, telling a traced create how long it was held back."""

    async def wait_turn(self) -> None:
        started = time.monotonic()
        await super().wait_turn()
        waited = time.monotonic() - started
        if waited >= _PAUSE_WORTH_TELLING and (owner := CURRENT.get()) is not None:
            owner.paused(waited)
