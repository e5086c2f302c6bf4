"""Dry-run pricing: what a batch would cost, from its inputs and a price book.

Pure: it sends nothing and reads no clock. A create is priced once per output
image it asks for (`num_outputs`, 1 when absent), since Replicate bills FLUX per
image and whether CometAPI's per-request price covers several images is not
documented: an estimate should err high, not low.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

import attrs

from .prices import PriceBook, PriceSource

__all__ = ["CostEstimate", "ModelEstimate", "billed_images", "estimate_cost"]


def billed_images(input: Mapping[str, Any]) -> int:
    """How many images one create of `input` is billed for: `num_outputs`, else 1."""
    count = input.get("num_outputs")
    if isinstance(count, int) and not isinstance(count, bool) and count > 1:
        return count
    return 1


@attrs.frozen
class ModelEstimate:
    """The inputs of one model: how many, how many images, at what price.

    `unit_price` and `total` are None when no source knows the model's price.
    """

    model: str
    count: int
    images: int
    unit_price: float | None
    source: PriceSource | None
    total: float | None


@attrs.frozen
class CostEstimate:
    """The estimated cost of a batch, per model (in order of first appearance)
    and in total. `total` leaves out `unpriced` models, which are named."""

    models: tuple[ModelEstimate, ...]
    count: int
    total: float
    unpriced: tuple[str, ...]

    def table(self) -> list[tuple[str, str, str, str, str]]:
        """Rows of text for a table, headers first and a total row last:
        model, inputs, images, price per image (with its source), cost."""
        rows = [("model", "inputs", "images", "price per image", "cost")]
        for row in self.models:
            price = (
                "unknown"
                if row.unit_price is None
                else f"${row.unit_price:.4f} ({row.source})"
            )
            cost = "unknown" if row.total is None else f"${row.total:.4f}"
            rows.append((row.model, str(row.count), str(row.images), price, cost))
        total = f"${self.total:.4f}" + (" + unknown" if self.unpriced else "")
        images = sum(row.images for row in self.models)
        rows.append(("total", str(self.count), str(images), "", total))
        return rows


def estimate_cost(
    calls: Iterable[tuple[str, Mapping[str, Any]]], prices: PriceBook
) -> CostEstimate:
    """Count `(model, input)` pairs and price them with `prices`."""
    counts: dict[str, list[int]] = {}
    for model, input in calls:
        tally = counts.setdefault(model, [0, 0])
        tally[0] += 1
        tally[1] += billed_images(input)
    rows = []
    total = Decimal(0)
    for model, (count, images) in counts.items():
        price = prices.get(model)
        if price is None:
            rows.append(ModelEstimate(model, count, images, None, None, None))
            continue
        cost = price.decimal * images
        total += cost
        rows.append(
            ModelEstimate(model, count, images, price.usd, price.source, float(cost))
        )
    return CostEstimate(
        models=tuple(rows),
        count=sum(row.count for row in rows),
        total=float(total),
        unpriced=tuple(row.model for row in rows if row.unit_price is None),
    )
