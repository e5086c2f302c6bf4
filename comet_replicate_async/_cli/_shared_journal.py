"""The PostgreSQL journal of a batch that CLI workers on many machines share.

The library's journal checks each input and its model against the ones
recorded at its position, but not the `-i` options as a whole, or a prompt file
cut short. So the first worker describes the batch (its models, and a digest of
all its inputs); a worker started with anything else is refused before any
create.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import psycopg

from comet_replicate_async._exceptions import JournalInputChanged
from comet_replicate_async._journal.base import input_digest
from comet_replicate_async._journal.postgres.store import PostgresJournal
from comet_replicate_async._journal.shared import split_journal_url

from ._errors import CliError
from ._journal_costs import CostsKept
from ._prompts import PromptFile

__all__ = ["PromptFileJournal"]


class PromptFileJournal(CostsKept, PostgresJournal):
    """A shared journal that only workers with the same prompts and model join."""

    def __init__(self, url: str, prompts: PromptFile, models: Sequence[str]) -> None:
        libpq, batch, lease = split_journal_url(url)
        super().__init__(libpq, batch=batch, lease=lease)
        digest = hashlib.sha256()
        for item in prompts.items:
            digest.update(input_digest(item.input).encode())
        self.meta: dict[str, Any] = {
            # One model's name, as a batch of one model always recorded; with
            # several, their names in order of first use.
            "model": ", ".join(dict.fromkeys(models)),
            "prompts": len(prompts.items),
            "inputs": digest.hexdigest(),
            "file": prompts.name,
        }
        #: What each input this worker sent cost, as the session records it.
        self.costs: dict[int, float] = {}

    async def __aenter__(self) -> PromptFileJournal:
        try:
            await super().__aenter__()
        except psycopg.Error as error:  # its message names the host, not a password
            raise CliError(
                f"cannot open the journal: {error}; check the --journal URL and "
                "the database; nothing was sent"
            ) from error
        try:
            mine = self.meta
            was = await self.describe(mine)
            if (was.get("model"), was.get("inputs")) != (mine["model"], mine["inputs"]):
                raise JournalInputChanged(
                    f"{mine['file']} ({mine['prompts']} prompts for {mine['model']})"
                    f" is not what batch {self.batch!r} was started with"
                    f" ({was.get('prompts')} prompts for {was.get('model')}, from"
                    f" {was.get('file')}); every worker of a batch runs the same "
                    "prompt file, model and -i options. Use another batch= name in "
                    "the URL for another batch"
                )
        except BaseException:
            await super().__aexit__(None, None, None)
            raise
        return self
