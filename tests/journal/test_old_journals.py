"""A journal that an earlier release wrote resumes with this code.

The earlier package runs for real: `git archive` extracts it at a pinned commit,
`journal_worker.py` runs a batch with it in a process of its own (SQLite file or
PostgreSQL tables of a fresh database), and that process is killed half way.
This code then resumes the journal: what ended comes back (SQLite: `resumed`;
PostgreSQL: left done), what was created is polled by its recorded id, and
nothing is created twice.
"""

from __future__ import annotations

import io
import os
import signal
import site
import sqlite3
import subprocess
import sys
import tarfile
from collections.abc import Awaitable, Callable
from contextlib import closing
from pathlib import Path

import anyio
import pytest
from journal_worker import inputs
from postgres_support import sql, with_query

from comet_replicate_async import AmbiguousSubmitError, BatchItem
from comet_replicate_async._journal.postgres.schema import (
    SCHEMA_VERSION as POSTGRES_SCHEMA_VERSION,
)
from comet_replicate_async._journal.sqlite.format import (
    SCHEMA_VERSION as SQLITE_SCHEMA_VERSION,
)
from comet_replicate_async.testing import FakeCometAPI, Latency

from helpers import FAST_RETRY, SCHNELL, session_for

pytestmark = [pytest.mark.anyio, pytest.mark.slow, pytest.mark.timeout(120)]

ROOT = Path(__file__).parents[2]
WORKER = Path(__file__).parents[1] / "journal_worker.py"
COUNT = 16
#: Without `site`: the editable install's import hook would find this
#: checkout's package before the old one.
OLD_PYTHON = [sys.executable, "-S"]

#: Releases whose journals must resume: before items recorded their model
#: (SQLite schema 1), and the layout just before the journal's renames.
RELEASES = {
    "before-models": "5b0c790",
    "before-renames": "52bc2fb",
}

States = dict[int, tuple[str, str | None]]


@pytest.fixture(scope="module", params=sorted(RELEASES))
def old_package(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """A folder holding the package as the pinned commit had it."""
    commit = RELEASES[request.param]
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", commit, "comet_replicate_async"],
        capture_output=True,
        check=False,
    )
    if archive.returncode != 0:
        # An sdist or a shallow clone has no history to take the release from.
        pytest.skip(f"no commit {commit} here: {archive.stderr.decode().strip()}")
    folder = tmp_path_factory.mktemp(f"old-{request.param}")
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(folder, filter="data")
    found = subprocess.run(
        [
            *OLD_PYTHON,
            "-c",
            "import comet_replicate_async as p; print(p.__file__)",
        ],
        env=old_environment(folder),
        cwd=folder,
        capture_output=True,
        text=True,
        check=True,
    )
    assert found.stdout.startswith(str(folder)), found.stdout
    return folder


def old_environment(folder: Path) -> dict[str, str]:
    """The old package first, then the installed dependencies."""
    path = [str(folder), *site.getsitepackages()]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(path)}


async def write_half(
    old: Path,
    fake: FakeCometAPI,
    journal: str,
    states: Callable[[], Awaitable[States]],
) -> States:
    """Run the old package's batch and kill it once the journal holds ended
    and created items; the journal's states after the kill."""
    command = [
        *OLD_PYTHON,
        str(WORKER),
        fake.base_url,
        fake.api_key,
        journal,
        str(COUNT),
    ]
    async with await anyio.open_process(command, env=old_environment(old)) as worker:
        with anyio.fail_after(60):
            # Polled: the condition lives in another process's journal.
            while True:
                seen = {state for state, _ in (await states()).values()}
                if "succeeded" in seen and "created" in seen:
                    break
                await anyio.sleep(0.02)
        worker.send_signal(signal.SIGKILL)
        await worker.wait()
    assert worker.returncode == -signal.SIGKILL
    return await states()


def assert_paid_once(fake: FakeCometAPI, items: list[BatchItem]) -> None:
    assert fake.stats.duplicates == 0
    ambiguous = [item for item in items if isinstance(item.error, AmbiguousSubmitError)]
    assert all(item.ok for item in items if item not in ambiguous)
    # Every input was created once, but for those whose create was in flight at
    # the kill: they may exist, and are not paid for again.
    assert fake.stats.created == COUNT - len(ambiguous) + sum(
        1
        for item in ambiguous
        if any(p.input == item.input for p in fake.predictions.values())
    )


