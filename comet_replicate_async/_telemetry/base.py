"""Telemetry for a session, or nothing: the no-op path, and what it costs when off.

Telemetry is the `otel` extra (`opentelemetry-api` only; the SDK and exporters
are the user's). Without it, or without a configured provider, a session holds
`NO_TELEMETRY`: its hooks are one attribute test each, and nothing is allocated
per poll or per prediction. `_telemetry/switch.py` decides which a session
gets; `_telemetry/otel.py` is the recording side.

The rest of the package sees a prediction's trace and a batch's only through
the protocols here (`PredictionHooks`, `BatchHooks`), so it never imports the
modules that import OpenTelemetry.

The prediction being created is handed from its caller to the session task
that sends its create through `CURRENT`: asyncio copies a task's context when
it starts one, which is how that task (and its HTTP span) knows whose create it
is. The poller, which serves everyone, finds it on the registry entry instead.
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol

from comet_replicate_async._limits import CreatePacer
from comet_replicate_async._stats import EventHandler
from comet_replicate_async._transports.base import Transport

if TYPE_CHECKING:
    from opentelemetry.metrics import MeterProvider
    from opentelemetry.trace import TracerProvider

    from comet_replicate_async._sansio import RequestSpec
    from comet_replicate_async._values import BatchItem, Prediction
else:  # the `otel` extra may be missing: the annotations still resolve
    MeterProvider = TracerProvider = Any

__all__ = [
    "CURRENT",
    "NO_TELEMETRY",
    "BatchHooks",
    "MeterProvider",
    "PredictionHooks",
    "Telemetry",
    "TracerProvider",
    "log_extra",
    "note_cost",
]


class PredictionHooks(Protocol):
    """What a prediction's trace is told along the way (`PredictionTrace`)."""

    #: Its price, once the session's books know it.
    cost: float | None

    def __enter__(self) -> PredictionHooks:
        """Become the current prediction of this task, while it creates."""

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    def slot_taken(self) -> None:
        """The call got its slot (and, in a batch, a creator)."""

    def create_sent(self, spec: RequestSpec, started: int, status: int | str) -> None:
        """One create attempt ended (`started`: its start, in ns since the
        epoch; `status`: its HTTP status code, or the error type)."""

    def paused(self, waited: float) -> None:
        """The create waited this long for its turn."""

    def told(self, kind: str, error: BaseException, delay: float | None) -> None:
        """A retry or a 429 during the create."""

    def watching(self, prediction: Prediction) -> None:
        """Created (or taken up again): the id is known."""

    def polled(self, prediction: Prediction) -> None:
        """One poll's reply."""

    def poll_failed(self, error: BaseException) -> None:
        """One poll that failed."""

    def end(self, prediction: Prediction | None, error: BaseException | None) -> None:
        """The prediction ended (later calls do nothing)."""

    def ended_with(self, result: Prediction) -> Prediction:
        """End as succeeded with `result`, and return it."""


class BatchHooks(Protocol):
    """What a batch's trace is told (`BatchTrace`)."""

    def item(
        self,
        index: int,
        model: str,
        *,
        resumed: bool = False,
        known: Prediction | None = None,
    ) -> PredictionHooks:
        """The trace of item `index`, from now on."""

    def item_ended(self, item: BatchItem) -> None:
        """An item is out."""

    def end(self, error: BaseException | None) -> None:
        """The batch is over."""


#: The prediction whose create the current task is making, if it is traced.
CURRENT: ContextVar[PredictionHooks | None] = ContextVar(
    "comet_replicate_async.prediction", default=None
)


class Telemetry:
    """A session's telemetry; this base records nothing (`NO_TELEMETRY`).

    `on` is the one test the hot paths make before any other call.
    """

    on = False

    def prediction(self, model: str) -> PredictionHooks:
        """A span (and the metrics) for one prediction, from its call on."""
        raise NotImplementedError  # hooks test `on` first

    def batch(self, model: str, batch_id: str) -> BatchHooks | None:
        """A span for one batch, from now on; None when nothing records."""
        return None

    def transport(self, transport: Transport) -> Transport:
        """The transport the session sends through (observed when recording)."""
        return transport

    def pacer(self, per_minute: float | None) -> CreatePacer:
        """The session's create pacer (one that reports waits when recording)."""
        return CreatePacer(per_minute)

    def on_event(self, handler: EventHandler | None) -> EventHandler | None:
        """The session's `on_event`, with the telemetry's own listener before it."""
        return handler

    def observe(
        self,
        in_flight: Callable[[], int],
        window: Callable[[], int],
        create_rate: Callable[[], float | None],
        spent: Callable[[], float],
        queries: Callable[[], int],
    ) -> None:
        """Report the session's gauges, spend and polls from these readings."""


NO_TELEMETRY = Telemetry()


def note_cost(cost: float | None) -> None:
    """The current prediction's price is known (a session that keeps books)."""
    if cost is not None and (current := CURRENT.get()) is not None:
        current.cost = cost


def log_extra(
    prediction_id: str | None = None,
    model: str | None = None,
    batch: str | None = None,
) -> dict[str, str]:
    """The `extra` of a log record about a prediction: what a JSON formatter or
    OpenTelemetry's logging handler turns into the record's attributes."""
    extra = {}
    if prediction_id is not None:
        extra["prediction_id"] = prediction_id
    if model is not None:
        extra["model"] = model
    if batch is not None:
        extra["batch"] = batch
    return extra
