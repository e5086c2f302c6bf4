"""The SQLite journal file: one run at a time, writes batched off the event loop.

A batch's records (what they mean is `store.py`'s business) live in an
SQLite file. One process at a time drives a journal: it holds an OS lock on a
file beside it, which the OS releases however the process ends (a SIGKILL
included), so a killed run's journal is taken over by the next one without
clean-up. Writes go to one writer task that commits them in batches in a worker
thread, so the event loop never waits on the disk; a caller that needs its write
durable (pending, created) awaits the commit that contains it. Every commit is
one transaction, so a crash at any moment leaves the last commit readable.

A file that is not ours, or that a newer version wrote, is refused before
anything is written to it (see `_journal_file`).
"""

from __future__ import annotations

import datetime
import fcntl
import os
import socket
import sqlite3
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import anyio
import attrs
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from comet_replicate_async._exceptions import JournalError, JournalInUse

from .format import (
    SCHEMA,
    SCHEMA_VERSION,
    check_header,
    check_schema,
    migrate,
    unwritable,
)

__all__ = ["JournalFile", "JournalInUse"]


@attrs.frozen
class _Write:
    sql: str
    params: tuple[Any, ...]
    committed: anyio.Event | None


class JournalFile:
    """One batch's journal file; use as `async with JournalFile(path) as journal:`."""

    def __init__(self, path: Path, *, batch_window: float = 0.02) -> None:
        self.path = path
        self._batch_window = batch_window
        self._connection: sqlite3.Connection | None = None
        self._send: MemoryObjectSendStream[_Write] | None = None
        self._task_group: anyio.abc.TaskGroup | None = None
        # One thread at a time touches the connection.
        self._thread = anyio.CapacityLimiter(1)
        self._lock: int | None = None
        # The first failed commit: every later write raises it (see _write_all).
        self._failure: JournalError | None = None

    async def __aenter__(self) -> JournalFile:
        self._connection = await anyio.to_thread.run_sync(
            self._open, limiter=self._thread
        )
        send, receive = anyio.create_memory_object_stream[_Write](10_000)
        self._send = send
        self._task_group = anyio.create_task_group()
        await self._task_group.__aenter__()
        self._task_group.start_soon(self._writer, receive)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        # Closing the queue lets the writer commit everything accepted, then end.
        assert self._send is not None
        assert self._task_group is not None
        self._send.close()
        await self._task_group.__aexit__(None, None, None)
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(self._close, limiter=self._thread)
        if self._failure is not None and exc_info[0] is None:
            raise self._failure  # a write nobody awaited was lost: say so

    def _open(self) -> sqlite3.Connection:
        self._take_lock()
        try:
            return self._connect()
        except BaseException:
            self._release_lock()
            raise

    def _take_lock(self) -> None:
        """Lock the journal for this process, or say who holds it."""
        path = self.path.with_name(self.path.name + ".lock")
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as error:
            raise unwritable(error, path) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 1024, 0).decode(errors="replace").strip()
            os.close(fd)
            raise JournalInUse(
                f"{self.path.parent} is in use by {holder or 'another process'}; "
                "wait for that run to end, or use another journal"
            ) from None
        since = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
        os.ftruncate(fd, 0)
        os.pwrite(
            fd, f"pid {os.getpid()} on {socket.gethostname()} since {since}".encode(), 0
        )
        self._lock = fd

    def _release_lock(self) -> None:
        if self._lock is not None:
            os.close(self._lock)  # closing the descriptor drops the lock
            self._lock = None

    def _connect(self) -> sqlite3.Connection:
        check_header(self.path)
        try:
            connection = sqlite3.connect(
                self.path, check_same_thread=False, isolation_level=None
            )
        except sqlite3.Error as error:
            raise unwritable(error, self.path) from None
        try:
            check_schema(connection, self.path)
            connection.execute("pragma journal_mode=wal")
            # With WAL, NORMAL survives a killed process (not a power cut) at a
            # fraction of the cost of a full sync per commit.
            connection.execute("pragma synchronous=normal")
            # One transaction: a crash here leaves no half-made journal.
            with connection:
                connection.execute("begin")
                for statement in SCHEMA:
                    connection.execute(statement)
                migrate(connection)
                connection.execute(f"pragma user_version = {SCHEMA_VERSION}")
        except BaseException as error:
            connection.close()
            if isinstance(error, sqlite3.Error):
                raise unwritable(error, self.path) from None
            raise
        return connection

    def _close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None
        self._release_lock()

    # Reading (at startup, before the batch runs)

    async def meta(self) -> dict[str, str]:
        """Settings recorded beside the items (the command line keeps its model)."""
        rows = await self.query("select key, value from meta")
        return dict(rows)

    async def query(
        self, sql: str, params: tuple[Any, ...] = ()
    ) -> list[tuple[Any, ...]]:
        def run() -> list[tuple[Any, ...]]:
            assert self._connection is not None
            return self._connection.execute(sql, params).fetchall()

        return await anyio.to_thread.run_sync(run, limiter=self._thread)

    # Writing

    async def set_meta(self, values: Mapping[str, str]) -> None:
        """Record the batch's settings, durably."""
        for key, value in values.items():
            await self.write(
                "insert into meta (key, value) values (?, ?)"
                " on conflict(key) do update set value = excluded.value",
                (key, value),
                durable=True,
            )

    async def write(self, sql: str, params: tuple[Any, ...], *, durable: bool) -> None:
        assert self._send is not None
        if self._failure is not None:
            raise self._failure
        committed = anyio.Event() if durable else None
        await self._send.send(_Write(sql, params, committed))
        if committed is not None:
            await committed.wait()
            if self._failure is not None:
                raise self._failure

    async def _writer(self, receive: MemoryObjectReceiveStream[_Write]) -> None:
        # Shielded: it ends once the queue is closed and drained, so a write
        # accepted while the batch was being cancelled is still committed.
        with anyio.CancelScope(shield=True):
            await self._write_all(receive)

    async def _write_all(self, receive: MemoryObjectReceiveStream[_Write]) -> None:
        async with receive:
            async for first in receive:
                # Gather what arrives within the window: one commit for all of it.
                batch = [first]
                with anyio.move_on_after(self._batch_window):
                    async for write in receive:
                        batch.append(write)
                        if len(batch) >= 500:
                            break
                if self._failure is None:
                    try:
                        await anyio.to_thread.run_sync(
                            self._commit, batch, limiter=self._thread
                        )
                    except JournalError as error:
                        # Kept for the writers, not raised here: the caller of
                        # each write gets it, not a task group around the writer.
                        self._failure = error
                for write in batch:
                    if write.committed is not None:
                        write.committed.set()

    def _commit(self, batch: list[_Write]) -> None:
        assert self._connection is not None
        # One transaction: all of the batch is on disk, or none of it.
        try:
            with self._connection:
                self._connection.execute("begin")
                for write in batch:
                    self._connection.execute(write.sql, write.params)
        except (sqlite3.OperationalError, OSError) as error:
            # A full disk, a read-only file: say which file, not a driver trace.
            raise unwritable(error, self.path, while_writing=True) from error
