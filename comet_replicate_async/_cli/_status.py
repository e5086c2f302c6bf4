"""`comet-replicate status`: a journal's progress, read while the batch runs.

A `postgresql://` journal shows the whole shared batch, by state and per
worker; an SQLite journal file (a library journal, or a batch folder's
`journal.sqlite3`) shows its counts by state.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from contextlib import closing
from pathlib import Path

import anyio
import click

from comet_replicate_async._journal.shared import BatchStatus

from ._errors import CliError

__all__ = ["status"]


@click.command()
@click.option(
    "--journal",
    required=True,
    metavar="URL_OR_PATH",
    help="postgresql://...?batch=NAME, or an SQLite journal file.",
)
def status(journal: str) -> None:
    """Print a batch's progress: counts by state, and per worker."""
    if journal.startswith(("postgresql://", "postgres://")):
        click.echo(_shared_lines(anyio.run(_read_shared, journal)), nl=False)
    else:
        click.echo(_counts_line(_sqlite_counts(Path(journal))))


async def _read_shared(url: str) -> BatchStatus:
    try:
        from comet_replicate_async._journal.postgres.status import batch_status
    except ImportError as error:
        raise CliError(str(error)) from error
    try:
        return await batch_status(url)
    except Exception as error:  # the driver's errors name the host, never the password
        raise CliError(
            f"cannot read the journal: {error}; check the URL and the database"
        ) from error


def _shared_lines(status: BatchStatus) -> str:
    lines = [
        f"batch {status.batch}: {status.finished}/{status.total} ended",
        f"  {_counts_line(status.states)}",
    ]
    for worker in status.workers:
        alive = "alive" if worker.alive else "lease expired"
        lines.append(
            f"  {worker.worker} ({worker.host}, pid {worker.pid}, {alive}):"
            f" {_counts_line(worker.states)}"
        )
    return "\n".join(lines) + "\n"


def _counts_line(states: Mapping[str, int]) -> str:
    if not states:
        return "no items"
    return ", ".join(f"{state} {count}" for state, count in sorted(states.items()))


def _sqlite_counts(path: Path) -> dict[str, int]:
    if not path.is_file():
        raise CliError(f"no journal file at {path}; give the journal's path or URL")
    # Read-only: a running batch holds the file's lock, and is not disturbed.
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as reader:
        rows = reader.execute("select state, count(*) from items group by state")
        return dict(rows)
