"""The command line's money: `--max-cost`, `--price`, the dry run and the costs reported.

The price of each of the batch's models is looked up once before a batch (the
user's `--price`, else CometAPI's catalogue, its file cache, or the bundled
estimates) and handed to the session as its prices, so the session's journal
records what each input cost even without a cap, and `results.jsonl` and the
summary can show it, model by model.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import attrs
import click
from rich.console import Console
from rich.table import Table

from comet_replicate_async._config import ApiKey, RequestTimeout, resolve_base_url
from comet_replicate_async._money.estimates import (
    CostEstimate,
    billed_images,
    estimate_cost,
)
from comet_replicate_async._money.ledger import Charge, charge_for
from comet_replicate_async._money.price_cache import load_price_book
from comet_replicate_async._money.prices import Price, PriceBook, PriceSource
from comet_replicate_async._transports.aiohttp import AiohttpTransport
from comet_replicate_async._values import Status

from ._errors import CliError
from ._prompts import PromptFile

__all__ = [
    "CostTotals",
    "batch_prices",
    "charge_of",
    "describe_price",
    "dry_run_lines",
    "price_json",
    "print_dry_run",
    "read_price_book",
    "read_prices",
    "read_usd",
]


def read_usd(
    ctx: click.Context, param: click.Parameter, value: str | None
) -> float | None:
    """`--max-cost`: a non-negative, finite amount of US dollars (`0.50`, `$0.50`)."""
    if value is None:
        return None
    usd = _amount(value)
    if usd is None:
        raise click.BadParameter(
            f"{value!r} is not an amount of US dollars (e.g. 0.50)", ctx, param
        )
    return usd


def read_prices(
    ctx: click.Context, param: click.Parameter, values: Sequence[str]
) -> dict[str, float]:
    """`--price owner/name=USD` (repeatable): the price of one image of a model."""
    prices: dict[str, float] = {}
    for value in values:
        model, sep, text = value.partition("=")
        owner, slash, name = model.strip().partition("/")
        usd = _amount(text)
        if not sep or not (owner and slash and name) or usd is None:
            raise click.BadParameter(
                f"{value!r}: expected owner/name=USD, e.g. "
                "black-forest-labs/flux-schnell=0.003",
                ctx,
                param,
            )
        prices[model.strip()] = usd
    return prices


def _amount(text: str) -> float | None:
    try:
        usd = float(text.strip().removeprefix("$"))
    except ValueError:
        return None
    return usd if math.isfinite(usd) and usd >= 0 else None


async def read_price_book(
    api_key: str | None,
    base_url: str | None,
    models: Sequence[str],
    overrides: Mapping[str, float],
) -> PriceBook:
    """Prices for a batch of `models`: the user's when they cover them all (no
    request), else with CometAPI's catalogue (cached a day) and the bundled
    estimates. A catalogue that cannot be read is one warning, never a stop."""
    given = PriceBook(overrides=overrides, fallback={})
    if all(given.get(model) is not None for model in models):
        return given
    url = resolve_base_url(base_url)
    # The catalogue is public: the key is never sent there, so a dry run needs none.
    transport = AiohttpTransport(url, ApiKey(api_key or ""), RequestTimeout())
    transport.open()
    try:
        return await load_price_book(transport, base_url=url, overrides=overrides)
    finally:
        await transport.aclose()


async def batch_prices(
    api_key: str | None,
    base_url: str | None,
    models: Sequence[str],
    overrides: Mapping[str, float],
    max_cost: float | None,
) -> dict[str, Price | None]:
    """The price of one image of each model of a batch; None when no source
    knows it.

    Raises:
        CliError: a cap is asked for and a price is not known (exit 2, nothing
            sent).
    """
    book = await read_price_book(api_key, base_url, models, overrides)
    prices = {model: book.get(model) for model in models}
    unknown = [model for model, price in prices.items() if price is None]
    if unknown and max_cost is not None:
        raise CliError(
            f"--max-cost needs a price for {unknown[0]}, and none is known: give "
            f"it with --price {unknown[0]}=USD; nothing was sent"
        )
    return prices


def print_dry_run(
    prompts: PromptFile,
    book: PriceBook,
    max_cost: float | None,
    *,
    as_json: bool,
) -> None:
    """Print the count and estimated cost of a batch, one row per model (a
    table, or JSON)."""
    estimate, lines = dry_run_lines(prompts, book, max_cost)
    if as_json:
        models = prompts.models
        # The top-level price is the one model's; with several, see "models".
        price = book.get(models[0]) if len(models) == 1 else None
        summary = {
            "dry_run": True,
            "inputs": estimate.count,
            "models": [attrs.asdict(row) for row in estimate.models],
            "total": estimate.total,
            "unpriced": list(estimate.unpriced),
            "max_cost": max_cost,
            **price_json(price),
            "sent": 0,
        }
        print(json.dumps(summary), flush=True)
        return
    header, *rows = estimate.table()
    table = Table(*header, title="dry run: estimated cost")
    for row in rows:
        table.add_row(*row)
    Console().print(table)
    for line in lines:
        click.echo(line)


def describe_price(price: Price | None) -> str:
    """Where a price came from, and how old it is, in words."""
    if price is None:
        return "unknown (give --price MODEL=USD)"
    amount = f"${price.usd:.4f} per image"
    if price.source is PriceSource.OVERRIDE:
        return f"{amount} (--price)"
    if price.source is PriceSource.FALLBACK:
        return f"{amount} (bundled estimate of {_when(price.as_of)}; approximate)"
    fetched = "" if price.as_of is None else f", fetched {_when(price.as_of)}"
    where = (
        "CometAPI's catalogue"
        if price.source is PriceSource.CATALOGUE
        else ("CometAPI's catalogue, cached")
    )
    return f"{amount} ({where}{fetched})"


def _when(moment: datetime | date | None) -> str:
    if isinstance(moment, datetime):
        return moment.strftime("%Y-%m-%d %H:%M UTC")
    return "an unknown date" if moment is None else moment.isoformat()


def dry_run_lines(
    prompts: PromptFile, book: PriceBook, max_cost: float | None
) -> tuple[CostEstimate, list[str]]:
    """The estimate of a batch, and the lines that say it (the table aside)."""
    estimate = estimate_cost(((item.model, item.input) for item in prompts.items), book)
    lines = [
        f"price of {model}: {describe_price(book.get(model))}"
        for model in prompts.models
    ]
    if max_cost is not None and not estimate.unpriced:
        fits = _inputs_within(prompts, book, max_cost)
        if fits < estimate.count:
            lines.append(
                f"--max-cost ${max_cost:.4f} covers the first {fits} of "
                f"{estimate.count} inputs; a rerun with a larger cap goes on"
            )
        else:
            lines.append(f"within --max-cost ${max_cost:.4f}")
    lines.append("dry run: nothing was sent")
    return estimate, lines


def _inputs_within(prompts: PromptFile, book: PriceBook, cap: float) -> int:
    """How many inputs, in file order, the cap lets the batch create."""
    left = Decimal(repr(cap))
    for count, item in enumerate(prompts.items):
        price = book.get(item.model)
        if price is None:
            return count
        left -= price.decimal * billed_images(item.input)
        if left < 0:
            return count
    return len(prompts.items)


def charge_of(state: str | None, status: Status | None) -> Charge:
    """How an item of the batch folder counts: `state` is its outcome there,
    `status` its prediction's last known status."""
    if state in ("ambiguous", "created"):
        return Charge.POSSIBLY_BILLED  # it may exist, and may be billed
    if state is None or status is None:
        return Charge.FREE  # nothing was created
    return charge_for(status)


