"""The batch engine: pulls a batch's inputs, creates them, and resumes a journal.

`Session.as_completed` and `gather` delegate here. One feeder task per batch pulls
an input for each free concurrency slot (backpressure), hands it to a few creator
tasks, and leaves each created prediction to the tracker and the poller. With a
journal the batch is resumable: each input is recorded (index and digest)
before its create and its id after. A rerun first checks every recorded index
against its input (a changed one raises before any create), then yields finished
items from the journal without a request, polls the created ones, and reports an
input whose create was in flight as ambiguous instead of paying again.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
from collections.abc import AsyncGenerator

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from comet_replicate_async._exceptions import (
    AmbiguousSubmitError,
    CometReplicateError,
    JournalError,
    error_for_status,
)
from comet_replicate_async._inputs.base import (
    BatchModel,
    FluxInput,
    item_model,
    resolve_call,
)
from comet_replicate_async._journal.base import (
    Journal,
    input_digest,
    takes_model,
)
from comet_replicate_async._journal.opener import open_journal
from comet_replicate_async._journal.shared import SharedJournal
from comet_replicate_async._retry import stops_creates
from comet_replicate_async._sansio import validate_model_id
from comet_replicate_async._telemetry.base import CURRENT, BatchHooks
from comet_replicate_async._values import BatchItem, Prediction, Status

from .context import BATCH_CREATES, BatchContext
from .inputs import Inputs
from .shared import ClaimedItems
from .sources import Create, ItemSource, LocalItems, TakeUp
from .tracker import BatchIterator, BatchTracker, CreateJob, CreatorPool

__all__ = ["Feed", "JournalArg", "start_batch"]


JournalArg = str | os.PathLike[str] | Journal


def start_batch(
    context: BatchContext,
    model: BatchModel,
    inputs: Inputs,
    timeout: float | None,
    journal: JournalArg | None,
) -> BatchIterator:
    """The items of one batch, as `Session.as_completed` returns them."""
    if isinstance(model, str):
        validate_model_id(model)
    elif model is not None and not (
        isinstance(model, type) and issubclass(model, FluxInput)
    ):
        resolve_call(model, None)  # raises the usual, clear error
    opened = None if journal is None else open_journal(journal)
    feed = Feed(context, model, inputs, timeout, opened)
    return BatchIterator(feed.items(), feed.tracker)


class Feed:
    """One batch's feeder, and the journal it keeps; its items come from a
    `LocalItems` source, or a `ClaimedItems` one on a shared journal."""

    def __init__(
        self,
        context: BatchContext,
        model: BatchModel,
        inputs: Inputs,
        timeout: float | None,
        journal: Journal | None,
    ) -> None:
        self.context = context
        self.model = model
        self.journal = journal
        self.tracker = BatchTracker(
            context.registry,
            context.counters,
            context.window.release,
            on_end=None if journal is None else self._on_end,
        )
        self.source: ItemSource
        if isinstance(journal, SharedJournal):
            self.source = ClaimedItems(
                context, self.tracker, model, inputs, timeout, journal
            )
        else:
            self.source = LocalItems(
                context, self.tracker, model, inputs, timeout, journal
            )
        # Positions whose create this run recorded or polls: their end is journaled.
        self._journaled: set[int] = set()
        self._ends: MemoryObjectSendStream[BatchItem] | None = None
        self._scope: anyio.CancelScope | None = None
        # The journal's first refused write (a full disk): the consumer gets it
        # once the predictions already created have ended.
        self._refused: JournalError | None = None
        self._model_kept = journal is None or takes_model(journal)
        self.traced: BatchHooks | None = None  # the batch's span, when recording

    async def items(self) -> AsyncGenerator[BatchItem, None]:
        """Start the feeder, then yield the items as they finish."""
        tracker = self.tracker
        feeder_scope = anyio.CancelScope()
        # Its span starts in the consumer's context (None when nothing records).
        self.traced = self.context.telemetry.batch(
            item_model(self.model, None), tracker.batch_id
        )
        if self.traced is not None:
            tracker.on_item = self.traced.item_ended
        self.context.start_job(functools.partial(self._feed, feeder_scope))
        tracker.feeding = True
        try:
            while (item := await tracker.next_item()) is not None:
                yield item
        finally:
            feeder_scope.cancel()
            tracker.close()
        if tracker.input_error is not None:
            # Every item started before the failure has been yielded by now.
            raise tracker.input_error

    async def _feed(self, scope: anyio.CancelScope) -> None:
        try:
            if self.journal is None:
                with scope:
                    await self._run()
            else:
                await self._run_journaled(self.journal, scope)
        finally:
            self.tracker.finish()
            if self.traced is not None:
                self.traced.end(self.tracker.input_error)

    async def _run_journaled(self, journal: Journal, scope: anyio.CancelScope) -> None:
        # The journal and its recorder stay open outside the feeder's scope: a
        # stopped batch still records the ids of the creates it had in flight.
        self._scope = scope
        try:
            async with journal:
                send, receive = anyio.create_memory_object_stream[BatchItem](math.inf)
                self._ends = send
                async with anyio.create_task_group() as group:
                    group.start_soon(self._record_ends, journal, receive)
                    try:
                        with scope:
                            await self._run()
                    finally:
                        send.close()  # the recorder writes what came, then ends
        except Exception as error:  # in use by another run, changed, unreachable
            self.tracker.input_error = error
        if self.tracker.input_error is None:
            self.tracker.input_error = self._refused

    async def _run(self) -> None:
        tracker = self.tracker
        try:
            async with anyio.create_task_group() as group:
                creators = CreatorPool(BATCH_CREATES, self._create_item, group)
                await self._start_items(creators)
                await creators.close()
            await tracker.settled()
        finally:
            tracker.abandon()  # a no-op unless cancelled

    async def _start_items(self, creators: CreatorPool) -> None:
        """Do the source's work: create, take up or report each item."""
        counters, tracker = self.context.counters, self.tracker
        try:
            async with contextlib.aclosing(self.source.work()) as work:
                async for piece in work:
                    if isinstance(piece, Create):
                        await creators.submit(piece.job)
                    elif isinstance(piece, TakeUp):
                        await self._take_up(piece)
                    else:
                        if piece.counted:
                            counters.started()
                            counters.finished(succeeded=False)
                        tracker.put(piece.item)
        except Exception as error:  # the journal or the database failed
            tracker.input_error = error

    async def _take_up(self, item: TakeUp) -> None:
        """Take up an item whose create an earlier run or another worker sent:
        poll a created one by id, report an ambiguous one; never create it."""
        index, input, model = item.index, item.input, item.model
        self.context.counters.started()
        if item.state == "created" and item.prediction_id is not None:
            self._journaled.add(index)
            known = Prediction(
                id=item.prediction_id, status=Status.STARTING, model=model
            )
            entry = self.context.poller.watch(known)
            if self.traced is not None:
                entry.trace = self.traced.item(index, model, resumed=True, known=known)
            self.tracker.watch(entry, index, input, item.deadline, model=model)
            return
        error = AmbiguousSubmitError(model, input, CometReplicateError(item.cause))
        if item.state == "pending":  # recorded, never answered: say so from now on
            assert self.journal is not None
            await self.journal.finish(index, "ambiguous", error=str(error))
        self.context.counters.finished(succeeded=False)
        self.tracker.put(
            BatchItem(index, input, error=error, resumed=True, model=model)
        )

    async def _create_item(self, job: CreateJob) -> None:
        await self.source.create_turn()
        await self._create(job)
        await self.source.created()

    async def _create(self, job: CreateJob) -> None:
        """Create one item's prediction, then leave it to the tracker and the poller."""
        context, tracker = self.context, self.tracker
        index, input, model, body, deadline = job
        # Counted from here: a job still queued when the batch stops never was.
        context.counters.started()
        trace = None if self.traced is None else self.traced.item(index, model)
        if trace is not None:
            trace.slot_taken()
            # This creator's current prediction (each job replaces the last).
            CURRENT.set(trace)
        on_created = None
        stopped = tracker.stopped
        journal = self.journal
        if journal is not None:

            async def on_created(prediction: Prediction) -> None:
                await journal.created(index, prediction.id)

            stopped = self._stopped

        spending = context.spending
        reservation = None
        try:
            # Reserved before anything is recorded or sent: an input the cost
            # cap refuses ends with BudgetExceededError, unsent (a rerun with a
            # larger cap sends it).
            reservation = await spending.reserve(model, body)
            if journal is None:
                created = await context.create_by(
                    model, body, deadline, on_created, stopped, reservation
                )
            else:
                # A create once recorded runs to its answer even if the batch
                # stops (no new attempt starts then): its id is recorded, never
                # left "in flight" for a rerun to call ambiguous.
                with anyio.CancelScope(shield=True):
                    cost = spending.journal_cost(reservation)
                    digest = input_digest(body)
                    if self._model_kept:
                        await journal.pending(index, digest, cost=cost, model=model)
                    else:
                        await journal.pending(index, digest, cost=cost)
                    self._journaled.add(index)
                    created = await context.create_by(
                        model, body, deadline, on_created, stopped, reservation
                    )
        except Exception as error:
            if reservation is not None:
                spending.unsent(reservation)
            if isinstance(error, CometReplicateError) and stops_creates(error):
                tracker.stop_creates(error)
            elif isinstance(error, JournalError) and error.while_writing:
                self._journal_refused(error)
            prediction = getattr(error, "prediction", None)
            tracker.ended(index, input, prediction, error, model=model)
            return
        except BaseException as error:
            # Stopped: its slot is given back when the batch finishes.
            if reservation is not None:
                spending.unsent(reservation)
            context.counters.cancelled()
            if trace is not None:
                trace.end(None, error)
            raise
        if created.done:
            failure = error_for_status(created)
            tracker.ended(index, input, created, failure, model=model)
        else:
            entry = context.poller.watch(created)
            if trace is not None:
                trace.watching(created)
                entry.trace = trace
            tracker.watch(entry, index, input, deadline, model=model)

    def _journal_refused(self, error: JournalError) -> None:
        """Every later write fails alike: create no more, poll on (the ids
        already recorded let a rerun pick those predictions up)."""
        if self._refused is None:
            self._refused = error
        self.tracker.stop_creates(error)

    def _stopped(self) -> CometReplicateError | None:
        if self._scope is not None and self._scope.cancel_called:
            return CometReplicateError("the batch was stopped")
        return self.tracker.stopped()

    def _on_end(self, item: BatchItem) -> None:
        if item.index in self._journaled and self._ends is not None:
            self._ends.send_nowait(item)

    async def _record_ends(
        self, journal: Journal, receive: MemoryObjectReceiveStream[BatchItem]
    ) -> None:
        # Shielded: the ends that came before a stop are still written.
        with anyio.CancelScope(shield=True):
            async with receive:
                async for item in receive:
                    if self._refused is not None:
                        continue  # it stays "created": a rerun polls it
                    try:
                        await self.source.record_end(journal, item)
                    except JournalError as error:
                        if not error.while_writing:
                            raise
                        self._journal_refused(error)
