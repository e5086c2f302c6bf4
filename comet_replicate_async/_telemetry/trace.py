"""The span of one prediction (and of one batch), from the call to the outcome.

A `PredictionTrace` starts at the call (`run`, `submit`, or a batch input
pulled), as a child of the caller's current span (or of its batch's span, which
it also links to). It is the current prediction (`CURRENT`) of the task that
creates it, so the create's HTTP span and the create's pauses, retries and 429s
land on it; the poller finds it on the registry entry and tells it each poll.
`end` sets the outcome and records the prediction's metrics, once.

It is written against `Recorder`, what it needs of the session's recording
side (`OtelTelemetry` in `_telemetry/otel.py`), so this module needs nothing of
that one.
"""

from __future__ import annotations

import asyncio
import contextvars
import time
from types import TracebackType
from typing import Any, Protocol

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Link, SpanKind, Status, StatusCode

from comet_replicate_async._exceptions import (
    AmbiguousSubmitError,
    BatchStoppedError,
    PredictionAbandoned,
    PredictionCanceled,
    PredictionFailed,
    PredictionTimeout,
    RateLimitError,
)
from comet_replicate_async._sansio import RequestSpec
from comet_replicate_async._values import BatchItem, Prediction

from .base import CURRENT, PredictionHooks

__all__ = ["BatchTrace", "PredictionTrace", "Recorder", "error_type", "outcome_of"]

# Not a GenAI operation of its own yet: "generate_content" is the conventions'
# value for multimodal generation, and gen_ai.output.type says "image".
OPERATION = "generate_content"
PROVIDER = "cometapi"

STATUS = "comet_replicate.prediction.status"
OUTCOME = "comet_replicate.outcome"
_ERROR = Status(StatusCode.ERROR)
# An attribute set, as the SDK takes it.
Attrs = dict[str, Any]


class Recorder(Protocol):
    """What a trace needs of the session's recording side: its tracer, the
    attribute sets it shares, and the metrics of a prediction's end."""

    @property
    def tracer(self) -> trace.Tracer:
        """The session's tracer."""

    def span_start(self, model: str) -> tuple[str, Attrs]:
        """A prediction span's name and first attributes (shared: copy to add)."""

    def create_attributes(self, spec: RequestSpec, status: int | str) -> Attrs:
        """A create span's attributes, by path and status (or error type)."""

    def poll_attributes(self, status: str) -> Attrs:
        """A poll event's attributes."""

    def prediction_ended(
        self,
        model: str,
        outcome: str,
        kind: str | None,
        seconds: float,
        context: otel_context.Context,
    ) -> None:
        """A prediction's duration point (in `context`: its span's) and count."""


# Local endings by error class; the first match wins (subclasses first).
_OUTCOMES: tuple[tuple[type[BaseException], str], ...] = (
    (PredictionFailed, "failed"),
    (PredictionCanceled, "canceled"),
    (PredictionTimeout, "timeout"),
    (PredictionAbandoned, "abandoned"),
    (AmbiguousSubmitError, "ambiguous"),
    (BatchStoppedError, "stopped"),
    (asyncio.CancelledError, "cancelled"),
)


def outcome_of(error: BaseException | None) -> str:
    """How a prediction ended, for the `comet_replicate.outcome` attribute."""
    if error is None:
        return "succeeded"
    for kind, outcome in _OUTCOMES:
        if isinstance(error, kind):
            return outcome
    return "error"


def error_type(error: BaseException | None) -> str:
    """The `error.type` of an exception: its class name."""
    return type(error).__name__ if error is not None else "_OTHER"


