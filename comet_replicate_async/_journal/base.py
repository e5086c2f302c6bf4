"""What a resumable batch records, and the `Journal` protocol a store follows.

A batch records each input by position, with the digest of its canonical JSON,
durably before its create; the prediction id durably after; and its outcome at
the end, with what each create cost (reserved before it, settled at its end),
so a rerun counts the money spent before against its cost cap. A store is an
async context manager; entering it takes the batch for this run (one run per
journal). The SQLite store here is the default: a path given as `journal=`
opens one; a `postgresql://` URL opens the store that many workers share
(`_journal/shared.py`).
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, Protocol, Self, runtime_checkable

import attrs

from comet_replicate_async._values import Prediction, Status

from .sqlite.file import SqliteJournal

__all__ = [
    "Journal",
    "JournalRecord",
    "Outcome",
    "SqliteBatchJournal",
    "input_digest",
    "open_journal",
    "prediction_record",
    "recorded_prediction",
    "takes_model",
]

RecordState = Literal[
    "pending", "created", "succeeded", "failed", "canceled", "ambiguous"
]
Outcome = Literal["succeeded", "failed", "canceled", "ambiguous"]


def input_digest(input: Mapping[str, Any]) -> str:
    """SHA-256 of the input's canonical JSON (sorted keys, no spaces)."""
    canonical = json.dumps(
        input, sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


@attrs.frozen
class JournalRecord:
    """What a journal knows of one input.

    `prediction` holds the final prediction's id, status, model, output and
    error once it ended (the fields a resumed `BatchItem` carries). `cost` is
    what its create cost in US dollars (billed or possibly billed; 0 when
    aborted), None when no price was known. `model` is the `"owner/name"` it
    ran on, None in a journal written before models were recorded.
    """

    position: int
    digest: str
    state: RecordState
    prediction_id: str | None = None
    prediction: Mapping[str, Any] | None = None
    error: str | None = None
    cost: float | None = None
    model: str | None = None


@runtime_checkable
class Journal(Protocol):
    """A store for resumable batches (`as_completed(..., journal=...)`).

    Entering it takes the batch for this run and refuses at once if another run
    holds it; leaving it makes every write durable and lets the batch go.
    `pending` and `created` must be durable when they return: the batch sends the
    create only after `pending`, and counts an item created only after `created`.
    """

    async def __aenter__(self) -> Self: ...

    async def __aexit__(self, *exc_info: object) -> None: ...

    async def recorded(self) -> Mapping[int, JournalRecord]:
        """Every recorded input, by position."""
        ...

    async def pending(
        self,
        position: int,
        digest: str,
        *,
        cost: float | None = None,
        model: str | None = None,
    ) -> None:
        """The create of the input at `position` is about to be sent; `cost` is
        its price, reserved (None when no price is known); `model` the
        `"owner/name"` it runs on (the digest covers the input only)."""
        ...

    async def created(self, position: int, prediction_id: str) -> None:
        """The create answered with `prediction_id`."""
        ...

    async def unsent(self, position: int) -> None:
        """The create was provably never sent: forget the input (a rerun sends it)."""
        ...

    async def finish(
        self,
        position: int,
        state: Outcome,
        *,
        prediction: Mapping[str, Any] | None = None,
        error: str | None = None,
        cost: float | None = None,
    ) -> None:
        """The input ended; `prediction` as `prediction_record` makes it. `cost`
        (passed only when it changed, e.g. 0 for an aborted prediction) replaces
        the one given to `pending`."""
        ...


class SqliteBatchJournal:
    """A batch journal in an SQLite file (stdlib), locked by one run at a time."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._store = SqliteJournal(self.path)

    def __repr__(self) -> str:
        return f"<SqliteBatchJournal {str(self.path)!r}>"

    async def __aenter__(self) -> Self:
        # Opening brings an older journal's layout up to date (`_journal_file`).
        await self._store.__aenter__()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._store.__aexit__(*exc_info)

    async def recorded(self) -> dict[int, JournalRecord]:
        rows = await self._store.query(
            "select idx, digest, state, prediction_id, prediction, error, cost,"
            " model from items where digest is not null"
        )
        return {
            row[0]: JournalRecord(
                position=row[0],
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
        position: int,
        digest: str,
        *,
        cost: float | None = None,
        model: str | None = None,
    ) -> None:
        await self._store.write(
            "insert into items"
            " (key, idx, line, input, state, digest, updated, cost, model)"
            " values (?, ?, ?, '{}', 'pending', ?, ?, ?, ?)"
            " on conflict(key) do update set state = 'pending', error = null,"
            " digest = excluded.digest, updated = excluded.updated,"
            " cost = excluded.cost, model = excluded.model",
            (str(position), position, position, digest, time.time(), cost, model),
            durable=True,
        )

    async def created(self, position: int, prediction_id: str) -> None:
        await self._store.write(
            "update items set state = 'created', prediction_id = ?, updated = ?"
            " where key = ?",
            (prediction_id, time.time(), str(position)),
            durable=True,
        )

    async def unsent(self, position: int) -> None:
        await self._store.write(
            "delete from items where key = ?", (str(position),), durable=True
        )

    async def finish(
        self,
        position: int,
        state: Outcome,
        *,
        prediction: Mapping[str, Any] | None = None,
        error: str | None = None,
        cost: float | None = None,
    ) -> None:
        await self._store.write(
            "update items set state = ?, prediction = ?, error = ?,"
            " prediction_id = coalesce(?, prediction_id),"
            " cost = coalesce(?, cost), updated = ? where key = ?",
            (
                state,
                None if prediction is None else json.dumps(dict(prediction)),
                error,
                None if prediction is None else prediction["id"],
                cost,
                time.time(),
                str(position),
            ),
            durable=False,
        )


def open_journal(journal: str | os.PathLike[str] | Journal) -> Journal:
    """The store `journal=` names: a `postgresql://` URL opens the journal that
    many workers share (`?batch=NAME`, default "default"); a path, an SQLite one."""
    if isinstance(journal, str) and journal.startswith(
        ("postgresql://", "postgres://")
    ):
        # Imported here: psycopg is an optional extra.
        from .postgres.store import PostgresJournal
        from .shared import split_journal_url

        url, batch, lease = split_journal_url(journal)
        return PostgresJournal(url, batch=batch, lease=lease)
    if isinstance(journal, str | os.PathLike):
        return SqliteBatchJournal(journal)
    if not isinstance(journal, Journal):
        raise TypeError(
            f"journal must be a path or follow the Journal protocol, got {journal!r}"
        )
    return journal


def takes_model(journal: Journal) -> bool:
    """Whether `journal.pending` takes `model=`: a store written for an earlier
    version may not, and then keeps the input's digest alone."""
    try:
        parameters = inspect.signature(journal.pending).parameters.values()
    except (TypeError, ValueError):  # no signature to read: assume the protocol
        return True
    return any(p.name == "model" or p.kind is p.VAR_KEYWORD for p in parameters)


def prediction_record(prediction: Prediction) -> dict[str, Any]:
    """The fields of an ended prediction that a journal keeps."""
    return {
        "id": prediction.id,
        "status": str(prediction.status),
        "model": prediction.model,
        "output": prediction.output,
        "error": prediction.error,
    }


def recorded_prediction(record: Mapping[str, Any]) -> Prediction:
    """The prediction `prediction_record` kept."""
    return Prediction(
        id=record["id"],
        status=Status(record["status"]),
        model=record.get("model") or "",
        output=record.get("output"),
        error=record.get("error"),
    )
