"""A journal the disk refuses in the middle of a batch: the batch stops creating,
polls what it made to the end, then raises the journal's error; a rerun resumes.

The disk is simulated at the journal's own seam: a real SQLite journal whose
writes fail, after a few, as a full disk fails them (`JournalError` with
`while_writing`, what `JournalFile` raises for SQLITE_FULL or ENOSPC).
"""

from __future__ import annotations

import errno
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from journal_worker import inputs

from comet_replicate_async import BatchItem, BatchStoppedError, JournalError
from comet_replicate_async._batch.tracker import BatchIterator
from comet_replicate_async._journal.base import FinalState
from comet_replicate_async._journal.sqlite.format import unwritable
from comet_replicate_async._journal.sqlite.store import SqliteJournal
from comet_replicate_async.testing import FakeCometAPI, Latency

from helpers import SCHNELL, session_for

pytestmark = pytest.mark.anyio

COUNT = 12


class FillingJournal(SqliteJournal):
    """Every write after the first `room` ones fails as on a full disk."""

    def __init__(self, path: Path, room: int) -> None:
        super().__init__(path)
        self.room = room

    def _take_room(self) -> None:
        if self.room <= 0:
            full = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            raise unwritable(full, self.path, while_writing=True)
        self.room -= 1

    async def pending(
        self,
        position: int,
        digest: str,
        *,
        cost: float | None = None,
        model: str | None = None,
    ) -> None:
        self._take_room()
        await super().pending(position, digest, cost=cost, model=model)

    async def created(self, position: int, prediction_id: str) -> None:
        self._take_room()
        await super().created(position, prediction_id)

    async def finish(
        self,
        position: int,
        state: FinalState,
        *,
        prediction: Mapping[str, Any] | None = None,
        error: str | None = None,
        cost: float | None = None,
    ) -> None:
        self._take_room()
        await super().finish(
            position, state, prediction=prediction, error=error, cost=cost
        )


async def read_all(batch: BatchIterator, into: list[BatchItem]) -> None:
    """Read every item into `into` (kept when the batch raises at the end)."""
    async for item in batch:
        into.append(item)  # noqa: PERF401 (one by one: the batch raises at its end)


@pytest.mark.timeout(60)
async def test_a_refused_journal_stops_creating_polls_on_and_a_rerun_resumes(
    tmp_path: Path,
) -> None:
    path = tmp_path / "batch.sqlite3"
    items: list[BatchItem] = []
    async with FakeCometAPI(default_latency=Latency.uniform(0.1, 0.3)) as fake:
        async with session_for(fake, max_concurrency=3) as session:
            # Room for the first creates' pending and created records only: the
            # first end to be recorded is refused.
            batch = session.as_completed(
                SCHNELL, inputs(COUNT), journal=FillingJournal(path, room=6)
            )
            with pytest.raises(JournalError) as refused:
                await read_all(batch, items)
        made = set(fake.stats.predictions)

        async with session_for(fake) as session:
            again = await session.gather(SCHNELL, inputs(COUNT), journal=path)
        stats = fake.stats

    assert refused.value.while_writing
    assert str(path) in str(refused.value)
    # It stopped creating at the refusal...
    assert len(made) < COUNT
    assert any(isinstance(item.error, BatchStoppedError) for item in items)
    # ...and every prediction it had made was polled to its end.
    ended = {item.prediction.id for item in items if item.prediction is not None}
    assert ended == made
    assert all(item.prediction.done for item in items if item.prediction is not None)
    # The rerun finishes the batch, creating nothing twice.
    assert all(item.ok for item in again)
    assert stats.created == COUNT
    assert stats.duplicates == 0
