"""A meter's instruments, and the points recorded on them a few at a time.

The instruments are made once per meter (a second `create_*` of a name is
refused by the SDK) and shared by the sessions that use it. Counters are plain
dicts, and gauges read the session's own counts, both observed when a reader
collects: nothing is added per request. The two histograms take one point per
request and one per prediction; those are queued and handed to the SDK in runs
(`Instruments.point`), because the SDK's `record` costs several times more
when it is called between other work than in a loop, and flushed before each
collection, so a reader never misses one.
"""

from __future__ import annotations

import collections
import itertools
import weakref
from collections.abc import Callable, Iterable
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.metrics import CallbackOptions, Histogram, Meter, Observation

from .trace import OUTCOME

__all__ = ["Attrs", "Instruments", "Readings", "instruments_for"]

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
# Points queued before they are handed to the SDK in one run.
_RUN = 64
# The context of a point recorded with none: no span, so no exemplar takes the
# trace of whichever task flushes it.
_NO_SPAN = trace.set_span_in_context(trace.INVALID_SPAN)


class Instruments:
    """One meter's instruments, shared by the sessions that use it."""

    def __init__(self, meter: Meter) -> None:
        # (histogram, value, attributes, context) not yet recorded. A deque:
        # a reader may collect (and flush) from its own thread while the loop
        # appends.
        self._queued: collections.deque[
            tuple[Histogram, float, Attrs, otel_context.Context]
        ] = collections.deque()
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
        self.sessions: weakref.WeakSet[Readings] = weakref.WeakSet()
        gauges: list[tuple[str, str, str, Callable[[Readings], float | None]]] = [
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

    def point(
        self,
        histogram: Histogram,
        value: float,
        attributes: Attrs,
        context: otel_context.Context = _NO_SPAN,
    ) -> None:
        """Record a point on a histogram (within `_RUN` points, or the next
        collection, whichever is first); `context` holds the span an exemplar
        of it names."""
        queued = self._queued
        queued.append((histogram, value, attributes, context))
        if len(queued) >= _RUN:
            self.flush()

    def flush(self) -> None:
        """Hand the queued points to the SDK."""
        queued = self._queued
        while queued:
            try:
                histogram, value, attributes, context = queued.popleft()
            except IndexError:  # another thread took the last one
                return
            histogram.record(value, attributes, context)

    # Each observer flushes first: the SDK runs them all before it reads the
    # histograms, so a collection sees every point recorded before it.

    def _creates_observed(self, options: CallbackOptions) -> Iterable[Observation]:
        self.flush()
        for outcome, count in list(self.creates.items()):
            yield Observation(count, {"comet_replicate.create.outcome": outcome})

    def _predictions_observed(self, options: CallbackOptions) -> Iterable[Observation]:
        self.flush()
        for (model, outcome), count in list(self.predictions.items()):
            attributes = {"gen_ai.request.model": model, OUTCOME: outcome}
            yield Observation(count, attributes)

    def _observer(
        self, read: Callable[[Readings], float | None]
    ) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def observe(options: CallbackOptions) -> Iterable[Observation]:
            self.flush()
            for readings in list(self.sessions):
                value = read(readings)
                if value is not None:
                    yield Observation(value, readings.attributes)

        return observe


_BY_METER: weakref.WeakKeyDictionary[Meter, Instruments] = weakref.WeakKeyDictionary()


def instruments_for(meter: Meter) -> Instruments:
    """The meter's instruments, made on first use."""
    instruments = _BY_METER.get(meter)
    if instruments is None:
        instruments = _BY_METER[meter] = Instruments(meter)
    return instruments


class Readings:
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
