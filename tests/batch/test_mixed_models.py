"""Batches whose typed inputs name different models: one window, one journal."""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import closing
from pathlib import Path

import pytest

from comet_replicate_async import (
    FluxSchnell,
    InputValidationError,
    JournalInputChanged,
)
from comet_replicate_async._journal.base import input_digest, prediction_record
from comet_replicate_async._journal.sqlite.format import SCHEMA_VERSION
from comet_replicate_async._journal.sqlite.store import SqliteJournal
from comet_replicate_async.testing import FakeCometAPI, Latency

from helpers import MODELS, SCHNELL, mixed, session_for

pytestmark = pytest.mark.anyio

# The items table as the first journal layout (schema 1) made it, with the
# cost column that opening added before models were recorded.
OLD_DDL = """
create table meta (key text primary key, value text not null);
create table items (
    key text primary key,
    idx integer not null,
    line integer not null,
    input text not null,
    state text not null,
    prediction_id text,
    error text,
    output_urls text,
    files text,
    updated real not null,
    digest text,
    prediction text,
    cost real
);
pragma user_version = 1;
"""


@pytest.fixture
async def fake() -> AsyncIterator[FakeCometAPI]:
    async with FakeCometAPI(default_latency=Latency.uniform(0.02, 0.08)) as server:
        yield server


async def test_a_batch_of_three_typed_classes_runs_under_one_window(
    fake: FakeCometAPI,
) -> None:
    inputs = mixed(6)
    async with session_for(fake, max_concurrency=3) as session:
        items = [item async for item in session.as_completed(inputs)]

    assert sorted(item.index for item in items) == list(range(18))
    assert all(item.ok for item in items)
    for item in items:
        assert item.model == inputs[item.index].model
        assert item.prediction is not None
        assert item.prediction.model == item.model
    assert Counter(item.model for item in items) == {kind.model: 6 for kind in MODELS}
    # One window for every model: never more than 3 running at the server.
    assert 1 <= fake.stats.peak_in_flight <= 3
    assert fake.stats.created == 18
    assert fake.stats.duplicates == 0


async def test_gather_without_a_model_keeps_input_order(fake: FakeCometAPI) -> None:
    inputs = mixed(2)
    async with session_for(fake) as session:
        items = await session.gather(inputs)

    assert [item.model for item in items] == [kind.model for kind in MODELS] * 2
    assert [item.input for item in items] == inputs


async def test_a_dict_in_a_batch_without_a_model_is_refused_unsent(
    fake: FakeCometAPI,
) -> None:
    async with session_for(fake) as session:
        items = await session.gather([FluxSchnell("a fox"), {"prompt": "a fox"}])  # type: ignore[list-item]

    assert items[0].ok
    assert isinstance(items[1].error, InputValidationError)
    assert "typed inputs" in str(items[1].error)
    assert items[1].model == ""
    assert fake.stats.created == 1


async def test_a_batch_with_a_model_says_it_on_every_item(fake: FakeCometAPI) -> None:
    async with session_for(fake) as session:
        items = await session.gather(SCHNELL, [{"prompt": "a"}, {"prompt": "b"}])

    assert [item.model for item in items] == [SCHNELL, SCHNELL]


async def test_model_and_inputs_are_both_needed_as_before(fake: FakeCometAPI) -> None:
    async with session_for(fake) as session:
        with pytest.raises(TypeError, match="no inputs"):
            session.as_completed(SCHNELL)  # type: ignore[call-overload]

    assert fake.stats.created == 0


async def test_a_mixed_journal_resumes_each_item_on_its_model(
    fake: FakeCometAPI, tmp_path: Path
) -> None:
    journal = tmp_path / "batch.sqlite3"
    async with session_for(fake) as session:
        first = await session.gather(mixed(2), journal=journal)
    async with session_for(fake) as session:
        again = await session.gather(mixed(2), journal=journal)
        requests = session.stats.requests

    assert requests == 0
    assert all(item.resumed for item in again)
    assert [item.model for item in again] == [item.model for item in first]
    with closing(sqlite3.connect(journal)) as connection:
        models = dict(connection.execute('select "index", model from items'))
    assert [models[index] for index in range(6)] == [item.model for item in first]
    assert fake.stats.created == 6


async def test_the_same_prompt_on_another_model_is_another_item(
    fake: FakeCometAPI, tmp_path: Path
) -> None:
    journal = tmp_path / "batch.sqlite3"
    async with session_for(fake) as session:
        await session.gather(mixed(1), journal=journal)
    changed = mixed(1)
    changed[1] = FluxSchnell(changed[1].prompt)  # the FluxDev prompt, on schnell

    async with session_for(fake) as session:
        with pytest.raises(JournalInputChanged, match="input 1 runs on"):
            await session.gather(changed, journal=journal)
        requests = session.stats.requests

    assert requests == 0
    assert fake.stats.created == 3


async def test_a_journal_of_the_first_layout_opens_and_resumes(
    fake: FakeCometAPI, tmp_path: Path
) -> None:
    journal = tmp_path / "batch.sqlite3"
    prompts = [{"prompt": "an old lighthouse"}, {"prompt": "a new lighthouse"}]
    async with session_for(fake) as session:
        (done,) = await session.gather(SCHNELL, prompts[:1])
    assert done.prediction is not None
    # As the code before models were recorded left it: input 0 succeeded.
    record = prediction_record(done.prediction)
    with closing(sqlite3.connect(journal)) as connection:
        connection.executescript(OLD_DDL)
        with connection:
            connection.execute(
                "insert into items (key, idx, line, input, state, prediction_id,"
                " updated, digest, prediction) values"
                " ('0', 0, 0, '{}', 'succeeded', ?, 0, ?, ?)",
                (done.prediction.id, input_digest(prompts[0]), json.dumps(record)),
            )

    async with session_for(fake) as session:
        items = await session.gather(SCHNELL, prompts, journal=journal)

    assert items[0].resumed
    assert items[0].ok
    assert items[0].model == SCHNELL
    assert not items[1].resumed
    assert items[1].ok
    assert items[1].model == SCHNELL
    assert fake.stats.created == 2  # the one before, and the new input
    with closing(sqlite3.connect(journal)) as connection:
        version = connection.execute("pragma user_version").fetchone()[0]
        models = dict(connection.execute('select "index", model from items'))
    assert version == SCHEMA_VERSION
    assert models == {0: None, 1: SCHNELL}  # an old record keeps no model


class EarlierStore(SqliteJournal):
    """A custom store written before `pending` took the model."""

    async def pending(  # type: ignore[override]
        self, position: int, digest: str, *, cost: float | None = None
    ) -> None:
        await super().pending(position, digest, cost=cost)


async def test_a_store_written_before_models_still_runs_a_batch(
    fake: FakeCometAPI, tmp_path: Path
) -> None:
    store = EarlierStore(tmp_path / "batch.sqlite3")
    async with session_for(fake) as session:
        items = await session.gather(mixed(1), journal=store)
        again = await session.gather(mixed(1), journal=store)

    assert all(item.ok for item in items)
    assert all(item.resumed for item in again)
    assert [item.model for item in again] == [kind.model for kind in MODELS]
    assert fake.stats.created == 3
