"""The in-memory registry of predictions in flight, ordered by next poll time."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import weakref
from collections.abc import Iterable

import attrs

from comet_replicate_async._telemetry.base import PredictionHooks
from comet_replicate_async._values import Prediction

__all__ = ["Entry", "Registry"]


@attrs.define(eq=False)
class Entry:
    """One prediction the poller is watching.

    `outcome` resolves with the terminal `Prediction`, or with the error that made
    the poller give up on it. `waiters` counts the callers awaiting it: the entry
    leaves the registry when the last one stops waiting.
    """

    prediction: Prediction
    registered_at: float
    outcome: asyncio.Future[Prediction]
    next_poll_at: float = 0.0
    overdue_polls: int = 0
    failures: int = 0
    waiters: int = 0
    # Bumped on each reschedule so stale heap items can be recognised and skipped.
    generation: int = 0
    # The span its polls are added to, when telemetry records.
    trace: PredictionHooks | None = None

    @property
    def id(self) -> str:
        """The prediction's id."""
        return self.prediction.id

    @property
    def model(self) -> str:
        """The prediction's model."""
        return self.prediction.model


class Registry:
    """Entries by prediction id, plus a heap of (next poll time, entry).

    A rescheduled or removed entry's old heap item stays until it surfaces, so the
    heap holds only weak references: an old item must not keep a finished entry
    (and its final prediction) alive for seconds.
    """

    def __init__(self) -> None:
        self._entries: dict[str, Entry] = {}
        self._heap: list[tuple[float, int, int, weakref.ref[Entry]]] = []
        self._tiebreak = itertools.count()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, prediction_id: object) -> bool:
        return prediction_id in self._entries

    def ids(self) -> list[str]:
        """The ids being watched."""
        return list(self._entries)

    def entries(self) -> Iterable[Entry]:
        """The entries being watched (a live view: do not add or remove meanwhile)."""
        return self._entries.values()

    def get(self, prediction_id: str) -> Entry | None:
        """The entry for an id, if it is being watched."""
        return self._entries.get(prediction_id)

    def add(self, prediction: Prediction, *, now: float, first_poll_at: float) -> Entry:
        """Watch a prediction, or return the entry already watching it."""
        entry = self._entries.get(prediction.id)
        if entry is None:
            outcome: asyncio.Future[Prediction] = (
                asyncio.get_running_loop().create_future()
            )
            entry = Entry(prediction=prediction, registered_at=now, outcome=outcome)
            self._entries[prediction.id] = entry
            self.schedule(entry, first_poll_at)
        return entry

    def remove(self, entry: Entry) -> None:
        """Stop watching; its heap item is dropped lazily."""
        if self._entries.get(entry.id) is entry:
            del self._entries[entry.id]

    def acquire(self, entry: Entry) -> None:
        """One more caller waits for the entry's outcome."""
        entry.waiters += 1

    def release(self, entry: Entry) -> None:
        """One waiter stopped waiting; the last one out stops the watch."""
        entry.waiters -= 1
        if entry.waiters == 0:
            self.remove(entry)
            if not entry.outcome.done():
                entry.outcome.cancel()

    def schedule(self, entry: Entry, at: float) -> None:
        """Set the entry's next poll time."""
        entry.generation += 1
        entry.next_poll_at = at
        item = (at, next(self._tiebreak), entry.generation, weakref.ref(entry))
        heapq.heappush(self._heap, item)

    def pop_due(self, now: float) -> Entry | None:
        """The watched entry whose poll is due soonest, if one is due by `now`."""
        heap = self._heap
        while heap:
            at, _, generation, ref = heap[0]
            entry = ref()
            if entry is None or not self._current(entry, generation):
                heapq.heappop(heap)
                continue
            if at > now:
                return None
            heapq.heappop(heap)
            return entry
        return None

    def next_due_at(self) -> float | None:
        """When the next poll is due, or None when nothing is watched."""
        heap = self._heap
        while heap:
            at, _, generation, ref = heap[0]
            entry = ref()
            if entry is not None and self._current(entry, generation):
                return at
            heapq.heappop(heap)
        return None

    def _current(self, entry: Entry, generation: int) -> bool:
        # Not rescheduled since, and still watched.
        return entry.generation == generation and self._entries.get(entry.id) is entry
