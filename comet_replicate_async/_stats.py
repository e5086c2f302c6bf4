"""Live counters of a session and the events it reports."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Literal

import attrs

from ._breaker import BreakerState
from ._request_budget import RequestBudget
from ._values import Prediction

__all__ = [
    "Event",
    "EventHandler",
    "EventKind",
    "Events",
    "SessionStats",
    "StatsCounter",
]

logger = logging.getLogger("comet_replicate_async")

EventKind = Literal[
    "created", "status", "finished", "retry", "rate_limited",
    "breaker_opened", "breaker_closed",
]  # fmt: skip


@attrs.frozen
class SessionStats:
    """A snapshot of a session's counters.

    Attributes:
        submitted: predictions asked for through `run`, `submit` and batches.
            At every moment `submitted == succeeded + failed + canceled +
            in_flight`.
        in_flight: of those, not ended yet: waiting for a slot, being created or
            running.
        succeeded: finished with status `succeeded`.
        failed: ended any other way (failed, canceled or aborted upstream, an
            error, a deadline, the session closing).
        canceled: ended locally by a cancellation: the caller's task or scope was
            cancelled, `PredictionFuture.cancel()`, or a batch stopped early.
        requests: HTTP requests sent, retries included.
        creates: create requests sent.
        queries: query requests sent.
        retries: requests repeated after a retryable failure.
        rate_limited: replies with status 429.
        creates_refused: of those, replies to creates (each proves nothing was
            created; the create is retried until its deadline).
        watched: predictions the poller is watching now.
        concurrency_limit: the current size of the concurrency window.
        create_rate: creates per second the session paces to now (learned from
            the server, or `creates_per_minute`); requests per second, polls
            included, once a refused poll showed that the server's rate counts
            them. None while nothing limits them.
        in_flight_cap: requests (creates and queries together) the session
            lets be in flight at once, learned from 429s that name no wait (a
            per-key cap of the gateway); None while nothing limits them.
        requests_in_flight: requests sent and not answered yet, now.
        spent: US dollars billed or possibly billed (ambiguous creates,
            predictions left running), including what earlier runs of a batch's
            journal spent. Without `max_cost`, only models priced through
            `prices=` are counted.
        reserved: US dollars held for creates whose outcome is not known yet.
        breaker: the circuit breaker on creates: "closed" (creates go),
            "open" (the gateway kept failing them: none is sent until a probe)
            or "probing" (one create is testing the gateway).
        breaker_openings: how many times the breaker opened.
    """

    submitted: int = 0
    in_flight: int = 0
    succeeded: int = 0
    failed: int = 0
    canceled: int = 0
    requests: int = 0
    creates: int = 0
    queries: int = 0
    retries: int = 0
    rate_limited: int = 0
    creates_refused: int = 0
    watched: int = 0
    concurrency_limit: int = 0
    create_rate: float | None = None
    in_flight_cap: int | None = None
    requests_in_flight: int = 0
    spent: float = 0.0
    reserved: float = 0.0
    breaker: BreakerState = "closed"
    breaker_openings: int = 0


@attrs.define
class StatsCounter:
    """The mutable counters behind `SessionStats` (plain ints: cheap to keep on)."""

    submitted: int = 0
    in_flight: int = 0
    succeeded: int = 0
    failed: int = 0
    canceled: int = 0
    requests: int = 0
    creates: int = 0
    queries: int = 0
    retries: int = 0
    rate_limited: int = 0
    creates_refused: int = 0

    def started(self) -> None:
        """One prediction was asked for: in flight until it ends."""
        self.submitted += 1
        self.in_flight += 1

    def finished(self, *, succeeded: bool) -> None:
        """One prediction in flight ended, one way or the other."""
        self.in_flight -= 1
        if succeeded:
            self.succeeded += 1
        else:
            self.failed += 1

    def cancelled(self) -> None:
        """One prediction in flight was ended by a cancellation."""
        self.in_flight -= 1
        self.canceled += 1

    def snapshot(
        self,
        *,
        watched: int,
        concurrency_limit: int,
        create_rate: float | None,
        budget: RequestBudget | None = None,
        spent: float = 0.0,
        reserved: float = 0.0,
        breaker: BreakerState = "closed",
        breaker_openings: int = 0,
    ) -> SessionStats:
        """A frozen copy."""
        return SessionStats(
            **attrs.asdict(self),
            watched=watched,
            concurrency_limit=concurrency_limit,
            create_rate=create_rate,
            in_flight_cap=None if budget is None else budget.in_flight_cap,
            requests_in_flight=0 if budget is None else budget.in_flight,
            spent=spent,
            reserved=reserved,
            breaker=breaker,
            breaker_openings=breaker_openings,
        )


@attrs.frozen
class Event:
    """Something that happened in a session, passed to `on_event`.

    `kind` is one of "created", "status" (a new status seen), "finished" (a
    terminal status seen), "retry", "rate_limited", "breaker_opened" and
    "breaker_closed". `prediction` is set for the first three; `error` and
    `delay` for "retry" and "rate_limited", and for "breaker_opened" (the
    failure that stopped creates, and the seconds to the first probe).
    "breaker_closed" says a probe was accepted: creates go again.
    """

    kind: EventKind
    prediction: Prediction | None = None
    error: BaseException | None = None
    delay: float | None = None


EventHandler = Callable[[Event], None]


class Events:
    """Hands a session's events to its `on_event`, if it has one."""

    def __init__(
        self,
        handler: EventHandler | None,
        *,
        finished: Callable[[Prediction], None] | None = None,
    ) -> None:
        self._handler = handler
        # Told first of each prediction the poller sees finish.
        self._finished = finished

    def emit(self, event: Event) -> None:
        if self._handler is None:
            return
        try:
            self._handler(event)
        except Exception:
            logger.exception("on_event handler raised; ignored")

    def on_poll_update(self, previous: Prediction, current: Prediction) -> None:
        """The poller saw a prediction change: report a new status."""
        if current.done and self._finished is not None:
            self._finished(current)
        if current.status != previous.status and self._handler is not None:
            kind: EventKind = "finished" if current.done else "status"
            self.emit(Event(kind, prediction=current))
