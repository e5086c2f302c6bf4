"""The default batch journal: an SQLite file (stdlib) that one run holds at a time.

`JournalFile` (`file.py`) owns the file: the lock, the schema and the batched
writer; this store speaks the `Journal` protocol over it.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Self

from comet_replicate_async._journal.base import FinalState, JournalRecord

from .file import JournalFile

__all__ = ["SqliteJournal"]


class SqliteJournal:
    """A batch journal in an SQLite file (stdlib), locked by one run at a time."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._store = JournalFile(self.path)

    def __repr__(self) -> str:
        return f"<SqliteJournal {str(self.path)!r}>"

    async def __aenter__(self) -> Self:
        # Opening brings an older journal's layout up to date (`format.py`).
        await self._store.__aenter__()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._store.__aexit__(*exc_info)

    async def recorded(self) -> dict[int, JournalRecord]:
        rows = await self._store.query(
            'select "index", digest, state, prediction_id, prediction, error, cost,'
            " model from items where digest is not null"
        )
        return {
            row[0]: JournalRecord(
                index=row[0],
                digest=row[1],
                state=row[2],
                prediction_id=row[3],
                prediction=None if row[4] is None else json.loads(row[4]),
                error=row[5],
                cost=row[6],
                model=row[7],
            )
            for row in rows
        }

    async def pending(
        self,
        index: int,
        digest: str,
        *,
        cost: float | None = None,
        model: str | None = None,
    ) -> None:
        await self._store.write(
            'insert into items ("index", input, state, digest, updated, cost, model)'
            " values (?, '{}', 'pending', ?, ?, ?, ?)"
            " on conflict (\"index\") do update set state = 'pending', error = null,"
            " digest = excluded.digest, updated = excluded.updated,"
            " cost = excluded.cost, model = excluded.model",
            (index, digest, time.time(), cost, model),
            durable=True,
        )

    async def created(self, index: int, prediction_id: str) -> None:
        await self._store.write(
            "update items set state = 'created', prediction_id = ?, updated = ?"
            ' where "index" = ?',
            (prediction_id, time.time(), index),
            durable=True,
        )

    async def unsent(self, index: int) -> None:
        await self._store.write(
            'delete from items where "index" = ?', (index,), durable=True
        )

    async def finish(
        self,
        index: int,
        state: FinalState,
        *,
        prediction: Mapping[str, Any] | None = None,
        error: str | None = None,
        cost: float | None = None,
    ) -> None:
        await self._store.write(
            "update items set state = ?, prediction = ?, error = ?,"
            " prediction_id = coalesce(?, prediction_id),"
            ' cost = coalesce(?, cost), updated = ? where "index" = ?',
            (
                state,
                None if prediction is None else json.dumps(dict(prediction)),
                error,
                None if prediction is None else prediction["id"],
                cost,
                time.time(),
                index,
            ),
            durable=False,
        )
