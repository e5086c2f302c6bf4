"""The folder's own journal: the library's SQLite one, which records each
item's model, and checks a folder from before it did against the one model it
recorded for the batch.

A `batch` run without `--journal` keeps its journal in the output folder
(`journal.sqlite3`); with it, the batch is shared (`_shared_journal`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Self

from comet_replicate_async._exceptions import JournalInputChanged
from comet_replicate_async._journal.base import JournalRecord
from comet_replicate_async._journal.sqlite.store import SqliteJournal

from ._journal_costs import CostsKept

__all__ = ["FolderJournal"]


class FolderJournal(CostsKept, SqliteJournal):
    """The library's SQLite journal of the folder's batch, whose items run on
    `models` (one per item, by position).

    The journal checks each input against its digest and recorded model. A
    folder written before items recorded their model kept the batch's one
    model beside them: its items are checked against that, or a rerun with
    another model would take the first model's images for its own.
    """

    def __init__(self, path: Path, models: Sequence[str]) -> None:
        super().__init__(path)
        self.models = tuple(models)
        #: What each input's create cost (all runs), as the session records it.
        self.costs: dict[int, float] = {}

    async def recorded(self) -> dict[int, JournalRecord]:
        records = await super().recorded()
        self.costs.update(
            (position, record.cost)
            for position, record in records.items()
            if record.cost is not None
        )
        return records

    async def __aenter__(self) -> Self:
        await super().__aenter__()
        try:
            recorded = (await self._store.meta()).get("model")
            if recorded is not None:
                for position, record in (await self.recorded()).items():
                    model = self._model_at(position)
                    if record.model is None and model not in (None, recorded):
                        raise JournalInputChanged(
                            f"the batch in {self.path.parent} runs {recorded}, not "
                            f"{model}; use another --out folder for another model"
                        )
        except BaseException:
            await super().__aexit__(None, None, None)
            raise
        return self

    def _model_at(self, position: int) -> str | None:
        return self.models[position] if position < len(self.models) else None
