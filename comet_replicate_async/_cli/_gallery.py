"""The batch's contact sheet: one static, self-contained HTML page of every output.

The page is drawn by the package's one HTML renderer (`_html`), the same grid a
notebook shows: one row per prompt and one column per model.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from comet_replicate_async._html import Tile, page_html

__all__ = ["write_gallery"]


def write_gallery(path: Path, title: str, tiles: Sequence[Tile]) -> None:
    """Write the page atomically (a temporary file, then a rename).

    Images are linked by their names in the same folder: no external asset and no
    script, so the page opens from disk in any browser.
    """
    counts: dict[str, int] = {}
    for tile in tiles:
        counts[tile.status] = counts.get(tile.status, 0) + 1
    summary = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
    page = page_html(title, f"{len(tiles)} inputs: {summary}", tiles)
    partial = path.with_name(path.name + ".part")
    partial.write_text(page, encoding="utf-8")
    os.replace(partial, path)
