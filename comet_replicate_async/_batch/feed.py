"""The batch engine: pulls a batch's inputs, creates them, and resumes a journal.

`Session.as_completed` and `gather` delegate here. One feeder task per batch
pulls an input for each free concurrency slot (backpressure), hands it to a few
creator tasks, and leaves each created prediction to the tracker and the poller.

With a journal the batch is resumable: each input is recorded (position and
digest) before its create and its id after. A rerun first checks every recorded
position against its input (a changed one raises before any create), then yields
finished items from the journal without a request, polls the created ones, and
reports an input whose create was in flight as ambiguous instead of paying again.
"""

from __future__ import annotations

import functools
import itertools
import math
import os
from collections.abc import (
    AsyncGenerator,
    Mapping,
)
from typing import TYPE_CHECKING, Any

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from comet_replicate_async._exceptions import (
    AmbiguousSubmitError,
    BatchStoppedError,
    CometReplicateError,
    InputValidationError,
    JournalError,
    PredictionAbandoned,
    error_for_status,
)
from comet_replicate_async._inputs.base import (
    BatchModel,
    FluxInput,
    item_model,
    resolve_call,
    resolve_item,
)
from comet_replicate_async._journal.base import (
    FinalState,
    Journal,
    JournalRecord,
    input_digest,
    prediction_record,
    recorded_prediction,
    takes_model,
)
from comet_replicate_async._journal.opener import open_journal
from comet_replicate_async._journal.shared import SharedJournal
from comet_replicate_async._retry import stops_creates
from comet_replicate_async._sansio import validate_model_id
from comet_replicate_async._telemetry.base import CURRENT
from comet_replicate_async._values import BatchItem, Prediction, Status

from .inputs import Inputs, aiter_inputs, checked_inputs
from .tracker import BatchIterator, BatchTracker, CreateJob, Creators, missing_outputs

if TYPE_CHECKING:
    from comet_replicate_async._session import Session
    from comet_replicate_async._telemetry.trace import BatchTrace

__all__ = ["JournalArg", "start_batch"]

# Creates a batch has in flight at once. Sixteen at 0.5 s each is far above the
# create rate limits seen in practice (hundreds a minute), and each waiting create
# would hold a task, a request and, past the pool, a queue place.
BATCH_CREATES = 16


JournalArg = str | os.PathLike[str] | Journal


