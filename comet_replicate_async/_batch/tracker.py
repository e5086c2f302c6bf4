"""A batch's items between their create and their consumer, without a task each.

Once its create has answered, an item waits through a callback on its registry
entry's outcome (and a timer for its deadline), not through a task of its own: a
task with its cancel scopes costs kilobytes and tens of microseconds, and a batch
keeps thousands of items waiting at once. Finished items queue for the consumer,
each still holding its concurrency slot until the consumer takes it, so a slow
reader holds the batch back instead of letting results pile up.
"""

from __future__ import annotations

import asyncio
import collections
import contextvars
import logging
import math
import secrets
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from typing import Any

import attrs
from anyio.abc import TaskGroup

from comet_replicate_async._exceptions import (
    CometReplicateError,
    PredictionAbandoned,
    deadline_passed,
    error_for_status,
)
from comet_replicate_async._inputs.base import FluxInput, ModelCall
from comet_replicate_async._lifecycle import log_abandoned
from comet_replicate_async._money.estimates import billed_images
from comet_replicate_async._polling.registry import Entry, Registry
from comet_replicate_async._stats import StatsCounter
from comet_replicate_async._telemetry.base import log_extra
from comet_replicate_async._values import BatchItem, Prediction, Status

__all__ = [
    "BatchIterator",
    "BatchTracker",
    "CreateJob",
    "CreatorPool",
    "missing_outputs",
]

logger = logging.getLogger("comet_replicate_async")


@attrs.define(eq=False)
class _Wait:
    """One item whose prediction the poller is watching.

    It is its own callback (for the outcome and the deadline): no bound method or
    partial is made per item.
    """

    tracker: BatchTracker
    index: int
    input: Any
    model: str
    entry: Entry
    timer: asyncio.TimerHandle | None = None

    def __call__(self, outcome: asyncio.Future[Prediction] | None = None) -> None:
        """The outcome resolved (or, called with nothing, the deadline passed)."""
        if outcome is None:
            self.tracker.on_deadline(self)
        else:
            self.tracker.on_outcome(self, outcome)