class BatchTrace:
    """The span of one `as_completed` or `gather` (or command-line batch), and
    the spans of its items, each a child of it and linked to it."""

    def __init__(self, telemetry: Recorder, model: str, batch_id: str) -> None:
        self.telemetry = telemetry
        self.model = model
        # A batch of several models (typed inputs, no model given) names none.
        attributes = {
            "gen_ai.provider.name": PROVIDER,
            "comet_replicate.batch.id": batch_id,
        }
        if model:
            attributes["gen_ai.request.model"] = model
        self.span = telemetry.tracer.start_span(
            f"batch {model}" if model else "batch", attributes=attributes
        )
        self.context = trace.set_span_in_context(self.span)
        self.links = (Link(self.span.get_span_context()),)
        self.counts = {"inputs": 0, "succeeded": 0, "failed": 0, "resumed": 0}
        # The models its items ran on: a batch of one model is named after it.
        self.models: set[str] = {model} if model else set()
        # Items started and not ended yet, by index.
        self._items: dict[int, PredictionTrace] = {}

    def item(
        self,
        index: int,
        model: str,
        *,
        resumed: bool = False,
        known: Prediction | None = None,
    ) -> PredictionTrace:
        """Start the span of item `index` (`known`: taken up from a journal)."""
        traced = PredictionTrace(
            self.telemetry, model, batch=self, index=index, resumed=resumed
        )
        if known is not None:
            traced.watching(known)
        self.models.add(model)
        self._items[index] = traced
        return traced

    def item_ended(self, item: BatchItem) -> None:
        """An item is out: end its span (one that ended without a request, such
        as a finished item read from a journal, gets a span of its own now)."""
        traced = self._items.pop(item.index, None)
        if traced is None:
            self.models.add(item.model or self.model)
            traced = PredictionTrace(
                self.telemetry,
                item.model or self.model,
                batch=self,
                index=item.index,
                resumed=item.resumed,
            )
        traced.end_item(item)
        counts = self.counts
        counts["inputs"] += 1
        counts["succeeded" if item.error is None else "failed"] += 1
        if item.resumed:
            counts["resumed"] += 1

    def end(self, error: BaseException | None) -> None:
        """The batch is over: its counts go on its span."""
        span = self.span
        if not self.model and len(self.models) == 1:
            [model] = self.models
            span.update_name(f"batch {model}")
            span.set_attribute("gen_ai.request.model", model)
        for name, count in self.counts.items():
            span.set_attribute(f"comet_replicate.batch.{name}", count)
        if error is not None:
            span.set_attribute("error.type", error_type(error))
            span.set_status(Status(StatusCode.ERROR))
        span.end()


