"""What makes an SQLite file a journal of ours, and the errors for one that is not.

A file that is not an SQLite database, a database with other tables, or a
journal a newer version wrote (`PRAGMA user_version` above `SCHEMA_VERSION`) is
refused with a `JournalError` naming it, before anything is written to it. A
file the disk or permissions refuse gets one too, saying that a rerun resumes.
An older layout of ours is brought up to date as it opens (`migrate`).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from comet_replicate_async._exceptions import JournalError

__all__ = [
    "SCHEMA",
    "SCHEMA_VERSION",
    "check_header",
    "check_schema",
    "migrate",
    "unwritable",
]

#: The journal layout this code writes (kept in `PRAGMA user_version`). 2: each
#: item records its model. 3: an item's place in the batch is one column,
#: `"index"` (it was `idx`, with copies in `line` and `key`).
SCHEMA_VERSION = 3
# Columns added to `items` after its first layout, in the order they came. A
# journal written before one keeps null there: an unknown cost (a capped rerun
# prices it) or model (a rerun takes the input's digest alone).
_ADDED_COLUMNS = (("cost", "real"), ("model", "text"))
_ITEMS = """
create table if not exists items (
    "index" integer primary key,
    input text not null,
    state text not null,
    prediction_id text,
    error text,
    output_urls text,
    files text,
    updated real not null,
    digest text,
    prediction text,
    cost real,
    model text
)
"""
#: The statements that make a new journal (an existing one keeps its tables).
SCHEMA = (
    "create table if not exists meta (key text primary key, value text not null)",
    _ITEMS,
)
_SQLITE_HEADER = b"SQLite format 3\x00"
_TABLES = frozenset({"meta", "items"})


def check_header(path: Path) -> None:
    """Refuse a file that is not an SQLite database before SQLite opens it."""
    try:
        with path.open("rb") as file:
            head = file.read(len(_SQLITE_HEADER))
    except FileNotFoundError:
        return
    except OSError as error:
        raise unwritable(error, path) from None
    if head and head != _SQLITE_HEADER:
        raise JournalError(
            f"{path} is not a journal (not an SQLite database); "
            "it was left as it is: use another journal path or move the file away",
            path=str(path),
        )


def check_schema(connection: sqlite3.Connection, path: Path) -> None:
    """Refuse a database that holds other tables, or a newer layout of ours."""
    try:
        version = connection.execute("pragma user_version").fetchone()[0]
        tables = {
            row[0]
            for row in connection.execute(
                "select name from sqlite_master where type = 'table'"
            )
        }
    except sqlite3.DatabaseError as error:
        raise JournalError(
            f"{path} is not a readable journal ({error}); it was left as "
            "it is: use another journal path or move the file away",
            path=str(path),
        ) from None
    if version > SCHEMA_VERSION:
        raise JournalError(
            f"{path} was written by a newer version of comet_replicate_async "
            f"(journal schema {version}, this one knows {SCHEMA_VERSION}); "
            "upgrade comet_replicate_async to resume it",
            path=str(path),
        )
    if tables and not tables >= _TABLES:
        raise JournalError(
            f"{path} is an SQLite database but not a journal (tables: "
            f"{', '.join(sorted(tables))}); it was left as it is: use another "
            "journal path",
            path=str(path),
        )


# The columns every layout has, copied as they are when `items` is rebuilt.
_KEPT_COLUMNS = (
    "input, state, prediction_id, error, output_urls, files, updated, digest,"
    " prediction, cost, model"
)


def migrate(connection: sqlite3.Connection) -> None:
    """Bring an older journal's `items` to this layout; call inside the opening
    transaction (a crash leaves the old layout whole)."""
    present = {row[1] for row in connection.execute("pragma table_info(items)")}
    for name, kind in _ADDED_COLUMNS:
        if name not in present:
            connection.execute(f"alter table items add column {name} {kind}")
    if "idx" in present:
        # Rebuilt, not altered: `drop column` needs SQLite 3.35.
        connection.execute("alter table items rename to items_before")
        connection.execute(_ITEMS)
        connection.execute(
            f'insert into items ("index", {_KEPT_COLUMNS})'
            f" select idx, {_KEPT_COLUMNS} from items_before"
        )
        connection.execute("drop table items_before")


def unwritable(
    error: BaseException, path: Path, *, while_writing: bool = False
) -> JournalError:
    """The error for a journal file the OS or SQLite refuses to open or write."""
    reason = getattr(error, "strerror", None) or str(error)
    return JournalError(
        f"cannot write the journal {path} ({reason}); free some space or fix "
        "its permissions, then rerun the same command to resume",
        path=str(path),
        while_writing=while_writing,
    )
