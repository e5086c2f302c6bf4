"""Fetching the price catalogue once, and keeping it in a file with its date.

`load_price_book` answers from the file cache while it is younger than
`CATALOGUE_MAX_AGE` (a day); otherwise it fetches `GET /api/models` through the
transport and writes the cache. When the fetch fails, a stale cache still serves
(it is newer than the bundled table), and without one the bundled estimates do.
A price lookup never stops a run: a failure is one WARNING.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final, Protocol

import anyio

from comet_replicate_async._exceptions import CometReplicateError
from comet_replicate_async._sansio import RawResponse, RequestSpec

from .prices import PriceBook, PriceSource, build_catalogue_request, read_catalogue

__all__ = [
    "CACHE_DIR_ENV",
    "CATALOGUE_MAX_AGE",
    "default_cache_dir",
    "load_price_book",
    "read_cache",
    "write_cache",
]

logger = logging.getLogger("comet_replicate_async")

#: Set to a directory to keep the catalogue cache there.
CACHE_DIR_ENV: Final = "COMET_REPLICATE_CACHE_DIR"
#: A cached catalogue older than this is fetched again.
CATALOGUE_MAX_AGE: Final = timedelta(hours=24)
#: The catalogue is small; a slow reply should not hold up a run's start.
_FETCH_READ_TIMEOUT: Final = 15.0


class _Sender(Protocol):
    async def send(
        self, spec: RequestSpec, *, read_timeout: float | None = None
    ) -> RawResponse: ...


def default_cache_dir() -> Path:
    """`$COMET_REPLICATE_CACHE_DIR`, else the platform's user cache directory
    (`$XDG_CACHE_HOME` or `~/.cache` on Linux, `~/Library/Caches` on macOS,
    `%LOCALAPPDATA%` on Windows), under `comet-replicate-async`."""
    if chosen := os.environ.get(CACHE_DIR_ENV):
        return Path(chosen)
    if sys.platform == "win32":
        root = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData/Local")
    elif sys.platform == "darwin":
        root = Path.home() / "Library" / "Caches"
    else:
        root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return root / "comet-replicate-async"


def _cache_file(cache_dir: Path, base_url: str) -> Path:
    # One file per API host: a test server's prices never pass for the real ones.
    digest = hashlib.sha256(base_url.encode()).hexdigest()[:16]
    return cache_dir / f"catalogue-{digest}.json"


def read_cache(path: Path) -> tuple[dict[str, float], datetime] | None:
    """The prices and fetch time kept in `path`; None if absent or unreadable."""
    try:
        data: Any = json.loads(path.read_text(encoding="utf-8"))
        fetched_at = datetime.fromisoformat(data["fetched_at"])
        prices = {
            str(model): float(usd)
            for model, usd in data["prices"].items()
            if isinstance(usd, int | float) and not isinstance(usd, bool)
        }
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return None
    if fetched_at.tzinfo is None:
        fetched_at = fetched_at.replace(tzinfo=UTC)
    return prices, fetched_at


def write_cache(
    path: Path, prices: Mapping[str, float], fetched_at: datetime, base_url: str
) -> None:
    """Keep `prices` in `path` with their fetch time (written whole, then renamed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".part")
    partial.write_text(
        json.dumps(
            {
                "base_url": base_url,
                "fetched_at": fetched_at.isoformat(),
                "prices": dict(prices),
            },
            indent=1,
            sort_keys=True,
        ),
        encoding="utf-8",
    )
    partial.replace(path)


async def load_price_book(
    transport: _Sender,
    *,
    base_url: str,
    overrides: Mapping[str, float] | None = None,
    cache_dir: Path | None = None,
    max_age: timedelta = CATALOGUE_MAX_AGE,
    now: datetime | None = None,
) -> PriceBook:
    """A `PriceBook` from the user's overrides, the catalogue (cached or fetched
    now) and the bundled estimates.

    Args:
        transport: sends the catalogue request to `base_url` (anything with the
            transport's `send`).
        base_url: the API root the transport talks to; it names the cache file.
        overrides: `{"owner/name": usd}`, winning over every other source.
        cache_dir: where the cache lives; `default_cache_dir()` if None.
        max_age: how old a cached catalogue may be before it is fetched again.
        now: the current time (for tests); the clock if None.
    """
    now = now or datetime.now(UTC)
    path = _cache_file(cache_dir or default_cache_dir(), base_url)
    cached = await anyio.to_thread.run_sync(read_cache, path)
    if cached is not None and now - cached[1] < max_age:
        return _book(overrides, cached[0], PriceSource.CACHE, cached[1])
    try:
        response = await transport.send(
            build_catalogue_request(), read_timeout=_FETCH_READ_TIMEOUT
        )
        prices = read_catalogue(response)
    except CometReplicateError as exc:
        logger.warning(
            "cannot read the price catalogue (%s); using %s",
            exc,
            "the cached one" if cached else "the bundled estimates",
        )
        if cached is not None:
            return _book(overrides, cached[0], PriceSource.CACHE, cached[1])
        return _book(overrides, {}, PriceSource.CATALOGUE, None)
    try:
        await anyio.to_thread.run_sync(write_cache, path, prices, now, base_url)
    except OSError as exc:  # a read-only home still gets its prices
        logger.warning("cannot write the price cache %s: %s", path, exc)
    return _book(overrides, prices, PriceSource.CATALOGUE, now)


def _book(
    overrides: Mapping[str, float] | None,
    prices: Mapping[str, float],
    source: PriceSource,
    as_of: datetime | None,
) -> PriceBook:
    return PriceBook(
        overrides=overrides or {},
        catalogue=prices,
        catalogue_source=source,
        catalogue_as_of=as_of,
    )