class PredictionTrace:
    """One prediction's span and its measurements.

    Everything is kept along the way and the spans are made when the
    prediction ends, in one run of calls: the prediction's span with its start
    time, every attribute and its events, then its creates' spans under it.
    The SDK's calls cost several times less in a run than one at a time between
    other work, and nothing needs a prediction's span before it ends (none is
    ever current: the create runs in a session task, the polls in the poller).
    """

    __slots__ = (
        "_creates",
        "_events",
        "_links",
        "_parent",
        "_start",
        "_started_at",
        "_token",
        "attempts",
        "cost",
        "ended",
        "model",
        "polls",
        "prediction",
        "queued",
        "started",
        "telemetry",
    )

    def __init__(
        self,
        telemetry: Recorder,
        model: str,
        *,
        batch: BatchTrace | None = None,
        index: int | None = None,
        resumed: bool = False,
    ) -> None:
        self.telemetry = telemetry
        self.model = model
        self.started = time.monotonic()
        self._started_at = time.time_ns()
        self._start = telemetry.span_start(model)
        if index is not None or resumed:
            name, attributes = self._start
            attributes = dict(attributes)
            if index is not None:
                attributes["comet_replicate.batch.index"] = index
            if resumed:
                attributes["comet_replicate.resumed"] = True
            self._start = name, attributes
        # The caller's current span is the parent, unless it is a batch's item.
        self._parent: otel_context.Context | None = (
            otel_context.get_current() if batch is None else batch.context
        )
        self._links = None if batch is None else batch.links
        self.prediction: Prediction | None = None
        self.attempts = 0
        self.polls = 0
        self.cost: float | None = None
        self.queued: float | None = None
        self.ended = False
        # The span's events (name, attributes, time), and its creates' (the
        # request, its start and end, its status or error type).
        self._events: list[tuple[str, Attrs, int]] = []
        self._creates: list[tuple[RequestSpec, int, int, int | str]] = []
        self._token: contextvars.Token[PredictionHooks | None] | None = None

    # The current prediction of a task, while it creates.

    def __enter__(self) -> PredictionTrace:
        self._token = CURRENT.set(self)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._token is not None:
            CURRENT.reset(self._token)
            self._token = None

    # Along the way.

    def slot_taken(self) -> None:
        """The call got its slot (and, in a batch, a creator): record the wait."""
        self.queued = time.monotonic() - self.started

    def create_sent(self, spec: RequestSpec, started: int, status: int | str) -> None:
        """One create attempt ended: its HTTP client span is made with the
        prediction's."""
        self.attempts += 1
        self._creates.append((spec, started, time.time_ns(), status))

    def watching(self, prediction: Prediction) -> None:
        """Created (or taken up again): the id is known."""
        self.prediction = prediction

    def polled(self, prediction: Prediction) -> None:
        """One poll's reply: an event if it tells a new status.

        Every poll is counted (`comet_replicate.polls`), but one that finds the
        status unchanged tells nothing more than its time: the SDK keeps 128
        events a span by default, which a long prediction polled every few
        seconds would fill with them.
        """
        self.polls += 1
        previous, self.prediction = self.prediction, prediction
        if previous is None or prediction.status != previous.status:
            attributes = self.telemetry.poll_attributes(prediction.status)
            self._events.append(("poll", attributes, time.time_ns()))

    def poll_failed(self, error: BaseException) -> None:
        """One poll that failed (it is retried, unless this was the last)."""
        self.polls += 1
        name = "rate_limited" if isinstance(error, RateLimitError) else "poll"
        self._events.append((name, {"error.type": error_type(error)}, time.time_ns()))

    def told(self, kind: str, error: BaseException, delay: float | None) -> None:
        """A retry or a 429 during the create (from the session's events)."""
        attributes: dict[str, Any] = {"error.type": error_type(error)}
        if delay is not None:
            attributes["comet_replicate.delay"] = delay
        self._events.append((kind, attributes, time.time_ns()))

    def paused(self, waited: float) -> None:
        """The create waited this long for its turn (a 429 pause or the pace)."""
        self._events.append(
            ("create_paused", {"comet_replicate.delay": waited}, time.time_ns())
        )

    # The end.

    def end(
        self,
        prediction: Prediction | None,
        error: BaseException | None,
    ) -> None:
        """The prediction ended: its spans are made, and its metrics recorded."""
        if self.ended:
            return
        self.ended = True
        if prediction is None:
            prediction = getattr(error, "prediction", None) or self.prediction
        outcome = outcome_of(error)
        name, attributes = self._start
        attributes = {
            **attributes,
            "comet_replicate.create.attempts": self.attempts,
            "comet_replicate.polls": self.polls,
            OUTCOME: outcome,
        }
        if self.queued is not None:
            attributes["comet_replicate.queue.duration"] = self.queued
        if isinstance(prediction, Prediction):
            attributes["comet_replicate.prediction.id"] = prediction.id
            attributes["gen_ai.response.id"] = prediction.id
            attributes[STATUS] = prediction.status.value
        if self.cost is not None:
            attributes["comet_replicate.cost.usd"] = self.cost
        kind = None
        if error is not None:
            kind = attributes["error.type"] = error_type(error)
        telemetry = self.telemetry
        tracer = telemetry.tracer
        span = tracer.start_span(
            name,
            context=self._parent,
            kind=SpanKind.CLIENT,
            attributes=attributes,
            links=self._links,
            start_time=self._started_at,
        )
        self._parent = None  # the caller's context is not held past the end
        for event, event_attributes, at in self._events:
            span.add_event(event, event_attributes, at)
        if kind is not None:
            span.set_status(Status(StatusCode.ERROR, str(error)[:200] or kind))
        under = trace.set_span_in_context(span)
        if self._creates:
            for spec, started, ended, status in self._creates:
                create_attributes = telemetry.create_attributes(spec, status)
                create = tracer.start_span(
                    spec.method,
                    context=under,
                    kind=SpanKind.CLIENT,
                    attributes=create_attributes,
                    start_time=started,
                )
                if "error.type" in create_attributes:
                    create.set_status(_ERROR)
                create.end(ended)
        span.end()
        # The duration point's exemplar (if the SDK keeps one) names this span.
        telemetry.prediction_ended(
            self.model, outcome, kind, time.monotonic() - self.started, under
        )

    def ended_with(self, result: Prediction) -> Prediction:
        """End as succeeded with `result`, and return it."""
        self.end(result, None)
        return result

    def end_item(self, item: BatchItem) -> None:
        """End with a batch item's outcome."""
        self.end(item.prediction, item.error)
