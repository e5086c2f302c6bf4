"""The store `journal=` names: a path, a `postgresql://` URL or a store object."""

from __future__ import annotations

import os

from .base import Journal
from .sqlite.store import SqliteJournal

__all__ = ["open_journal"]


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
        return SqliteJournal(journal)
    if not isinstance(journal, Journal):
        raise TypeError(
            f"journal must be a path or follow the Journal protocol, got {journal!r}"
        )
    return journal