class BatchTracker:
    """The finished items of one batch, and the created ones still waiting.

    The feeder side calls `slot_taken`, `free_slot`, `put`, `ended`, `watch`,
    `settled`, `abandon` and `finish`; the consumer side `next_item`, `close` and
    `finished`; a waiting item's callbacks `on_outcome` and `on_deadline`.

    Once the consumer has stopped reading, every item it did not read is kept in
    `unread` and its id logged at WARNING: a finished result, or a prediction
    still running and billed, is never dropped without a trace.

    It counts the concurrency slots the batch holds. Every item put holds one,
    given back through `release_slot` once the consumer takes the item (or has
    stopped reading); `finish` gives back those no queued item holds, so a batch
    stopped half-way (an input being pulled or queued for a create, a create
    cancelled, items abandoned) leaves no slot behind.
    """

    def __init__(
        self,
        registry: Registry,
        counters: StatsCounter,
        release_slot: Callable[[], None],
        on_end: Callable[[BatchItem], None] | None = None,
    ) -> None:
        self._registry = registry
        # Told of each item that ended in this run (a journal records it).
        self._on_end = on_end
        self._counters = counters
        self._release_slot = release_slot
        self._ready: collections.deque[BatchItem] = collections.deque()
        self._waits: set[_Wait] = set()
        # Resolved to wake the consumer (or the feeder in `settled`).
        self._consumer_wakeup: asyncio.Future[None] | None = None
        self._settled_wakeup: asyncio.Future[None] | None = None
        self._finished = False
        self._finished_event = asyncio.Event()
        self._closed = False
        self._slots_held = 0
        # One context for every callback, instead of a copy made per item.
        self._context = contextvars.copy_context()
        #: The error the user's input iterable raised (or the session's, closing
        #: under the batch), for the consumer to re-raise.
        self.input_error: Exception | None = None
        #: Items that ended after the consumer stopped reading, or were left unread.
        self.unread: list[BatchItem] = []
        #: Whether a feeder was started (it calls `finish` when it ends).
        self.feeding = False
        #: The fatal create error that stopped the batch creating, if one came.
        self.stop_reason: CometReplicateError | None = None
        #: Told of every item out, however it ended (the batch's telemetry).
        self.on_item: Callable[[BatchItem], None] | None = None
        #: Names the batch in its log records (`extra["batch"]`) and its span.
        self.batch_id = secrets.token_hex(4)

    # Feeder side

    def slot_taken(self) -> None:
        """The feeder took a concurrency slot for the next input."""
        self._slots_held += 1

    def free_slot(self) -> None:
        """Give back one slot the batch holds."""
        self._slots_held -= 1
        self._release_slot()

    def stop_creates(self, reason: CometReplicateError) -> None:
        """A create failed in a way every other create would: send no more."""
        if self.stop_reason is None:
            self.stop_reason = reason
            extra = log_extra(batch=self.batch_id)
            logger.error("batch stopped creating: %s", reason, extra=extra)

    def stopped(self) -> CometReplicateError | None:
        """Why the batch stopped creating; None while it goes on."""
        return self.stop_reason

    def put(self, item: BatchItem) -> None:
        """Queue a finished item for the consumer."""
        if self.on_item is not None:
            self.on_item(item)
        if self._closed:  # nobody will read it: free its slot now
            self.free_slot()
            self._keep_unread(item)
            return
        self._ready.append(item)
        _wake(self._consumer_wakeup)

    def ended(
        self,
        index: int,
        input: Any,
        prediction: Prediction | None,
        error: BaseException | None,
        *,
        model: str,
    ) -> None:
        """Item `index` (in flight until now) ended: count it and queue it."""
        self._counters.finished(succeeded=error is None)
        # With an error, the last state known goes along: the id is never lost.
        missing = missing_outputs(input, prediction)
        item = BatchItem(
            index, input, prediction, error, missing_outputs=missing, model=model
        )
        self._put_ended(item)

    def _put_ended(self, item: BatchItem) -> None:
        if self._on_end is not None:
            self._on_end(item)
        self.put(item)

    def watch(
        self, entry: Entry, index: int, input: Any, deadline: float, *, model: str
    ) -> None:
        """Wait for `entry`'s outcome on behalf of item `index` (on `model`),
        until `deadline`."""
        wait = _Wait(self, index, input, model, entry)
        self._registry.acquire(entry)
        if deadline != math.inf:
            wait.timer = asyncio.get_running_loop().call_later(
                deadline - time.monotonic(), wait, context=self._context
            )
        self._waits.add(wait)
        entry.outcome.add_done_callback(wait, context=self._context)

    async def settled(self) -> None:
        """Return once no item is waiting for its prediction."""
        while self._waits:
            self._settled_wakeup = asyncio.get_running_loop().create_future()
            await self._settled_wakeup

    def abandon(self) -> None:
        """Stop waiting for every item still waiting; say which ids keep running."""
        for wait in list(self._waits):
            self._end(wait)
            self._counters.cancelled()
            prediction = wait.entry.prediction
            error = PredictionAbandoned(
                f"the batch stopped before prediction {prediction.id} finished; "
                f"it may still run and be billed: session.wait({prediction.id!r}) "
                "picks it up again",
                prediction,
            )
            self._put_ended(
                BatchItem(wait.index, wait.input, prediction, error, model=wait.model)
            )

    def finish(self) -> None:
        """No more items will come: the consumer ends once it has read the queue.

        Slots no queued item holds are given back (there are some only when the
        batch was stopped).
        """
        self._finished = True
        while self._slots_held > len(self._ready):
            self.free_slot()
        _wake(self._consumer_wakeup)
        self._finished_event.set()

    async def finished(self) -> None:
        """Return once the feeder has finished (every item ended or was abandoned)."""
        await self._finished_event.wait()

    # Consumer side

    async def next_item(self) -> BatchItem | None:
        """The next finished item (freeing its slot), or None once the batch is done."""
        while not self._ready:
            if self._finished:
                return None
            self._consumer_wakeup = asyncio.get_running_loop().create_future()
            await self._consumer_wakeup
        self.free_slot()
        return self._ready.popleft()

    def close(self) -> None:
        """The consumer stopped reading: free the slots of the items it left."""
        self._closed = True
        while self._ready:
            self._keep_unread(self._ready.popleft())
            self.free_slot()

    def _keep_unread(self, item: BatchItem) -> None:
        self.unread.append(item)
        prediction = item.prediction
        if prediction is None:
            return  # nothing was created: nothing to find again
        if prediction.done:
            logger.warning(
                "batch stopped before its item %d was read: prediction %s ended "
                "%s; session.wait(%r) reads it again",
                item.index,
                prediction.id,
                prediction.status,
                prediction.id,
                extra=log_extra(prediction.id, prediction.model or None, self.batch_id),
            )
        else:
            log_abandoned(
                prediction,
                f"batch stopped before its item {item.index} ended",
                self.batch_id,
            )

    # Callbacks

    def on_outcome(self, wait: _Wait, outcome: asyncio.Future[Prediction]) -> None:
        """The prediction `wait` is for has ended, or the poller gave up on it."""
        if wait not in self._waits:  # expired or abandoned meanwhile
            return
        self._end(wait)
        error: BaseException | None
        if outcome.cancelled():  # only by a bug elsewhere: still report the item
            error = asyncio.CancelledError(f"stopped watching {wait.entry.id}")
        else:
            error = outcome.exception()
        prediction = wait.entry.prediction
        if error is None:
            prediction = outcome.result()
            error = error_for_status(prediction)
        self.ended(wait.index, wait.input, prediction, error, model=wait.model)

    def on_deadline(self, wait: _Wait) -> None:
        """The deadline of `wait`'s item passed first."""
        if wait not in self._waits:
            return
        self._end(wait)
        prediction = wait.entry.prediction
        error = deadline_passed(prediction)
        self.ended(wait.index, wait.input, prediction, error, model=wait.model)

    def _end(self, wait: _Wait) -> None:
        self._waits.discard(wait)
        if wait.timer is not None:
            wait.timer.cancel()
        self._registry.release(wait.entry)
        if not self._waits:
            _wake(self._settled_wakeup)


