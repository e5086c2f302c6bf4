"""`batch --journal postgresql://...`: one worker's part of a batch many share.

Every worker runs the same prompt file against the same journal URL, each with
its own `--out`: it saves the images of the items it handled there, and its
part of `results.jsonl`. The journal holds the whole batch (`status`).
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import anyio

from comet_replicate_async._journal.shared import split_journal_url

from ._errors import CliError
from ._prompts import PromptFile

if TYPE_CHECKING:
    from ._shared_journal import PromptFileJournal

__all__ = ["check_journal_url", "open_shared_journal", "shown_url", "worker_results"]

SCHEMES = ("postgresql://", "postgres://")


def check_journal_url(url: str) -> None:
    """Refuse, before anything is sent, a `--journal` the batch cannot use."""
    if not url.startswith(SCHEMES):
        raise CliError(
            f"--journal takes a postgresql:// URL, got {shown_url(url)!r}; "
            "without it the --out folder keeps the batch's journal"
        )
    try:
        split_journal_url(url)
        from . import _shared_journal  # noqa: F401  psycopg is an optional extra
    except (ValueError, ImportError) as error:
        raise CliError(f"{error}; nothing was sent") from error


def open_shared_journal(
    url: str, prompts: PromptFile, models: Sequence[str]
) -> PromptFileJournal:
    """The journal a worker of the shared batch opens (`models`: each item's)."""
    from ._shared_journal import PromptFileJournal

    return PromptFileJournal(url, prompts, models)


def shown_url(url: str) -> str:
    """The URL with its password, if it has one, hidden."""
    parts = urllib.parse.urlsplit(url)
    if not parts.password:
        return url
    host = parts.netloc.rpartition("@")[2]
    return parts._replace(netloc=f"{parts.username}:***@{host}").geturl()


async def worker_results(
    path: anyio.Path, lines: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """This worker's part of the manifest: the items it handled in this run,
    and those of its earlier runs in the same folder (a shared batch yields an
    item to one worker, once)."""
    mine = [line for line in lines if line["outcome"] != "not started"]
    handled = {line["index"] for line in mine}
    if await path.is_file():
        earlier = [json.loads(text) for text in (await path.read_text()).splitlines()]
        mine += [line for line in earlier if line["index"] not in handled]
    return sorted(mine, key=lambda line: line["index"])
