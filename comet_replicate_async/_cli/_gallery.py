"""The batch's contact sheet: one static, self-contained HTML page of every output."""

from __future__ import annotations

import html
import os
from collections.abc import Sequence
from pathlib import Path

import attrs

__all__ = ["GalleryEntry", "write_gallery"]

_STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5rem; background: #fafafa; color: #222; }
h1 { font-size: 1.2rem; } .summary { color: #555; margin-bottom: 1rem; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(220px, 1fr)); gap: 12px; }
figure { margin: 0; background: #fff; border: 1px solid #ddd; border-radius: 6px; padding: 8px; }
figure img { width: 100%; height: 200px; object-fit: cover; border-radius: 4px; background: #eee; }
.none { height: 200px; display: flex; align-items: center; justify-content: center;
        background: #f0f0f0; border-radius: 4px; color: #888; }
figcaption { margin-top: 6px; word-break: break-word; }
.status { font-weight: 600; } .succeeded { color: #18794e; } .failed, .ambiguous { color: #c4320a; }
.meta { color: #666; font-size: 12px; } .error { color: #c4320a; font-size: 12px; }
"""


@attrs.frozen
class GalleryEntry:
    """One input of the batch as the page shows it."""

    index: int
    prompt: str
    status: str
    prediction_id: str | None = None
    error: str | None = None
    files: Sequence[str] = ()


def write_gallery(path: Path, title: str, entries: Sequence[GalleryEntry]) -> None:
    """Write the page atomically (a temporary file, then a rename).

    Images are linked by their names in the same folder: no external asset and no
    script, so the page opens from disk in any browser.
    """
    counts: dict[str, int] = {}
    for entry in entries:
        counts[entry.status] = counts.get(entry.status, 0) + 1
    summary = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
    cards = "\n".join(_card(entry) for entry in entries)
    page = (
        "<!doctype html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>"
        f"<h1>{html.escape(title)}</h1><p class='summary'>{len(entries)} inputs: "
        f"{html.escape(summary)}</p><div class='grid'>\n{cards}\n</div></body></html>\n"
    )
    partial = path.with_name(path.name + ".part")
    partial.write_text(page, encoding="utf-8")
    os.replace(partial, path)


def _card(entry: GalleryEntry) -> str:
    images = (
        "".join(
            f"<a href='{html.escape(name)}'><img src='{html.escape(name)}' loading='lazy' "
            f"alt='{html.escape(entry.prompt[:80])}'></a>"
            for name in entry.files
        )
        or f"<div class='none'>{html.escape(entry.status)}</div>"
    )
    status = html.escape(entry.status)
    parts = [
        f"<figure id='item-{entry.index}'>{images}<figcaption>",
        f"<div><span class='status {status}'>{status}</span> #{entry.index}</div>",
        f"<div>{html.escape(entry.prompt)}</div>",
    ]
    if entry.prediction_id:
        parts.append(f"<div class='meta'>{html.escape(entry.prediction_id)}</div>")
    if entry.error:
        parts.append(f"<div class='error'>{html.escape(entry.error)}</div>")
    parts.append("</figcaption></figure>")
    return "".join(parts)
