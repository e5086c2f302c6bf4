"""A shared (PostgreSQL) batch records each item's model, and migrates to it."""

from __future__ import annotations

import pytest
from postgres_support import sql, with_query

from comet_replicate_async import JournalInputChanged
from comet_replicate_async._journal.postgres import schema as _journal_postgres_schema
from comet_replicate_async._journal.postgres.store import (
    SCHEMA_VERSION,
    PostgresJournal,
    input_digest,
)
from comet_replicate_async.testing import FakeCometAPI, Latency

from helpers import MODELS, SCHNELL, mixed, session_for

#: The schema version before items kept their model (its first two migrations).
BEFORE_MODELS = 2

pytestmark = pytest.mark.anyio

DEV = "black-forest-labs/flux-dev"


async def test_a_shared_mixed_batch_records_each_items_model(
    postgres_url: str,
) -> None:
    journal = with_query(postgres_url, batch="mixed")
    async with FakeCometAPI(default_latency=Latency.constant(0.01)) as fake:
        async with session_for(fake, max_concurrency=3) as session:
            items = await session.gather(mixed(2), journal=journal)

    assert [item.model for item in items] == [kind.model for kind in MODELS] * 2
    assert all(item.ok for item in items)
    assert fake.stats.created == 6
    rows = await sql(postgres_url, 'select "index", model from comet_replicate.items')
    assert sorted(rows) == [(item.index, item.model) for item in items]


async def test_the_same_input_on_another_model_is_refused(postgres_url: str) -> None:
    boat = {"prompt": "a boat"}
    async with PostgresJournal(postgres_url, batch="b") as journal:
        await journal.record([(0, boat, SCHNELL)])
        with pytest.raises(JournalInputChanged, match="another input or model"):
            await journal.record([(0, boat, DEV)])
        assert await journal.record([(0, boat, SCHNELL), (1, boat, DEV)]) == 1
        claims = await journal.claim(2)

    assert [(claim.index, claim.model) for claim in claims] == [
        (0, SCHNELL),
        (1, DEV),
    ]


async def test_a_database_of_the_last_schema_migrates_and_resumes(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The schema as the code before models were kept left it, with one item.
    before = _journal_postgres_schema._MIGRATIONS[:BEFORE_MODELS]
    with monkeypatch.context() as patch:
        patch.setattr(_journal_postgres_schema, "_MIGRATIONS", before)
        patch.setattr(_journal_postgres_schema, "SCHEMA_VERSION", len(before))
        async with PostgresJournal(postgres_url, batch="b") as journal:
            assert await journal.schema_version() == BEFORE_MODELS
    boat = {"prompt": "a boat"}
    await sql(
        postgres_url,
        "insert into comet_replicate.items (batch, position, digest, input)"
        f" values ('b', 0, '{input_digest(boat)}', '{{\"prompt\": \"a boat\"}}')",
    )

    async with PostgresJournal(postgres_url, batch="b") as journal:
        assert await journal.schema_version() == SCHEMA_VERSION
        # The old item has no model to compare: the same input is accepted.
        assert await journal.record([(0, boat, SCHNELL), (1, boat, DEV)]) == 1
        claims = await journal.claim(2)
        records = await journal.recorded()

    assert [(claim.index, claim.model) for claim in claims] == [(0, None), (1, DEV)]
    assert records[0].model is None
    assert records[1].model == DEV


async def test_an_old_item_resumes_in_a_batch_with_a_model(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = _journal_postgres_schema._MIGRATIONS[:BEFORE_MODELS]
    with monkeypatch.context() as patch:
        patch.setattr(_journal_postgres_schema, "_MIGRATIONS", before)
        patch.setattr(_journal_postgres_schema, "SCHEMA_VERSION", len(before))
        async with PostgresJournal(postgres_url, batch="old"):
            pass
    boat = {"prompt": "a boat"}
    await sql(
        postgres_url,
        "insert into comet_replicate.items (batch, position, digest, input)"
        f" values ('old', 0, '{input_digest(boat)}', '{{\"prompt\": \"a boat\"}}')",
    )

    journal = with_query(postgres_url, batch="old")
    async with FakeCometAPI(default_latency=Latency.constant(0.01)) as fake:
        async with session_for(fake) as session:
            items = await session.gather(
                SCHNELL, [boat, {"prompt": "a ship"}], journal=journal
            )

    assert [(item.index, item.model, item.ok) for item in items] == [
        (0, SCHNELL, True),
        (1, SCHNELL, True),
    ]
    assert fake.stats.created == 2
