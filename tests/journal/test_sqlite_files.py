"""Journal files that are not ours, too new, or that cannot be written."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from comet_replicate_async import JournalError
from comet_replicate_async._journal.sqlite.format import SCHEMA_VERSION
from comet_replicate_async._journal.sqlite.store import SqliteJournal

from helpers import newer_journal

pytestmark = pytest.mark.anyio


def _foreign_database(path: Path) -> None:
    with closing(sqlite3.connect(path)) as connection:
        connection.execute("create table users (name text)")
        connection.execute("insert into users values ('ada')")
        connection.commit()


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda path: path.write_bytes(b"not a database\n" * 100), "not an SQLite"),
        (_foreign_database, r"not a journal \(tables: users\)"),
        (newer_journal, "written by a newer version"),
    ],
    ids=["not-sqlite", "foreign-tables", "newer-schema"],
)
async def test_a_file_that_is_not_our_journal_is_refused_and_left_as_it_is(
    tmp_path: Path, make: object, message: str
) -> None:
    path = tmp_path / "journal.sqlite3"
    make(path)  # type: ignore[operator]
    before = path.read_bytes()

    with pytest.raises(JournalError, match=message) as refused:
        async with SqliteJournal(path):
            pass

    assert refused.value.path == str(path)
    assert str(path) in str(refused.value)
    assert not refused.value.while_writing
    assert path.read_bytes() == before


async def test_a_new_journal_records_its_schema_version(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite3"
    async with SqliteJournal(path) as journal:
        await journal.pending(0, "d" * 64)
    async with SqliteJournal(path) as journal:  # ours: opened again
        assert list(await journal.recorded()) == [0]

    with closing(sqlite3.connect(path)) as connection:
        version = connection.execute("pragma user_version").fetchone()[0]
    assert version == SCHEMA_VERSION


async def test_a_full_journal_raises_a_typed_error_naming_the_file(
    tmp_path: Path,
) -> None:
    path = tmp_path / "journal.sqlite3"
    written = 0

    async def fill() -> None:
        nonlocal written
        async with SqliteJournal(path) as journal:
            # SQLite's own page cap: the database is full as on a full disk.
            await journal._store.query("pragma max_page_count = 1")
            for position in range(10_000):
                await journal.pending(position, "d" * 64)
                written += 1

    with pytest.raises(JournalError, match="cannot write the journal") as full:
        await fill()

    assert full.value.while_writing
    assert str(path) in str(full.value)
    assert "rerun" in str(full.value)
    assert written > 0
    # What was committed before the disk filled is still readable.
    with closing(sqlite3.connect(path)) as connection:
        rows = connection.execute("select count(*) from items").fetchone()[0]
    assert rows == written
