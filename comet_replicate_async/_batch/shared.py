"""A batch's items claimed from a journal that many workers share (PostgreSQL).

Every worker runs the same inputs against the same journal URL. Each records
them all first (a changed input raises before any create), then claims items,
one per free concurrency slot (backpressure, as without a journal): a fresh
claim is created, one another worker created and left is polled by id, and one
whose create was in flight when its worker died is reported ambiguous, never
sent again unless the session opts into `retry_ambiguous_creates`. A worker
yields the items it handled, and keeps claiming until no live worker holds an
unfinished item, so the survivors finish a dead worker's items.

Creates draw on one budget for the API key: each takes a turn from the shared
token bucket first, and a rate this worker's pacer learns from a refused create
is published there, scaled to the live workers, so all slow down together.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncGenerator, Mapping
from typing import Any

import anyio

from comet_replicate_async._exceptions import (
    BatchStoppedError,
    CometReplicateError,
    InputValidationError,
    PredictionAbandoned,
)
from comet_replicate_async._inputs.base import (
    BatchModel,
    item_model,
    resolve_call,
    resolve_item,
)
from comet_replicate_async._journal.base import Journal
from comet_replicate_async._journal.shared import Claim, SharedJournal
from comet_replicate_async._values import BatchItem

from .context import BatchContext
from .inputs import Inputs, aiter_inputs
from .sources import Create, Report, TakeUp, Work, record_end
from .tracker import BatchTracker

__all__ = ["ClaimedItems"]

_log = logging.getLogger("comet_replicate_async.journal")

# Inputs recorded per statement: large enough to make recording a million
# quick, small enough to keep one statement's memory modest.
_RECORD_CHUNK = 1000
# Most items claimed in one statement: the slots free at once, up to this.
_CLAIM_MAX = 64
# How often an idle worker looks for items a dead worker left, at most.
_IDLE_LOOK = 1.0
# How often a worker shares its learned create rate, besides after a refusal.
_PUBLISH_EVERY = 1.0
# The shared rate's margin over the sum of the workers' learned rates.
_ROW_HEADROOM = 1.1

Call = tuple[str, dict[str, Any]] | InputValidationError


class ClaimedItems:
    """One worker's part of a batch shared through a `SharedJournal`."""

    def __init__(
        self,
        context: BatchContext,
        tracker: BatchTracker,
        model: BatchModel,
        inputs: Inputs,
        timeout: float | None,
        journal: SharedJournal,
    ) -> None:
        self.context, self.tracker = context, tracker
        self.model, self.inputs, self.timeout = model, inputs, timeout
        self.shared = journal
        self._refused_seen = 0
        self._published_at = 0.0

    async def work(self) -> AsyncGenerator[Work, None]:
        context, tracker, journal = self.context, self.tracker, self.shared
        try:
            inputs = [input async for input in aiter_inputs(self.inputs)]
            calls = await self._record(inputs)
            if (per_minute := context.pacer.per_minute) is not None:
                await journal.set_create_rate(per_minute / 60.0)
        except Exception as error:  # a changed input, the iterable, the database
            tracker.input_error = error
            return
        self._refused_seen = context.counters.creates_refused
        self._published_at = time.monotonic()
        for index, call in calls.items():
            if isinstance(call, InputValidationError):
                # Never recorded nor sent: every worker reports it.
                if not await self._take_slots(1):
                    return
                input = inputs[index]
                model = item_model(self.model, input)
                yield Report(BatchItem(index, input, error=call, model=model), True)
        # A stopped batch claims no more: what is left waits for other workers.
        while tracker.stop_reason is None:
            free = context.window.limit - context.window.in_use
            taken = await self._take_slots(1 + min(_CLAIM_MAX - 1, max(0, free - 1)))
            claims: list[Claim] = []
            if taken:
                try:
                    claims = await journal.claim(
                        taken, retry_ambiguous=context.retry.retry_ambiguous_creates
                    )
                except Exception as error:
                    tracker.input_error = error
            for _ in range(taken - len(claims)):
                tracker.free_slot()
            if tracker.input_error is not None:
                return  # the session closes, or the database failed
            for claim in claims:
                yield await self._claimed(claim, inputs, calls)
            if not claims:
                if not await journal.open_elsewhere():
                    return  # every item has ended, or is in this worker's hands
                # Another worker holds items: they come back if it dies (or has
                # died since the claim above).
                await anyio.sleep(min(_IDLE_LOOK, journal_lease(journal) / 4))

    async def _take_slots(self, count: int) -> int:
        """Take up to `count` concurrency slots (the first waits); how many were
        taken, fewer when the session closes."""
        for taken in range(count):
            try:
                await self.context.window.acquire()
            except PredictionAbandoned as error:
                self.tracker.input_error = error
                return taken
            self.tracker.slot_taken()
        return count

    async def _record(self, inputs: list[Any]) -> dict[int, Call]:
        """Resolve and record every input (with its model); the invalid ones
        are not recorded."""
        calls: dict[int, Call] = {}
        for index, input in enumerate(inputs):
            try:
                calls[index] = resolve_item(self.model, input)
            except InputValidationError as error:
                calls[index] = error
        valid = [
            (index, call[1], call[0])
            for index, call in calls.items()
            if isinstance(call, tuple)
        ]
        for start in range(0, len(valid), _RECORD_CHUNK):
            await self.shared.record(valid[start : start + _RECORD_CHUNK])
        return calls

    async def _claimed(
        self, claim: Claim, inputs: list[Any], calls: Mapping[int, Call]
    ) -> Work:
        """What to do with one claimed item; its slot is taken."""
        index = claim.index
        call = calls.get(index)
        if isinstance(call, tuple):
            model, body = call
            input = inputs[index]
        else:  # recorded by a worker with more inputs: its record is the input
            input = dict(claim.input)
            if claim.model is not None:
                model, body = resolve_call(claim.model, input)
            else:  # recorded before items kept their model
                model, body = resolve_item(self.model, input)
        deadline = self.context.deadline(self.timeout)
        if claim.state == "created" and claim.prediction_id is not None:
            return TakeUp(index, input, model, deadline, "created", claim.prediction_id)
        if claim.state == "ambiguous":
            cause = "its create was in flight when the worker that sent it stopped"
            return TakeUp(index, input, model, deadline, "ambiguous", cause=cause)
        if self.tracker.stop_reason is not None:
            await self.shared.unsent(index)  # another worker may still send it
            stopped = BatchStoppedError(self.tracker.stop_reason)
            return Report(BatchItem(index, input, error=stopped, model=model), True)
        return Create((index, input, model, body, deadline))

    async def create_turn(self) -> None:
        # One key, one budget: the turn comes from the row all workers share.
        await self.shared.wait_create_turn()

    async def created(self) -> None:
        refused = self.context.counters.creates_refused
        now = time.monotonic()
        if refused > self._refused_seen or now - self._published_at >= _PUBLISH_EVERY:
            self._refused_seen, self._published_at = refused, now
            await self._publish_rate()

    async def _publish_rate(self) -> None:
        """Share the rate this worker's pacer has learned.

        The pacer measured this worker's share of the key's creates; the live
        workers together are allowed about that many times over. The row stays
        a little above that sum so that each worker's own pacer, which probes
        upwards only while it holds creates back, keeps finding the limit; a
        refusal anywhere lowers the row, and so every worker, at once.
        """
        pacer = self.context.pacer
        if (rate := pacer.rate) is None:
            return
        journal = self.shared
        try:
            total = rate * await journal.live_workers() * _ROW_HEADROOM
            if pacer.per_minute is not None:  # the user's cap is the key's
                total = min(total, pacer.per_minute / 60.0)
            await journal.set_create_rate(total)
        except Exception as error:  # the next create tries again
            _log.warning("could not share the create rate: %s", error)

    async def record_end(self, journal: Journal, item: BatchItem) -> None:
        try:
            await record_end(journal, item)
        except CometReplicateError as error:
            # This worker lost the item's lease: its new owner polls it and
            # records the end.
            _log.warning("item %d: %s", item.index, error)


def journal_lease(journal: SharedJournal) -> float:
    lease: float = getattr(journal, "lease", 30.0)
    return lease