async def test_an_sqlite_journal_of_an_earlier_release_resumes(
    old_package: Path, tmp_path: Path
) -> None:
    path = tmp_path / "batch.sqlite3"

    async def states() -> States:
        if not path.exists():
            return {}
        with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as reader:
            reader.row_factory = sqlite3.Row
            try:
                rows = reader.execute("select * from items").fetchall()
            except sqlite3.OperationalError:  # the schema is not there yet
                return {}
            # Before the rename the index was `idx`; after, `"index"`.
            columns = rows[0].keys() if rows else []  # `in` on a Row reads values
            index = "idx" if "idx" in columns else "index"
            return {row[index]: (row["state"], row["prediction_id"]) for row in rows}

    async with FakeCometAPI(default_latency=Latency.uniform(0.3, 1.2)) as fake:
        before = await write_half(old_package, fake, str(path), states)
        async with session_for(fake, retry=FAST_RETRY) as session:
            items = await session.gather(SCHNELL, inputs(COUNT), journal=path)

    assert [item.index for item in items] == list(range(COUNT))
    for index, (state, prediction_id) in before.items():
        item = items[index]
        if state == "succeeded":
            assert item.resumed
            assert item.ok
        if state == "created":
            assert not item.resumed
            assert item.ok
            assert item.prediction is not None
            assert item.prediction.id == prediction_id
    assert_paid_once(fake, items)
    after = await states()
    assert {state for state, _ in after.values()} <= {"succeeded", "ambiguous"}
    with closing(sqlite3.connect(path)) as connection:
        version = connection.execute("pragma user_version").fetchone()[0]
        columns = {row[1] for row in connection.execute("pragma table_info(items)")}
    assert version == SQLITE_SCHEMA_VERSION
    assert "index" in columns
    assert not columns & {"idx", "line", "key"}


async def test_a_postgres_journal_of_an_earlier_release_resumes(
    old_package: Path, postgres_url: str
) -> None:
    # A short lease: the new run takes over the killed worker's claims soon.
    journal = with_query(postgres_url, batch="old", lease="1")

    async def states() -> States:
        try:
            # Before the rename the index was `position`; after, `"index"`.
            rows = await sql(
                postgres_url,
                "select coalesce(j->>'index', j->>'position')::int, j->>'state',"
                " j->>'prediction_id' from comet_replicate.items i,"
                " to_jsonb(i) j where i.batch = 'old'",
            )
        except Exception as error:  # the schema is not there yet
            if "does not exist" in str(error):
                return {}
            raise
        return {position: (state, id) for position, state, id in rows}

    async with FakeCometAPI(default_latency=Latency.uniform(0.3, 1.2)) as fake:
        before = await write_half(old_package, fake, journal, states)
        yielded_before = fake.stats.created
        async with session_for(fake, retry=FAST_RETRY) as session:
            items = await session.gather(SCHNELL, inputs(COUNT), journal=journal)
        after = await states()

    ended = {index for index, (state, _) in before.items() if state == "succeeded"}
    # A shared journal's run yields the items left to do; the ended ones stay done.
    assert ended
    assert {item.index for item in items} == set(range(COUNT)) - ended
    by_index = {item.index: item for item in items}
    for index, (state, prediction_id) in before.items():
        if state == "created":
            item = by_index[index]
            assert item.ok  # polled by its recorded id, not created again
            assert item.prediction is not None
            assert item.prediction.id == prediction_id
    assert yielded_before < COUNT
    assert fake.stats.duplicates == 0
    ambiguous = [item for item in items if isinstance(item.error, AmbiguousSubmitError)]
    assert all(item.ok for item in items if item not in ambiguous)
    assert fake.stats.created <= COUNT
    assert fake.stats.created >= COUNT - len(ambiguous)
    assert len(after) == COUNT
    assert {state for state, _ in after.values()} <= {"succeeded", "ambiguous"}
    [(version,)] = await sql(postgres_url, "select version from comet_replicate.schema")
    assert version == POSTGRES_SCHEMA_VERSION
