"""The call layer: every request a session sends, and the one retry loop around it.

Creates, queries, downloads and the poller's queries all go through `Calls`. It
counts each request, holds the session-wide 429 throttle (one refusal slows every
caller, not only the one refused), keeps every request inside the session's
request budget (a cap on requests in flight, creates and queries together) and
feeds the create pacer and the budget what the server's replies teach.
`Calls.retrying` is the single retry loop; the decisions it follows are
`RetryPolicy`'s, pure code in `_retry.py`.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio

from ._clock import SYSTEM_CLOCK, Clock, Timer
from ._exceptions import (
    AmbiguousSubmitError,
    BatchStoppedError,
    CometReplicateError,
    RateLimitError,
)
from ._limits import ConcurrencyWindow, CreatePacer, Throttle
from ._polling.schedule import PollPolicy
from ._request_budget import RequestBudget
from ._retry import CallKind, RetryPolicy, create_may_have_happened, quota_from_headers
from ._sansio import RequestSpec, build_query_request, decipher_response
from ._stats import Event, StatsCounter
from ._telemetry.base import log_extra
from ._transports.base import Transport
from ._values import Prediction

__all__ = ["Calls", "SendCreate"]

logger = logging.getLogger("comet_replicate_async")

T = TypeVar("T")

# Sends one create attempt and returns its prediction (the session hands it to a
# task of its own, so that no cancellation loses the id).
SendCreate = Callable[[], Awaitable[Prediction]]

# Creates in flight at which the slow start ends: no burst is noticed above it;
# and the seconds after which it ends anyway.
_SLOW_START_END = 64
_SLOW_START_SECONDS = 1.0


class Calls:
    """Sends a session's requests, retries them, and slows the session on a 429."""

    def __init__(
        self,
        transport: Transport,
        *,
        retry: RetryPolicy,
        poll: PollPolicy,
        window: ConcurrencyWindow,
        pacer: CreatePacer,
        counters: StatsCounter,
        emit: Callable[[Event], None],
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.transport = transport
        self.retry = retry
        self._poll = poll
        self._window = window
        self.pacer = pacer
        self._counters = counters
        self._emit = emit
        self.budget = RequestBudget(clock)
        self._starting: ConcurrencyWindow | None = ConcurrencyWindow(1)
        self._slow_start_timer: Timer | None = None
        # The polls' 429 pause (creates wait theirs in the pacer): see _send_once.
        self._query_throttle = Throttle(clock)
        self._clock = clock
        self._rng = random.Random()
        # Unknown statuses already logged: the poller sees one on every query.
        self._unknown_statuses: set[str] = set()

    async def retrying(
        self,
        kind: CallKind,
        attempt: Callable[[], Awaitable[T]],
        *,
        deadline: float = math.inf,
    ) -> T:
        """Run `attempt` until it succeeds or `RetryPolicy` gives up; raise its error.

        A retry that could not finish before `deadline` is not tried.
        """
        attempts = 0
        while True:
            attempts += 1
            try:
                return await attempt()
            except CometReplicateError as error:
                delay = self.retry_delay(kind, error, attempts)
                if delay is not None and self._clock.now() + delay >= deadline:
                    delay = None  # retrying could not finish in time
                if delay is None:
                    raise
            await self._clock.sleep(delay)

    async def create(
        self,
        model: str,
        input: dict[str, Any],
        send_create: SendCreate,
        *,
        deadline: float = math.inf,
        stopped: Callable[[], CometReplicateError | None] | None = None,
    ) -> Prediction:
        """Create, retrying what provably created nothing until `deadline`.

        Each attempt waits its turn in the pacer. `stopped` tells whether the batch
        has stopped creating (and why): checked before each attempt that would be
        the first to reach the server. Giving up once a create may have happened
        raises `AmbiguousSubmitError`.
        """
        may_exist = False

        async def attempt() -> Prediction:
            # Slow start: a limit with no burst to spare refuses all but one of
            # a first wave of creates, so they go out 1, 2, 4, ... per round trip
            # until the first 429, and then wait their turn in the pacer. Slow
            # replies (`Prefer: wait`) would make it crawl: it ends after a while.
            if (starting := self._starting) is not None:
                if self._slow_start_timer is None:
                    self._slow_start_timer = self._clock.call_at(
                        self._clock.now() + _SLOW_START_SECONDS, self._end_slow_start
                    )
                await starting.acquire()
                try:
                    return await paced()
                finally:
                    starting.release()
            return await paced()

        async def paced() -> Prediction:
            nonlocal may_exist
            await self.pacer.wait_turn()
            if not may_exist and stopped is not None and (reason := stopped()):
                raise BatchStoppedError(reason)
            # A caller cancelled by now (a cancelled future, a scope) sends nothing.
            await anyio.lowlevel.checkpoint_if_cancelled()
            try:
                return await send_create()
            except CometReplicateError as error:
                may_exist = may_exist or create_may_have_happened(error)
                raise

        try:
            return await self.retrying("create", attempt, deadline=deadline)
        except CometReplicateError as error:
            if may_exist:
                raise AmbiguousSubmitError(model, input, error) from error
            raise

    async def get(self, prediction_id: str) -> Prediction:
        """One prediction's current state, retried like every query."""
        spec = build_query_request(prediction_id)
        return await self.retrying(
            "query", lambda: self.send(spec, asked_id=prediction_id)
        )

    async def query_once(self, known: Prediction) -> Prediction:
        """One query of a prediction known so far (the poller's retries are its own)."""
        # Straight to the one send: a query takes no create slot, and the poller
        # sends one per prediction every few seconds.
        return await self._send_once(build_query_request(known.id), None, known, None)

    def retry_delay(
        self, kind: CallKind, error: CometReplicateError, attempt: int
    ) -> float | None:
        """The policy's wait before the next attempt, counted and told; None: give up."""
        delay = self.retry.delay(kind, error, attempt, self._rng)
        if delay is not None:
            self._counters.retries += 1
            logger.debug(
                "%s attempt %d failed (%s); retrying in %.2f s",
                kind,
                attempt,
                type(error).__name__,
                delay,
            )
            self._emit(Event("retry", error=error, delay=delay))
        return delay

    async def send(
        self,
        spec: RequestSpec,
        *,
        read_timeout: float | None = None,
        previous: Prediction | None = None,
        asked_id: str | None = None,
    ) -> Prediction:
        """Send one request and read its reply, once."""
        return await self._send_once(spec, read_timeout, previous, asked_id)

    async def _send_once(
        self,
        spec: RequestSpec,
        read_timeout: float | None,
        previous: Prediction | None,
        asked_id: str | None,
    ) -> Prediction:
        # Creates have waited their turn in the pacer, which holds the 429 pauses.
        query = spec.kind == "query"
        if query:
            if self._query_throttle.paused_for > 0:
                await self._query_throttle.wait()
            if self.pacer.counts_queries:
                await self.pacer.query_turn()
        budget = self.budget
        ticket = budget.take(query=query) or await budget.wait(query=query)
        sent_at = self._clock.now()
        self._counters.requests += 1
        if query:
            self._counters.queries += 1
        else:
            self._counters.creates += 1
        try:
            response = await self.transport.send(spec, read_timeout=read_timeout)
            prediction = decipher_response(response, previous, asked_id=asked_id)
            self._note_unknown_status(prediction)
            if not query:
                self.pacer.on_accepted(*(quota_from_headers(response.headers) or ()))
                if (starting := self._starting) is not None:
                    starting.set_limit(starting.limit + 1)
                    if starting.limit >= _SLOW_START_END:
                        self._end_slow_start()
            elif self.pacer.counts_queries:
                self.pacer.on_accepted()
            return prediction
        except RateLimitError as error:
            self._on_refused(spec, error, ticket, sent_at)
            raise
        finally:
            budget.done(ticket)

    def _on_refused(
        self, spec: RequestSpec, error: RateLimitError, ticket: int, sent_at: float
    ) -> None:
        self._counters.rate_limited += 1
        if spec.kind == "create":
            self._counters.creates_refused += 1
        if error.retry_after is None:
            # Too many requests at once (a per-key cap counts queries too): the
            # budget learns the cap, and the request waits for a place when it
            # is tried again. A pause would only leave places empty.
            self.budget.on_crowded(ticket)
            self._window.on_throttled()
            self._emit(Event("rate_limited", error=error, delay=0.0))
            return
        # A rate: the whole session slows down, not only this caller. Creates
        # wait as long as the server asked and learn a lower pace (from a
        # refused query too: the rate counts queries, which leaves creates
        # less); polls wait too when a poll was refused, but a refused create
        # only slows them, so results of running predictions are still seen.
        pause = min(error.retry_after, self.retry.max_retry_after)
        self._end_slow_start()  # the pacer takes over
        if spec.kind == "query":
            self.pacer.counts_queries = True
        self.pacer.on_refused(sent_at)
        self.pacer.pause(pause)
        if spec.kind == "create":
            self._query_throttle.pause(min(pause, self._poll.min_interval * 4))
        else:
            self._query_throttle.pause(pause)
        self._window.on_throttled(cooldown=max(pause, 1.0))
        self._emit(Event("rate_limited", error=error, delay=pause))

    def _end_slow_start(self) -> None:
        if (starting := self._starting) is not None:
            self._starting = None
            starting.set_limit(_SLOW_START_END << 20)  # wakes every waiter
            if self._slow_start_timer is not None:
                self._slow_start_timer.cancel()

    def _note_unknown_status(self, prediction: Prediction) -> None:
        status = prediction.status
        if not status.known and status.value not in self._unknown_statuses:
            self._unknown_statuses.add(status.value)
            logger.warning(
                "unknown prediction status %r, treated as not finished",
                status.value,
                extra=log_extra(prediction.id, prediction.model or None),
            )