#: One input to create: its index, the input, the model, the request body, the deadline.
CreateJob = tuple[int, Any, str, dict[str, Any], float]


class CreatorPool:
    """Up to `limit` tasks that create a batch's predictions, started as jobs come.

    A handful of long-lived tasks instead of one per input: each input then costs
    a queue hand-over, not a task and its cancel scopes.
    """

    def __init__(
        self,
        limit: int,
        create: Callable[[CreateJob], Awaitable[None]],
        group: TaskGroup,
    ) -> None:
        self._limit = limit
        self._create = create
        self._group = group
        # Size 1: the feeder waits while a job is unclaimed, so no more than
        # `limit` inputs are being created and one waits.
        self._jobs: asyncio.Queue[CreateJob | None] = asyncio.Queue(maxsize=1)
        self._started = 0
        self._idle = 0

    async def submit(self, job: CreateJob) -> None:
        """Hand a job over, waiting while every creator is busy."""
        if self._idle == 0 and self._started < self._limit:
            self._started += 1
            self._group.start_soon(self._work)
        await self._jobs.put(job)

    async def close(self) -> None:
        """No more jobs: each creator stops once the jobs before are taken."""
        for _ in range(self._started):
            await self._jobs.put(None)

    async def _work(self) -> None:
        while True:
            self._idle += 1
            try:
                job = await self._jobs.get()
            finally:
                self._idle -= 1
            if job is None:
                return
            await self._create(job)


class BatchIterator(AsyncGenerator[BatchItem, None]):
    """The items of `Session.as_completed`, as they finish.

    An async generator (use `contextlib.aclosing` and `break` to stop early) with
    two more methods: `stop()`, which stops the batch and hands back every item
    not read yet, and `stop_creating()`, which sends no more creates but lets the
    predictions already created finish.
    """

    def __init__(
        self, items: AsyncGenerator[BatchItem, None], tracker: BatchTracker
    ) -> None:
        self._items = items
        self._tracker = tracker

    def __aiter__(self) -> BatchIterator:
        return self

    async def __anext__(self) -> BatchItem:
        return await self._items.__anext__()

    async def asend(self, value: None) -> BatchItem:
        return await self._items.asend(value)

    async def athrow(self, *args: Any) -> BatchItem:
        return await self._items.athrow(*args)

    async def aclose(self) -> None:
        await self._items.aclose()

    async def stop(self) -> list[BatchItem]:
        """Stop the batch early and return the items not read yet, by index.

        No input is pulled and no create sent after this. Items that finished
        but were not read come back as they ended; items still running come
        back with a `PredictionAbandoned` error carrying the prediction (it runs
        on and is billed: `session.wait(id)` picks it up again). Each id is also
        logged at WARNING. A create in flight at the stop is finished and its id
        logged. Safe to call at any time, and more than once.
        """
        await self._items.aclose()
        if not self._tracker.feeding:
            return []  # never started: nothing was pulled or created
        await self._tracker.finished()
        unread, self._tracker.unread = self._tracker.unread, []
        return sorted(unread, key=lambda item: item.index)

    def stop_creating(self, reason: CometReplicateError | None = None) -> None:
        """Send no more creates, as after a fatal create error.

        Unlike `stop()`, the predictions already created are still waited for
        and come out as they end; the inputs not sent yet come out with a
        `BatchStoppedError` (caused by `reason`) and cost nothing. Iterate on to
        read them all. Calling it again keeps the first reason.
        """
        if reason is None:
            reason = CometReplicateError("stop_creating() was called")
        self._tracker.stop_creates(reason)


def missing_outputs(input: Any, prediction: Prediction | None) -> int:
    """How many fewer outputs a succeeded prediction returned than its input
    asked for (`num_outputs`: the safety filter drops images); 0 otherwise."""
    if prediction is None or prediction.status is not Status.SUCCEEDED:
        return 0
    if isinstance(input, ModelCall):
        input = input.input
    if isinstance(input, FluxInput):
        input = input.to_input()
    if not isinstance(input, Mapping):
        return 0
    return max(0, billed_images(input) - len(prediction.output_urls))


def _wake(future: asyncio.Future[None] | None) -> None:
    if future is not None and not future.done():
        future.set_result(None)
