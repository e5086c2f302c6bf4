"""Where a batch's items come from: its inputs, read back from a journal of one run.

The feeder (`feed.py`) drives an item source and does what each piece of work
says: create an input, take up an item an earlier run created or left in flight,
or report an item that ends without a create. Created and ambiguous items are
taken up in the feeder, one place for both kinds of journal; a source only
decides which items those are. `LocalItems` reads the inputs (and a journal's
records); `ClaimedItems` (`shared.py`) claims them from a journal many workers
share.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncGenerator
from typing import Any, Literal, Protocol

import attrs

from comet_replicate_async._exceptions import (
    AmbiguousSubmitError,
    BatchStoppedError,
    CometReplicateError,
    InputValidationError,
    PredictionAbandoned,
    error_for_status,
)
from comet_replicate_async._inputs.base import BatchModel, item_model, resolve_item
from comet_replicate_async._journal.base import (
    FinalState,
    Journal,
    JournalRecord,
    prediction_record,
    recorded_prediction,
)
from comet_replicate_async._values import BatchItem, Status

from .context import BatchContext
from .inputs import Inputs, aiter_inputs, checked_inputs
from .tracker import BatchTracker, CreateJob, missing_outputs

__all__ = [
    "Create",
    "ItemSource",
    "LocalItems",
    "Report",
    "TakeUp",
    "Work",
    "record_end",
]


@attrs.frozen
class Create:
    """Create this input (its slot is taken)."""

    job: CreateJob


@attrs.frozen
class Report:
    """An item that ends without a create; `counted` when this run counts it in
    the session's stats (one that ended in an earlier run is not)."""

    item: BatchItem
    counted: bool


@attrs.frozen
class TakeUp:
    """An item whose create an earlier run (or another worker) sent: polled by
    id when `created`, else reported ambiguous (`cause` says why), never sent
    again; a `pending` record is marked ambiguous in the journal."""

    index: int
    input: Any
    model: str
    deadline: float
    state: Literal["created", "pending", "ambiguous"]
    prediction_id: str | None = None
    cause: str = ""


Work = Create | Report | TakeUp


class ItemSource(Protocol):
    """What the feeder asks of where its items come from."""

    def work(self) -> AsyncGenerator[Work, None]:
        """The batch's work, one piece per concurrency slot taken."""
        ...

    async def create_turn(self) -> None:
        """Wait, if need be, before each create."""

    async def created(self) -> None:
        """A create has answered (or failed)."""

    async def record_end(self, journal: Journal, item: BatchItem) -> None:
        """Journal how an item this run created or polled ended."""


class LocalItems:
    """The inputs, one per free slot, and a journal of one run read back first."""

    def __init__(
        self,
        context: BatchContext,
        tracker: BatchTracker,
        model: BatchModel,
        inputs: Inputs,
        timeout: float | None,
        journal: Journal | None,
    ) -> None:
        self.context, self.tracker = context, tracker
        self.model, self.inputs, self.timeout = model, inputs, timeout
        self.journal = journal

    async def work(self) -> AsyncGenerator[Work, None]:
        context, tracker = self.context, self.tracker
        records: dict[int, JournalRecord] = {}
        if self.journal is not None:
            records = dict(await self.journal.recorded())
            # The cap counts what earlier runs of this journal spent.
            await context.spending.carry(records, item_model(self.model, None))
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
                await context.window.acquire()
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
            deadline = context.deadline(self.timeout)
            try:
                if tracker.stop_reason is not None:
                    raise BatchStoppedError(tracker.stop_reason)
                model_id, body = resolve_item(self.model, input)
            except (InputValidationError, BatchStoppedError) as error:
                model = item_model(self.model, input)
                yield Report(BatchItem(index, input, error=error, model=model), True)
                continue
            record = records.get(index)
            if record is None:
                yield Create((index, input, model_id, body, deadline))
            else:
                yield self._resumed(record, input, model_id, body, deadline)

    def _resumed(
        self,
        record: JournalRecord,
        input: Any,
        model: str,
        body: dict[str, Any],
        deadline: float,
    ) -> Work:
        """What to do with an input an earlier run of the journal recorded."""
        index = record.index
        if record.state == "created" and record.prediction_id is not None:
            return TakeUp(
                index, input, model, deadline, "created", record.prediction_id
            )
        if record.state in ("pending", "ambiguous"):
            if self.context.retry.retry_ambiguous_creates:
                return Create((index, input, model, body, deadline))  # may pay twice
            state: Literal["pending", "ambiguous"] = (
                "pending" if record.state == "pending" else "ambiguous"
            )
            cause = (
                "its create was in flight when an earlier run of this journal stopped"
            )
            return TakeUp(index, input, model, deadline, state, cause=cause)
        if record.prediction is not None:
            prediction = recorded_prediction(record.prediction)
            item = BatchItem(
                index,
                input,
                prediction,
                error_for_status(prediction),
                resumed=True,
                missing_outputs=missing_outputs(input, prediction),
                model=model,
            )
            return Report(item, False)
        failure = CometReplicateError(record.error or f"ended {record.state}")
        item = BatchItem(index, input, error=failure, resumed=True, model=model)
        return Report(item, False)

    async def create_turn(self) -> None:
        pass  # the session's own pacer is enough for one run

    async def created(self) -> None:
        pass

    async def record_end(self, journal: Journal, item: BatchItem) -> None:
        await record_end(journal, item)


async def record_end(journal: Journal, item: BatchItem) -> None:
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
