"""A throwaway PostgreSQL server for the whole test session.

The server comes from the `pgserver` wheel (PostgreSQL's own binaries, no system
package): a fresh cluster in a temporary folder of its own, listening on a unix socket in
that folder only (no TCP port), trusted local logins, deleted at the end. As
root it runs the server as a dedicated `pgserver` user, since PostgreSQL refuses
to run as root. `COMET_TEST_POSTGRES_URL` points the tests at another server
instead. In CI (`CI` set) a server that cannot start fails the run; elsewhere
the tests that need it are skipped with the reason.
"""

from __future__ import annotations

import os
import tempfile
import time
import urllib.parse
import uuid
import warnings
from collections.abc import AsyncIterator, Iterator

import psycopg
import pytest
from psycopg import sql


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """The URL of the session's PostgreSQL server (its `postgres` database)."""
    url = os.environ.get("COMET_TEST_POSTGRES_URL")
    if url:
        yield url
        return
    started = time.monotonic()
    try:
        # pgserver's platformdirs warns at import when XDG_RUNTIME_DIR is unset
        # (as under root in CI); the fallback it picks is fine here.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from pgserver.postgres_server import get_server

            # Not under pytest's temporary folder: another pytest run on the
            # machine may prune it while this server still runs there.
            folder = tempfile.mkdtemp(prefix="comet-replicate-postgres-")
            server = get_server(folder, cleanup_mode="delete")
    except Exception as error:
        reason = f"no PostgreSQL server for the tests: {type(error).__name__}: {error}"
        if os.environ.get("CI"):
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    print(f"PostgreSQL started in {time.monotonic() - started:.2f} s")
    try:
        yield server.get_uri()
    finally:
        server.cleanup()


@pytest.fixture
async def postgres_url(postgres_server: str) -> AsyncIterator[str]:
    """A fresh database of its own for one test, dropped afterwards."""
    name = f"test_{uuid.uuid4().hex[:12]}"
    async with await psycopg.AsyncConnection.connect(
        postgres_server, autocommit=True
    ) as admin:
        await admin.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
        try:
            yield with_database(postgres_server, name)
        finally:
            await admin.execute(
                sql.SQL("drop database {} with (force)").format(sql.Identifier(name))
            )


def with_database(url: str, name: str) -> str:
    """The same server's URL for database `name`."""
    return urllib.parse.urlsplit(url)._replace(path=f"/{name}").geturl()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Every test that uses the server is marked, so `-m "not postgres"` runs the
    # suite where pgserver cannot (Python 3.13) without naming files.
    for item in items:
        if "postgres_server" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.postgres)
