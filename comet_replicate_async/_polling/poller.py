"""The one background task that polls every prediction a session watches.

A dispatcher takes due entries from the registry in time order and hands them to
a fixed pool of query workers, so queries in flight never exceed
`PollPolicy.max_concurrent_queries`. It wakes at most once per
`PollPolicy.coalesce` seconds and takes everything due by then, so polls that fall
close together share one wake-up of the event loop. When nothing is due it sleeps
until the next poll time, or until a sooner one is scheduled. It never raises:
whatever goes wrong with one prediction's reply (an error, a reply that cannot be
read, a value that breaks the schedule) is retried on the schedule or handed to
that prediction's waiters as a `CometReplicateError`; the others carry on.

The task and its workers live in the session's anyio task group; the hand-off
between them uses plain asyncio futures and a timer handle, because this path runs
for every poll and anyio's cancel scopes and streams cost several times more.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import math
import random
from collections.abc import Awaitable, Callable
from datetime import datetime

import anyio
from anyio.abc import TaskStatus

from comet_replicate_async._clock import SYSTEM_CLOCK, Clock
from comet_replicate_async._exceptions import (
    CometReplicateError,
    UnexpectedResponseError,
)
from comet_replicate_async._retry import RetryPolicy
from comet_replicate_async._sansio import excerpt
from comet_replicate_async._telemetry.base import log_extra
from comet_replicate_async._values import Prediction, Status

from .registry import Entry, Registry
from .schedule import PollPolicy, TimingBook, next_poll_delay

__all__ = ["Poller"]

logger = logging.getLogger("comet_replicate_async")

# A server-measured duration may exceed the time this client watched (the create
# took a while to answer, or it waits on an id created elsewhere) by this much.
_CLOCK_SLACK = 60.0

# Queries a prediction, given its state known so far.
QueryOnce = Callable[[Prediction], Awaitable[Prediction]]


class Poller:
    """Owns every query the session makes on behalf of `wait`, `run` and batches."""

    def __init__(
        self,
        registry: Registry,
        query_once: QueryOnce,
        *,
        policy: PollPolicy,
        retry: RetryPolicy,
        on_update: Callable[[Prediction, Prediction], None],
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self._registry = registry
        self._query_once = query_once
        self._retry = retry
        self._on_update = on_update
        self._clock = clock
        self.policy = policy
        self.timings = TimingBook(policy)
        self._rng = random.Random()
        # Due entries waiting for a worker, and workers waiting for an entry.
        self._ready: collections.deque[Entry] = collections.deque()
        self._idle_workers: collections.deque[asyncio.Future[Entry]] = (
            collections.deque()
        )
        # Resolved to wake the sleeping dispatcher; None while it is awake.
        self._wakeup: asyncio.Future[None] | None = None
        # When the dispatcher will look again unless woken (inf: not until woken).
        self._sleeping_until = 0.0

    def watch(self, prediction: Prediction) -> Entry:
        """Register a prediction (or find its entry) and schedule its first poll."""
        now = self._clock.now()
        first = now + self.timings.next_delay(prediction.model, 0.0, 0, self._rng)
        entry = self._registry.add(prediction, now=now, first_poll_at=first)
        self._wake_if_sooner(entry.next_poll_at)
        return entry

    async def run(
        self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Dispatch due polls until cancelled."""
        loop = asyncio.get_running_loop()
        async with anyio.create_task_group() as workers:
            for _ in range(self.policy.max_concurrent_queries):
                workers.start_soon(self._worker)
            task_status.started()
            while True:
                now = self._clock.now()
                horizon = now + self.policy.coalesce
                while (entry := self._registry.pop_due(horizon)) is not None:
                    self._hand_over(entry)
                due_at = self._registry.next_due_at()
                # Sleep to the next due poll, but never less than `coalesce`: what
                # falls due meanwhile is taken together on the next pass.
                self._sleeping_until = (
                    math.inf if due_at is None else max(due_at, horizon)
                )
                self._wakeup = wakeup = loop.create_future()
                timer = (
                    None
                    if due_at is None
                    else self._clock.call_at(self._sleeping_until, _resolve, wakeup)
                )
                try:
                    await wakeup
                finally:
                    self._wakeup = None
                    self._sleeping_until = 0.0
                    if timer is not None:
                        timer.cancel()

    def _hand_over(self, entry: Entry) -> None:
        while self._idle_workers:
            worker = self._idle_workers.popleft()
            if not worker.done():
                worker.set_result(entry)
                return
        self._ready.append(entry)

    async def _worker(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if self._ready:
                entry = self._ready.popleft()
            else:
                waiting: asyncio.Future[Entry] = loop.create_future()
                self._idle_workers.append(waiting)
                entry = await waiting
            await self._poll(entry)

    async def _poll(self, entry: Entry) -> None:
        try:
            prediction = await self._query_once(entry.prediction)
        except CometReplicateError as error:
            self._on_failure(entry, error)
            return
        except Exception as error:
            self._give_up(entry, _not_handled(entry, error))
            return
        try:
            self._on_reply(entry, prediction)
        except Exception as error:
            # Only this prediction is affected: the poller and the session's task
            # group must outlive any reply.
            self._give_up(entry, _not_handled(entry, error))

    def _on_reply(self, entry: Entry, prediction: Prediction) -> None:
        entry.failures = 0
        if entry.trace is not None:
            entry.trace.polled(prediction)
        previous, entry.prediction = entry.prediction, prediction
        self._on_update(previous, prediction)
        if prediction.done:
            self._registry.remove(entry)
            if prediction.status is Status.SUCCEEDED:
                self._learn(prediction, entry)
            elif self.timings.forget_running(prediction.model or entry.model):
                self._reschedule_model(prediction.model or entry.model)
            if not entry.outcome.done():
                entry.outcome.set_result(prediction)
            return
        now = self._clock.now()
        age = now - entry.registered_at
        model = prediction.model or entry.model
        timings = self.timings.get(model)
        survived = None
        if timings is None:
            self.timings.seen_running(model, entry.id, age)
            survived = self.timings.survived(model)
        delay = next_poll_delay(
            self.policy, timings, age, entry.overdue_polls, self._rng, survived=survived
        )
        if (
            timings is not None
            and age > timings.closes_at
            and timings.samples >= self.policy.trusted_samples
        ):
            entry.overdue_polls += 1
        self._reschedule(entry, now + delay)

    def _on_failure(self, entry: Entry, error: CometReplicateError) -> None:
        entry.failures += 1
        if entry.trace is not None:
            entry.trace.poll_failed(error)
        delay = self._retry.poll_delay(
            error, entry.failures, self.policy.max_consecutive_failures, self._rng
        )
        if delay is None:
            self._give_up(entry, error)
            return
        logger.debug(
            "poll of %s failed (%s); next in %.2f s",
            entry.id,
            error,
            delay,
            extra=log_extra(entry.id, entry.model or None),
        )
        self._reschedule(
            entry, self._clock.now() + max(delay, self.policy.min_interval)
        )

    def _give_up(self, entry: Entry, error: BaseException) -> None:
        self._registry.remove(entry)
        if not entry.outcome.done():
            entry.outcome.set_exception(error)

    def _reschedule(self, entry: Entry, at: float) -> None:
        if self._registry.get(entry.id) is entry:
            self._registry.schedule(entry, at)
            self._wake_if_sooner(at)

    def _wake_if_sooner(self, at: float) -> None:
        # The dispatcher sleeps until the soonest poll it knew of; a sooner one (or
        # any, when it knew of none) must wake it. Later ones it will find anyway.
        if at < self._sleeping_until and self._wakeup is not None:
            _resolve(self._wakeup)

    def _learn(self, prediction: Prediction, entry: Entry) -> None:
        age = self._clock.now() - entry.registered_at
        duration = _server_duration(prediction.created_at, prediction.completed_at)
        if duration is None or not 0.0 <= duration <= age + _CLOCK_SLACK:
            # Absent, or not what this client saw (a reply's odd timestamps): one
            # such sample would move the whole model's poll window, so the time
            # watched stands in.
            duration = age
        model = prediction.model or entry.model
        first = self.timings.get(model) is None
        self.timings.record(model, duration)
        if first:
            self._reschedule_model(model)

    def _reschedule_model(self, model: str) -> None:
        # The model's first finish (or a failure that ended a hold-back): its
        # predictions were scheduled blind, some of them far ahead (see
        # PollPolicy.survivors). Bring forward those now due sooner.
        timings = self.timings.get(model)
        now = self._clock.now()
        # Entries due within `coalesce` may have been handed to a worker already.
        taken_by = now + self.policy.coalesce
        for entry in self._registry.entries():
            if entry.model != model or entry.next_poll_at <= taken_by:
                continue  # another model's, or due (perhaps being polled) already
            age = now - entry.registered_at
            delay = next_poll_delay(
                self.policy, timings, age, entry.overdue_polls, self._rng
            )
            if timings is not None and age >= timings.opens_at:
                # Already inside the window, so due within an interval: spread them
                # over it, or the held-back predictions would all be polled at once.
                delay *= self._rng.random()
            if now + delay < entry.next_poll_at:
                self._reschedule(entry, now + delay)


def _not_handled(entry: Entry, error: Exception) -> UnexpectedResponseError:
    logger.error(
        "prediction %s: its reply could not be handled",
        entry.id,
        exc_info=error,
        extra=log_extra(entry.id, entry.model or None),
    )
    unexpected = UnexpectedResponseError(
        f"prediction {entry.id}: the reply could not be handled "
        f"({type(error).__name__}: {error})",
        status_code=200,
        body=excerpt(repr(entry.prediction).encode()),
    )
    unexpected.__cause__ = error
    return unexpected


def _server_duration(
    created: datetime | None, completed: datetime | None
) -> float | None:
    # The server's own clock on both ends: no skew, no network delay in it.
    if created is None or completed is None:
        return None
    return (completed - created).total_seconds()


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
