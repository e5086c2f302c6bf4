"""Saving a prediction's output files to disk, a few at a time, retried like queries."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

import anyio

from ._calls import Calls
from ._exceptions import CometReplicateError
from ._sansio import download_error
from ._values import Prediction

__all__ = ["Downloads"]

_FILE_SUFFIXES = frozenset({".webp", ".png", ".jpg", ".jpeg", ".gif", ".mp4"})


class Downloads:
    """A session's downloads: at most `concurrency` files at once."""

    def __init__(self, calls: Calls, concurrency: int) -> None:
        self._calls = calls
        self._limiter = anyio.CapacityLimiter(concurrency)

    async def save(
        self,
        prediction: Prediction,
        directory: str | os.PathLike[str],
        stem: str | None = None,
    ) -> list[Path]:
        """Save every output file as `{stem}-{n}{ext}` in `directory`; their paths."""
        folder = Path(directory)
        await anyio.Path(folder).mkdir(parents=True, exist_ok=True)
        stem = stem or prediction.id
        paths = [
            folder / f"{stem}-{n}{_suffix(url)}"
            for n, url in enumerate(prediction.output_urls)
        ]
        try:
            async with anyio.create_task_group() as group:
                for url, path in zip(prediction.output_urls, paths, strict=True):
                    group.start_soon(self._save_one, prediction, url, path)
        except ExceptionGroup as failed:
            # A file's own error, as itself (the first, when several failed).
            raise failed.exceptions[0] from None
        return paths

    async def _save_one(self, prediction: Prediction, url: str, path: Path) -> None:
        async def attempt() -> None:
            failed = await self._calls.transport.download(url, path)
            if failed is not None:
                # 404 and 410 mean the file expired: OutputExpiredError.
                raise download_error(failed, prediction)

        async with self._limiter:
            try:
                await self._calls.retrying("query", attempt)
            except CometReplicateError:
                with contextlib.suppress(OSError):
                    path.with_name(path.name + ".part").unlink(missing_ok=True)
                raise


def _suffix(url: str) -> str:
    suffix = PurePosixPath(urlsplit(url).path).suffix.lower()
    return suffix if suffix in _FILE_SUFFIXES else ".bin"
