"""The shared journal's schema in PostgreSQL, and how a database gets to it.

All tables live in the `comet_replicate` schema. `comet_replicate.schema` holds
one row, the version the database is at. To change the schema, append a
migration to `_MIGRATIONS`, which takes a database from the previous version to
the next; never edit one that has shipped, since databases out there have run
it. Workers that open a database run the missing migrations in order, in one
transaction, one worker at a time; a database newer than the client is refused.
"""

from __future__ import annotations

from typing import Any

import psycopg

from comet_replicate_async._exceptions import ConfigurationError

__all__ = ["SCHEMA_VERSION", "migrate"]

# Entry N takes a database from version N to N + 1.
_MIGRATIONS: tuple[str, ...] = (
    """
    create table comet_replicate.items (
        batch text not null,
        position bigint not null,
        digest text not null,
        input jsonb not null,
        state text not null default 'queued',
        prediction_id text,
        outcome jsonb,
        worker text,
        created_by text,
        claims integer not null default 0,
        updated_at timestamptz not null default clock_timestamp(),
        primary key (batch, position)
    );
    create index items_open on comet_replicate.items (batch, position)
        where state in ('queued', 'pending', 'created');
    create table comet_replicate.workers (
        batch text not null,
        worker text not null,
        host text not null,
        pid integer not null,
        started_at timestamptz not null default clock_timestamp(),
        lease_until timestamptz not null,
        primary key (batch, worker)
    );
    create table comet_replicate.create_budgets (
        name text primary key,
        per_second double precision not null,
        burst double precision not null,
        tokens double precision not null,
        refilled_at timestamptz not null
    );
    """,
    # What a batch was started with (the CLI's prompt file and model), so that
    # a worker started with another file is refused before any create.
    """
    create table comet_replicate.batches (
        batch text primary key,
        meta jsonb not null,
        created_at timestamptz not null default clock_timestamp()
    );
    """,
    # Each item's model: one batch may run its inputs on several models. Items
    # recorded before keep null (their batch had one model, in its meta).
    """
    alter table comet_replicate.items add column model text;
    """,
    # One name per concept: the shared create pacing is a rate, not money; an
    # item's place in the batch is its index (the primary key and `items_open`
    # follow the column).
    """
    alter table comet_replicate.create_budgets rename to create_rates;
    alter table comet_replicate.items rename column position to "index";
    """,
)
SCHEMA_VERSION = len(_MIGRATIONS)
# Any constant works; it only has to be the same for every worker.
_MIGRATION_LOCK = 0x636F6D6574


async def migrate(connection: psycopg.AsyncConnection[Any]) -> None:
    """Bring the database to `SCHEMA_VERSION`, creating it on first use."""
    async with connection.transaction():
        # Two workers opening a fresh database at once: one creates, one waits.
        await connection.execute("select pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
        await connection.execute("create schema if not exists comet_replicate")
        await connection.execute(
            "create table if not exists comet_replicate.schema"
            " (version integer not null)"
        )
        cursor = await connection.execute("select version from comet_replicate.schema")
        row = await cursor.fetchone()
        version = 0 if row is None else int(row[0])
        if version > SCHEMA_VERSION:
            raise ConfigurationError(
                f"the journal's schema is version {version}, newer than this "
                f"client's {SCHEMA_VERSION}: upgrade comet-replicate-async"
            )
        for migration in _MIGRATIONS[version:]:
            await connection.execute(migration)
        if row is None:
            await connection.execute(
                "insert into comet_replicate.schema values (%s)", (SCHEMA_VERSION,)
            )
        elif version < SCHEMA_VERSION:
            await connection.execute(
                "update comet_replicate.schema set version = %s", (SCHEMA_VERSION,)
            )
