"""Predictions and batch items as HTML: a card each, and a grid of cards with one
row per prompt and one column per model.

The one renderer behind `Prediction._repr_html_`, `BatchItem._repr_html_`,
`html_grid` (notebooks) and the command line's gallery page. Pure: values in, a
string out. Everything that came from an input or the API (prompts, errors, ids,
model names, URLs) is escaped, and only `http(s)` and `data:image/` URLs become
images, so a prompt or a reply can never inject markup into the page.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import attrs

from ._exceptions import AmbiguousSubmitError, BatchStoppedError, BudgetExceededError
from ._inputs.base import FluxInput
from ._values import BatchItem, Prediction, cards

__all__ = [
    "HtmlGrid",
    "Tile",
    "card_html",
    "grid_html",
    "html_grid",
    "item_model",
    "page_html",
    "tile_html",
    "tile_of",
]

# Class names start with `cra-`: in a notebook the style applies to the whole
# page, and must not restyle anything else on it.
_STYLE = """
.cra { font: 14px/1.4 system-ui, sans-serif; color: #222; }
.cra-wrap { display: grid; grid-template-columns: repeat(auto-fill, minmax(220px, 1fr));
  gap: 12px; }
.cra-compare { display: grid; gap: 12px; align-items: start; }
.cra-head { font-weight: 600; padding: 4px 2px; border-bottom: 2px solid #ccc;
  word-break: break-word; }
.cra-owner { display: block; color: #777; font-weight: 400; font-size: 12px; }
.cra-prompt { padding: 8px 2px; word-break: break-word; border-top: 1px solid #e4e4e4; }
.cra-card { margin: 0; background: #fff; border: 1px solid #ddd; border-radius: 6px;
  padding: 8px; }
.cra-single { max-width: 260px; }
.cra-images { display: grid; grid-template-columns: repeat(auto-fit, minmax(90px, 1fr));
  gap: 4px; }
.cra-images img { display: block; width: 100%; height: 200px; object-fit: cover;
  border-radius: 4px; background: #eee; }
.cra-images.cra-many img { height: 120px; }
.cra-compare .cra-images img { object-fit: contain; }
.cra-none { height: 200px; display: flex; align-items: center; justify-content: center;
  background: #f0f0f0; border-radius: 4px; color: #888; }
.cra-missing { height: 100%; min-height: 60px; display: flex; align-items: center;
  justify-content: center; color: #aaa; border: 1px dashed #ddd; border-radius: 6px; }
.cra-card figcaption { margin-top: 6px; word-break: break-word; }
.cra-status { font-weight: 600; } .cra-ok { color: #18794e; } .cra-bad { color: #c4320a; }
.cra-meta { color: #666; font-size: 12px; }
.cra-error { color: #c4320a; font-size: 12px; }
"""

_PAGE_STYLE = """
body { margin: 1.5rem; background: #fafafa; }
h1 { font-size: 1.2rem; } .cra-summary { color: #555; margin-bottom: 1rem; }
"""

_IMAGE_SCHEMES = ("https://", "http://", "data:image/")
_GOOD = frozenset({"succeeded"})
_BAD = frozenset({"failed", "canceled", "aborted", "ambiguous"})


@attrs.frozen
class Tile:
    """One prediction or batch input as its card shows it.

    `images` are the sources of its pictures, already checked: URLs (`tile_of`
    keeps only `http(s)` and `data:image/` ones) or the names of files beside a
    page (the gallery).
    """

    prompt: str
    status: str
    model: str | None = None
    index: int | None = None
    prediction_id: str | None = None
    error: str | None = None
    images: tuple[str, ...] = ()


def item_model(item: BatchItem) -> str | None:
    """The model an item ran on: the engine's word, else its prediction's, else
    its typed input's (an item built by hand may carry none)."""
    if item.model:
        return item.model
    if item.prediction is not None and item.prediction.model:
        return item.prediction.model
    if isinstance(item.input, FluxInput):
        return item.input.model
    return None


def tile_of(value: Prediction | BatchItem) -> Tile:
    """The card of a prediction or a batch item."""
    if isinstance(value, Prediction):
        return Tile(
            prompt=_prompt_of(value.input),
            status=str(value.status),
            model=value.model or None,
            prediction_id=value.id,
            error=value.error,
            images=_image_urls(value),
        )
    prediction, error = value.prediction, value.error
    prompt = _prompt_of(value.input)
    if not prompt and prediction is not None:
        prompt = _prompt_of(prediction.input)
    if prediction is None:
        return Tile(
            prompt=prompt,
            status=_status_without_prediction(error),
            model=item_model(value),
            index=value.index,
            error=None if error is None else f"{type(error).__name__}: {error}",
        )
    return Tile(
        prompt=prompt,
        status=str(prediction.status),
        model=item_model(value),
        index=value.index,
        prediction_id=prediction.id,
        # The item's error says more (a timeout, a failure and its reason).
        error=prediction.error if error is None else f"{type(error).__name__}: {error}",
        images=_image_urls(prediction),
    )


def _status_without_prediction(error: BaseException | None) -> str:
    if isinstance(error, AmbiguousSubmitError):
        return "ambiguous"
    if isinstance(error, BatchStoppedError | BudgetExceededError):
        return "not sent"
    return "failed"


def tile_html(tile: Tile) -> str:
    """One card on its own, with its style (a notebook cell's output)."""
    return f"<style>{_STYLE}</style><div class='cra cra-single'>{_card(tile)}</div>"


def card_html(value: Prediction | BatchItem) -> str:
    """`Prediction._repr_html_` and `BatchItem._repr_html_`: one card on its own."""
    return tile_html(tile_of(value))


def grid_html(tiles: Sequence[Tile]) -> str:
    """Cards in a grid, with its style: one row per prompt and one column per
    model, or, when every card is of one model, one wrap-around grid."""
    return f"<style>{_STYLE}</style><div class='cra'>{_grid(tiles)}</div>"


def page_html(title: str, summary: str, tiles: Sequence[Tile]) -> str:
    """A whole page: a title, a line of summary and the grid.

    No external asset and no script, so it opens from disk in any browser.
    """
    return (
        "<!doctype html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>{_e(title)}</title><style>{_STYLE}{_PAGE_STYLE}</style></head>"
        f"<body><div class='cra'><h1>{_e(title)}</h1><p class='cra-summary'>"
        f"{_e(summary)}</p>\n{_grid(tiles)}\n</div></body></html>\n"
    )


@attrs.frozen
class HtmlGrid:
    """Predictions or batch items as a grid of images, made by `html_grid`.

    A notebook shows it as the grid; `str(grid)` or `grid.html` is the HTML
    (with its style) to put in a page of your own.
    """

    html: str

    def _repr_html_(self) -> str:
        return self.html

    def __str__(self) -> str:
        return self.html


def html_grid(items: Iterable[Prediction | BatchItem]) -> HtmlGrid:
    """Show predictions or batch items as a grid in a notebook.

    One row per prompt and one column per model, so the same prompts on several
    models compare at a glance; the items of one model wrap around as the
    command line's gallery does. Each card has the output images (small,
    lazy-loaded, from their URLs), the status, the id and, for a failed one, the
    error.

    Usage:

    ```python
    items = await session.gather(FluxSchnell, prompts)
    html_grid(items)  # the last expression of a cell: shown as the grid
    ```
    """
    return HtmlGrid(grid_html([tile_of(item) for item in items]))


def _grid(tiles: Sequence[Tile]) -> str:
    models = list(dict.fromkeys(tile.model for tile in tiles))
    if len(models) < 2:
        cards = "\n".join(_card(tile) for tile in tiles)
        return f"<div class='cra-wrap'>\n{cards}\n</div>"
    columns = f"minmax(9rem, 14rem) repeat({len(models)}, minmax(180px, 1fr))"
    cells = ["<div class='cra-head'></div>"]
    cells += [_model_head(model) for model in models]
    for prompt, by_model in _rows(tiles):
        cells.append(f"<div class='cra-prompt'>{_e(prompt)}</div>")
        for model in models:
            tile = by_model.get(model)
            cells.append(
                "<div class='cra-missing'>no result</div>"
                if tile is None
                else _card(tile, with_prompt=False)
            )
    body = "\n".join(cells)
    return (
        f"<div class='cra-compare' style='grid-template-columns: {columns}'>\n"
        f"{body}\n</div>"
    )


def _rows(tiles: Sequence[Tile]) -> list[tuple[str, dict[str | None, Tile]]]:
    """Rows in the order prompts first appear; a prompt that comes twice for one
    model (the same prompt twice in a batch) opens a row of its own."""
    rows: list[tuple[str, dict[str | None, Tile]]] = []
    for tile in tiles:
        row = next(
            (
                cells
                for prompt, cells in rows
                if prompt == tile.prompt and tile.model not in cells
            ),
            None,
        )
        if row is None:
            rows.append((tile.prompt, row := {}))
        row[tile.model] = tile
    return rows


def _model_head(model: str | None) -> str:
    if model is None:
        return "<div class='cra-head'>model unknown</div>"
    owner, _, name = model.rpartition("/")
    owner_line = f"<span class='cra-owner'>{_e(owner)}/</span>" if owner else ""
    return f"<div class='cra-head' title='{_e(model)}'>{owner_line}{_e(name)}</div>"


def _card(tile: Tile, *, with_prompt: bool = True) -> str:
    many = " cra-many" if len(tile.images) > 1 else ""
    alt = _e(tile.prompt[:80])
    images = "".join(
        f"<a href='{_e(src)}' target='_blank' rel='noopener'>"
        f"<img src='{_e(src)}' loading='lazy' alt='{alt}'></a>"
        for src in tile.images
    )
    status = _e(tile.status)
    picture = (
        f"<div class='cra-images{many}'>{images}</div>"
        if images
        else f"<div class='cra-none'>{status}</div>"
    )
    anchor = "" if tile.index is None else f" id='item-{tile.index}'"
    number = "" if tile.index is None else f" #{tile.index}"
    parts = [
        f"<figure class='cra-card'{anchor}>{picture}<figcaption>",
        f"<div><span class='cra-status {_status_class(tile.status)}'>{status}</span>"
        f"{number}</div>",
    ]
    if with_prompt:
        parts.append(f"<div>{_e(tile.prompt)}</div>")
    if tile.prediction_id:
        parts.append(f"<div class='cra-meta'>{_e(tile.prediction_id)}</div>")
    if tile.error:
        parts.append(f"<div class='cra-error'>{_e(tile.error)}</div>")
    parts.append("</figcaption></figure>")
    return "".join(parts)


def _status_class(status: str) -> str:
    # A fixed class per kind of status: a status the API invents never becomes
    # a class name of its own.
    if status in _GOOD:
        return "cra-ok"
    return "cra-bad" if status in _BAD else ""


def _prompt_of(input: Any) -> str:
    if isinstance(input, FluxInput):
        return input.prompt
    if isinstance(input, Mapping):
        prompt = input.get("prompt")
        return prompt if isinstance(prompt, str) else ""
    return ""


def _image_urls(prediction: Prediction) -> tuple[str, ...]:
    return tuple(
        url
        for url in prediction.output_urls
        if url[: len("data:image/")].lower().startswith(_IMAGE_SCHEMES)
    )


def _e(text: str) -> str:
    return html.escape(text, quote=True)


# The values' `_repr_html_` draw through this module; it reads them, so it is the
# one that plugs in (the arrow runs from here to `_values` only).
cards.install(card_html)
