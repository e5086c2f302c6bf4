"""The folder's own journal: the library's SQLite one, also recording the model.

A `batch` run without `--journal` keeps its journal in the output folder
(`journal.sqlite3`); with it, the batch is shared (`_shared_journal`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Self

from comet_replicate_async._batch_journal import JournalRecord, SqliteBatchJournal
from comet_replicate_async._exceptions import JournalInputChanged

from ._journal_costs import CostsKept

__all__ = ["FolderJournal"]


class FolderJournal(CostsKept, SqliteBatchJournal):
    """The library's SQLite journal, also recording the model of the folder's batch.

    The journal checks each input against its digest, but the model is not part
    of an input: without this, a rerun with another model would take the first
    model's images for its own.
    """

    def __init__(self, path: Path, model: str) -> None:
        super().__init__(path)
        self.model = model
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
            if recorded != self.model:
                if recorded is not None and await self.recorded():
                    raise JournalInputChanged(
                        f"the batch in {self.path.parent} runs {recorded}, not "
                        f"{self.model}; use another --out folder for another model"
                    )
                await self._store.set_meta({"model": self.model})
        except BaseException:
            await super().__aexit__(None, None, None)
            raise
        return self
