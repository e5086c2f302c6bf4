"""OpenTelemetry for a session, or nothing: the switch, and what it costs when off.

Telemetry is the `otel` extra (`opentelemetry-api` only; the SDK and exporters
are the user's). Without it, or without a configured provider, a session holds
`NO_TELEMETRY`: its hooks are one attribute test each, and nothing is allocated
per poll or per prediction. With it, `_telemetry/otel.py` builds the recording
side: one span per prediction (`_telemetry/trace.py`), the HTTP and GenAI
metrics, and a transport and a create pacer that observe what they do.

The prediction being created is handed from its caller to the session task
that sends its create through `CURRENT`: asyncio copies a task's context when
it starts one, which is how that task (and its HTTP span) knows whose create it
is. The poller, which serves everyone, finds it on the registry entry instead.
"""

from __future__ import annotations

import importlib.util
import logging
import sys
from collections.abc import Callable
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from comet_replicate_async._limits import CreatePacer
from comet_replicate_async._stats import EventHandler
from comet_replicate_async._transports.base import Transport

if TYPE_CHECKING:
    from opentelemetry.metrics import MeterProvider
    from opentelemetry.trace import TracerProvider

    from .trace import BatchTrace, PredictionTrace
else:  # the `otel` extra may be missing: the annotations still resolve
    MeterProvider = TracerProvider = Any

__all__ = [
    "CURRENT",
    "NO_TELEMETRY",
    "MeterProvider",
    "Telemetry",
    "TracerProvider",
    "build_telemetry",
    "log_extra",
    "note_cost",
]

#: The prediction whose create the current task is making, if it is traced.
CURRENT: ContextVar[PredictionTrace | None] = ContextVar(
    "comet_replicate_async.prediction", default=None
)

# Checked once: the extra is optional, and an import that fails is slow.
HAVE_OTEL = importlib.util.find_spec("opentelemetry") is not None


class Telemetry:
    """A session's telemetry; this base records nothing (`NO_TELEMETRY`).

    `on` is the one test the hot paths make before any other call.
    """

    on = False

    def prediction(
        self,
        model: str,
        *,
        batch: BatchTrace | None = None,
        index: int | None = None,
        resumed: bool = False,
    ) -> PredictionTrace:
        """A span (and the metrics) for one prediction, from its call on."""
        raise NotImplementedError  # hooks test `on` first

    def batch(self, model: str, batch_id: str) -> BatchTrace | None:
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


def build_telemetry(
    tracer_provider: TracerProvider | None,
    meter_provider: MeterProvider | None,
    base_url: str,
) -> Telemetry:
    """The session's telemetry: `NO_TELEMETRY` unless a provider records.

    None means the global providers, which record nothing until the user
    configures the SDK (before the session is made).
    """
    if not HAVE_OTEL:
        if tracer_provider is not None or meter_provider is not None:
            logging.getLogger("comet_replicate_async").warning(
                "tracer_provider or meter_provider given, but opentelemetry-api "
                "is not installed (the `otel` extra): nothing is recorded"
            )
        return NO_TELEMETRY
    given = tracer_provider is not None or meter_provider is not None
    if not given and "opentelemetry" not in sys.modules:
        return NO_TELEMETRY  # nothing imported it, so nothing configured it
    from .otel import otel_telemetry

    return otel_telemetry(tracer_provider, meter_provider, base_url=base_url)


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
