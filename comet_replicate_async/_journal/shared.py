"""What a journal shared by many workers hands out, and the protocol it follows.

A `SharedJournal` is a `Journal` whose items are fed by claims instead of being
read back at the start: every worker records the same inputs, then claims items
under a lease (see `_journal/postgres/store.py`). The values here need no driver.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterable, Mapping
from typing import Any, Protocol, runtime_checkable

import attrs

from .base import FINAL_STATES, ItemState, Journal

__all__ = [
    "BatchStatus",
    "Claim",
    "CreateTurn",
    "RecordedInput",
    "SharedJournal",
    "WorkerStatus",
    "split_journal_url",
]


# What a journal URL's query may carry besides libpq's own parameters.
DEFAULT_BATCH = "default"
DEFAULT_LEASE = 30.0


#: An input to record: its index, its `input` object and, optionally, the
#: `"owner/name"` it runs on.
RecordedInput = tuple[int, Mapping[str, Any]] | tuple[int, Mapping[str, Any], str]


@attrs.frozen
class Claim:
    """An item handed to this worker: create it (`queued`), poll it by id
    (`created`), or report it (`ambiguous`: its create was in flight when its
    worker died, so it is not sent again)."""

    index: int
    input: Mapping[str, Any]
    state: ItemState
    prediction_id: str | None
    claims: int
    #: The model it was recorded with; None when recorded before items kept one.
    model: str | None = None


@attrs.frozen
class CreateTurn:
    """A reserved create slot: `wait` seconds from now; `at` is the slot's time
    on the database's clock (Unix seconds), None when no budget is set."""

    wait: float
    at: float | None


@attrs.frozen
class WorkerStatus:
    worker: str
    host: str
    pid: int
    alive: bool
    states: Mapping[str, int]


@attrs.frozen
class BatchStatus:
    """Counts by state for the whole batch, and per worker that holds items."""

    batch: str
    states: Mapping[str, int]
    workers: tuple[WorkerStatus, ...]

    @property
    def total(self) -> int:
        return sum(self.states.values())

    @property
    def finished(self) -> int:
        return sum(n for state, n in self.states.items() if state in FINAL_STATES)


@runtime_checkable
class SharedJournal(Journal, Protocol):
    """A journal that many workers run one batch on at once, by claims.

    Entering it joins the batch (it does not take it for this run alone).
    """

    async def record(self, inputs: Iterable[RecordedInput]) -> int:
        """Record inputs by index, each with its model (idempotent); raise
        `JournalInputChanged`, recording nothing, if a recorded index holds
        another input or model."""
        ...

    async def claim(self, limit: int, *, retry_ambiguous: bool = False) -> list[Claim]:
        """Claim up to `limit` items nobody alive holds."""
        ...

    async def open_elsewhere(self) -> int:
        """Items not ended that this worker does not hold: other workers' (alive,
        or dead and not yet reclaimed) and unclaimed ones."""
        ...

    async def wait_create_turn(self) -> None:
        """Wait for this worker's turn in the create budget shared by all."""
        ...

    async def set_create_rate(self, per_second: float, *, burst: float = 1.0) -> None:
        """Set the create rate shared by every worker."""
        ...

    async def live_workers(self) -> int:
        """Workers of this batch whose lease has not expired, this one included."""
        ...


def split_journal_url(url: str) -> tuple[str, str, float]:
    """A journal URL's libpq part, batch name and lease seconds.

    `postgresql://host/db?batch=prompts-2026&lease=10`: `batch` (default
    "default") and `lease` (default 30 s) are taken out; every other parameter
    goes to libpq as it came.
    """
    parts = urllib.parse.urlsplit(url)
    query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    batch, lease = DEFAULT_BATCH, DEFAULT_LEASE
    kept = []
    for name, value in query:
        if name == "batch":
            batch = value
        elif name == "lease":
            lease = float(value)
        else:
            kept.append((name, value))
    if not batch:
        raise ValueError("the journal URL's batch= parameter is empty")
    libpq = parts._replace(query=urllib.parse.urlencode(kept)).geturl()
    return libpq, batch, lease
