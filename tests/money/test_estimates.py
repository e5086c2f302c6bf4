"""Dry-run pricing: a batch counted and priced per model, sending nothing."""

from __future__ import annotations

import pytest

from comet_replicate_async import FluxDev
from comet_replicate_async._money.estimates import billed_images, estimate_cost
from comet_replicate_async._money.prices import FALLBACK_PRICES, PriceBook, PriceSource

from helpers import PRO, SCHNELL

DEV = "black-forest-labs/flux-dev"


def test_counts_and_prices_per_model_and_in_total() -> None:
    book = PriceBook(overrides={SCHNELL: 0.01}, catalogue={PRO: 0.05})
    calls = [(SCHNELL, {"prompt": f"boat {i}"}) for i in range(100)]
    calls += [(PRO, {"prompt": "lighthouse"})] * 3

    estimate = estimate_cost(calls, book)

    schnell, pro = estimate.models
    assert (schnell.model, schnell.count, schnell.images) == (SCHNELL, 100, 100)
    assert schnell.total == 1.0  # exact: summed as decimals
    assert schnell.source is PriceSource.OVERRIDE
    assert (pro.count, pro.unit_price, pro.source) == (3, 0.05, PriceSource.CATALOGUE)
    assert pro.total == pytest.approx(0.15)
    assert estimate.count == 103
    assert estimate.total == pytest.approx(1.15)
    assert estimate.unpriced == ()


def test_several_outputs_are_priced_per_image() -> None:
    typed = FluxDev(prompt="two foxes", num_outputs=2).to_input()
    estimate = estimate_cost([(DEV, typed), (DEV, {"prompt": "one"})], PriceBook())

    (dev,) = estimate.models
    assert (dev.count, dev.images) == (2, 3)
    assert dev.total == pytest.approx(3 * FALLBACK_PRICES[DEV])
    assert dev.source is PriceSource.FALLBACK


@pytest.mark.parametrize(
    ("value", "images"), [(None, 1), (1, 1), (4, 4), (0, 1), (True, 1), ("3", 1)]
)
def test_billed_images_reads_num_outputs(value: object, images: int) -> None:
    input = {} if value is None else {"num_outputs": value}

    assert billed_images(input) == images


def test_an_unknown_model_is_named_and_left_out_of_the_total() -> None:
    estimate = estimate_cost(
        [("someone/else", {}), (SCHNELL, {}), ("someone/else", {})],
        PriceBook(overrides={SCHNELL: 0.003}),
    )

    other, _schnell = estimate.models
    assert (other.count, other.unit_price, other.total) == (2, None, None)
    assert estimate.unpriced == ("someone/else",)
    assert estimate.total == pytest.approx(0.003)


def test_table_rows_have_headers_each_model_and_a_total() -> None:
    book = PriceBook(overrides={SCHNELL: 0.003})
    estimate = estimate_cost([(SCHNELL, {}), (SCHNELL, {}), ("x/y", {})], book)

    assert estimate.table() == [
        ("model", "inputs", "images", "price per image", "cost"),
        (SCHNELL, "2", "2", "$0.0030 (override)", "$0.0060"),
        ("x/y", "1", "1", "unknown", "unknown"),
        ("total", "3", "3", "", "$0.0060 + unknown"),
    ]


def test_an_empty_batch_costs_nothing() -> None:
    estimate = estimate_cost([], PriceBook())

    assert (estimate.count, estimate.total, estimate.models) == (0, 0.0, ())
    assert estimate.table()[-1] == ("total", "0", "0", "", "$0.0000")