def start_batch(
    session: Session,
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
    kind = _Feed
    if isinstance(opened, SharedJournal):
        from .shared import SharedFeed  # builds on _Feed: an import cycle

        kind = SharedFeed
    feed = kind(
        session,
        model,
        inputs,
        timeout,
        opened,
    )
    return BatchIterator(feed.items(), feed.tracker)


class _Feed:
    """One batch's feeder, and the journal it keeps."""

    def __init__(
        self,
        session: Session,
        model: BatchModel,
        inputs: Inputs,
        timeout: float | None,
        journal: Journal | None,
    ) -> None:
        self.session = session
        self.model = model
        self.inputs = inputs
        self.timeout = timeout
        self.journal = journal
        self.tracker = BatchTracker(
            session._registry,
            session._counters,
            session._window.release,
            on_end=None if journal is None else self._on_end,
        )
        # Positions whose create this run recorded or polls: their end is journaled.
        self._journaled: set[int] = set()
        self._ends: MemoryObjectSendStream[BatchItem] | None = None
        self._scope: anyio.CancelScope | None = None
        # The journal's first refused write (a full disk): the consumer gets it
        # once the predictions already created have ended.
        self._refused: JournalError | None = None
        self._model_kept = journal is None or takes_model(journal)
        self.traced: BatchTrace | None = None  # the batch's span, when recording

    async def items(self) -> AsyncGenerator[BatchItem, None]:
        """Start the feeder, then yield the items as they finish."""
        tracker = self.tracker
        feeder_scope = anyio.CancelScope()
        session = self.session
        assert session._task_group is not None
        # Its span starts in the consumer's context (None when nothing records).
        self.traced = session._parts.telemetry.batch(
            item_model(self.model, None), tracker.batch_id
        )
        if self.traced is not None:
            tracker.on_item = self.traced.item_ended
        session._job_started()
        session._task_group.start_soon(self._feed, feeder_scope)
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
                    await self._run({})
            else:
                await self._run_journaled(self.journal, scope)
        finally:
            self.tracker.finish()
            if self.traced is not None:
                self.traced.end(self.tracker.input_error)
            self.session._job_done()

    async def _run_journaled(self, journal: Journal, scope: anyio.CancelScope) -> None:
        # The journal and its recorder stay open outside the feeder's scope: a
        # stopped batch still records the ids of the creates it had in flight.
        self._scope = scope
        try:
            async with journal:
                records = await self._recorded(journal)
                # The cap counts what earlier runs of this journal spent.
                await self.session._spending.carry(
                    records, item_model(self.model, None)
                )
                send, receive = anyio.create_memory_object_stream[BatchItem](math.inf)
                self._ends = send
                async with anyio.create_task_group() as group:
                    group.start_soon(self._record_ends, journal, receive)
                    try:
                        with scope:
                            await self._run(records)
                    finally:
                        send.close()  # the recorder writes what came, then ends
        except Exception as error:  # in use by another run, changed, unreachable
            self.tracker.input_error = error
        if self.tracker.input_error is None:
            self.tracker.input_error = self._refused

    async def _recorded(self, journal: Journal) -> Mapping[int, JournalRecord]:
        return await journal.recorded()

    async def _run(self, records: Mapping[int, JournalRecord]) -> None:
        tracker = self.tracker
        try:
            async with anyio.create_task_group() as group:
                creators = Creators(
                    BATCH_CREATES,
                    functools.partial(self._create_item, records),
                    group,
                )
                await self._start_items(records, creators)
                await creators.close()
            await tracker.settled()
        finally:
            tracker.abandon()  # a no-op unless cancelled

    async def _start_items(
        self, records: Mapping[int, JournalRecord], creators: Creators
    ) -> None:
        session, tracker = self.session, self.tracker
        try:
            inputs_left = await checked_inputs(
                aiter_inputs(self.inputs), self.model, records
            )
        except Exception as error:  # a changed input, or the iterable failed
            tracker.input_error = error
            return
        for index in itertools.count():
            # Take the slot before pulling the next input: backpressure.
            try:
                await session._window.acquire()
            except PredictionAbandoned as error:
                # The session is closing: no more inputs; the consumer learns why
                # once the started items are read.
                tracker.input_error = error
                return
            tracker.slot_taken()
            try:
                input = await anext(inputs_left)
            except StopAsyncIteration:
                tracker.free_slot()
                return
            except Exception as error:
                # The user's iterable failed: started items finish, then the
                # consumer gets the error.
                tracker.free_slot()
                tracker.input_error = error
                return
            deadline = session._deadline(self.timeout)
            try:
                if tracker.stop_reason is not None:
                    raise BatchStoppedError(tracker.stop_reason)
                model_id, body = resolve_item(self.model, input)
            except (InputValidationError, BatchStoppedError) as error:
                session._counters.started()
                session._counters.finished(succeeded=False)
                model = item_model(self.model, input)
                tracker.put(BatchItem(index, input, error=error, model=model))
                continue
            record = records.get(index)
            if record is None or not await self._resume(
                record, input, model_id, deadline
            ):
                await creators.submit((index, input, model_id, body, deadline))

    async def _resume(
        self, record: JournalRecord, input: Any, model: str, deadline: float
    ) -> bool:
        """Take up a recorded input without creating it; False: create it."""
        index = record.index
        if record.state == "created" and record.prediction_id is not None:
            self.session._counters.started()
            self._journaled.add(index)
            known = Prediction(
                id=record.prediction_id, status=Status.STARTING, model=model
            )
            entry = self.session._poller.watch(known)
            if self.traced is not None:
                entry.trace = self.traced.item(index, model, resumed=True, known=known)
            self.tracker.watch(entry, index, input, deadline, model=model)
            return True
        if record.state in ("pending", "ambiguous"):
            if self.session.retry.retry_ambiguous_creates:
                return False  # opted in: may pay twice
            cause = CometReplicateError(
                "its create was in flight when an earlier run of this journal stopped"
            )
            error = AmbiguousSubmitError(model, input, cause)
            if record.state == "pending":
                assert self.journal is not None
                await self.journal.finish(index, "ambiguous", error=str(error))
            self.tracker.put(
                BatchItem(index, input, error=error, resumed=True, model=model)
            )
            return True
        if record.prediction is not None:
            prediction = recorded_prediction(record.prediction)
            self.tracker.put(
                BatchItem(
                    index,
                    input,
                    prediction,
                    error_for_status(prediction),
                    resumed=True,
                    missing_outputs=missing_outputs(input, prediction),
                    model=model,
                )
            )
            return True
        failure = CometReplicateError(record.error or f"ended {record.state}")
        self.tracker.put(
            BatchItem(index, input, error=failure, resumed=True, model=model)
        )
        return True

    async def _create_item(
        self, records: Mapping[int, JournalRecord], job: CreateJob
    ) -> None:
        """Create one item's prediction, then leave it to the tracker and the poller."""
        session, tracker = self.session, self.tracker
        index, input, model, body, deadline = job
        # Counted from here: a job still queued when the batch stops never was.
        session._counters.started()
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

        spending = session._spending
        reservation = None
        try:
            # Reserved before anything is recorded or sent: an input the cost
            # cap refuses ends with BudgetExceededError, unsent (a rerun with a
            # larger cap sends it).
            reservation = await spending.reserve(model, body)
            if journal is None:
                created = await session._create_by(
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
                    created = await session._create_by(
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
            session._counters.cancelled()
            if trace is not None:
                trace.end(None, error)
            raise
        if created.done:
            failure = error_for_status(created)
            tracker.ended(index, input, created, failure, model=model)
        else:
            entry = session._poller.watch(created)
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
                        await self._record_end(journal, item)
                    except JournalError as error:
                        if not error.while_writing:
                            raise
                        self._journal_refused(error)

    async def _record_end(self, journal: Journal, item: BatchItem) -> None:
        await _record_end(journal, item)


async def _record_end(journal: Journal, item: BatchItem) -> None:
    """Journal how an item this run created or polled ended."""
    prediction = item.prediction
    if prediction is not None and prediction.done:
        state: FinalState = "failed"
        if prediction.status is Status.SUCCEEDED:
            state = "succeeded"
        elif prediction.status is Status.CANCELED:
            state = "canceled"
        # An aborted prediction was stopped before it started: it cost nothing.
        free = prediction.status is Status.ABORTED
        await journal.finish(
            item.index,
            state,
            prediction=prediction_record(prediction),
            cost=0.0 if free else None,
        )
    elif isinstance(item.error, AmbiguousSubmitError):
        await journal.finish(item.index, "ambiguous", error=str(item.error))
    elif prediction is None:
        # Provably never created (the create was refused or never sent).
        await journal.unsent(item.index)
    # Still running (a deadline, a stop, polling gave up): a rerun polls it.