@attrs.frozen
class CostTotals:
    """What a batch's items cost over all its runs, in US dollars."""

    spent: float = 0.0
    possibly_billed: float = 0.0
    #: Items with a charge but no known price (their cost is left out).
    unpriced: int = 0

    @classmethod
    def of(cls, items: Sequence[tuple[Charge, float | None]]) -> CostTotals:
        """Sum `(charge, cost)` pairs; exact decimals, as the session keeps them."""
        spent = possibly = Decimal(0)
        unpriced = 0
        for charge, cost in items:
            if charge is Charge.FREE:
                continue
            if cost is None:
                unpriced += 1
                continue
            spent += Decimal(repr(cost))
            if charge is Charge.POSSIBLY_BILLED:
                possibly += Decimal(repr(cost))
        return cls(float(spent), float(possibly), unpriced)

    def text(self) -> str:
        """`$0.5000 (of which $0.0100 possibly billed)` and what is unknown."""
        words = f"${self.spent:.4f}"
        if self.possibly_billed:
            words += f" (of which ${self.possibly_billed:.4f} possibly billed)"
        if self.unpriced:
            words += f" + {self.unpriced} item(s) at an unknown price"
        return words


def price_json(price: Price | None) -> dict[str, Any]:
    """A price's fields in the JSON outputs (none when unknown)."""
    return {
        "price": None if price is None else price.usd,
        "price_source": None if price is None else str(price.source),
        "price_as_of": None
        if price is None or price.as_of is None
        else price.as_of.isoformat(),
    }
