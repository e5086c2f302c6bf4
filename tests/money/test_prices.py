"""Prices: the catalogue read as pure code, the price book, the file cache, and
the catalogue fetched over HTTP from FakeCometAPI."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from comet_replicate_async import APIError, ConfigurationError, UnexpectedResponseError
from comet_replicate_async._config import ApiKey, RequestTimeout
from comet_replicate_async._money.price_cache import (
    CACHE_DIR_ENV,
    default_cache_dir,
    load_price_book,
    read_cache,
    write_cache,
)
from comet_replicate_async._money.prices import (
    FALLBACK_AS_OF,
    FALLBACK_PRICES,
    PriceBook,
    PriceSource,
    build_catalogue_request,
    read_catalogue,
)
from comet_replicate_async._sansio import RawResponse
from comet_replicate_async._transports.aiohttp import AiohttpTransport
from comet_replicate_async.testing import FakeCometAPI, Fault
from comet_replicate_async.testing.__main__ import _parser

from helpers import PRO, SCHNELL

pytestmark = pytest.mark.anyio

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def reply(body: Any, status: int = 200) -> RawResponse:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return RawResponse(status, {"content-type": "application/json"}, raw)


def record(model: str, pricing: Any) -> dict[str, Any]:
    return {"id": model, "model_type": "image", "pricing": pricing}


# -- the catalogue, read as pure code ------------------------------------------


def test_catalogue_request_is_a_get_of_api_models() -> None:
    spec = build_catalogue_request()

    assert (spec.method, spec.path, spec.json_body) == ("GET", "/api/models", None)


def test_reads_the_documented_shape_and_skips_token_priced_models() -> None:
    body = {
        "success": True,
        "page": 0,
        "page_size": 0,
        "total": 2,
        "data": [
            record(
                "gpt-image-2",
                {"currency": "USD / M Tokens", "input": 4, "output": 24,
                 "per_request": None, "per_second": None},
            ),
            record(SCHNELL, {"currency": "USD", "per_request": 0.0024}),
        ],
    }  # fmt: skip

    assert read_catalogue(reply(body)) == {SCHNELL: 0.0024}


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ([record("flux-dev", {"per_request": 0.02})], {"flux-dev": 0.02}),
        ({"data": {"items": [record("a/b", {"price": "$0.5"})]}}, {"a/b": 0.5}),
        ({"models": [{"model": "a/b", "per_request": 3}]}, {"a/b": 3.0}),
        ({"data": [{"name": "a/b", "price_per_request": "0.01"}]}, {"a/b": 0.01}),
        ({"data": [record("a/b", {"currency": "CNY", "per_request": 1})]}, {}),
        ({"data": [record("a/b", {"per_request": -1}), "junk", 7, {}]}, {}),
        ({"data": [record("a/b", {"per_request": True})]}, {}),
        ({"data": [record("a/b", {"per_request": "free"})]}, {}),
    ],
)
def test_reading_is_tolerant_of_shape_variations(
    body: Any, expected: dict[str, float]
) -> None:
    assert read_catalogue(reply(body)) == expected


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"<html>maintenance</html>", "not valid JSON"),
        ({"success": False, "message": "no"}, "no list of models"),
        ("a string", "no list of models"),
    ],
)
def test_a_catalogue_that_cannot_be_read_is_an_unexpected_response(
    body: Any, reason: str
) -> None:
    with pytest.raises(UnexpectedResponseError, match=reason):
        read_catalogue(reply(body))


def test_an_error_status_is_an_api_error() -> None:
    with pytest.raises(APIError) as caught:
        read_catalogue(reply({"error": {"message": "down"}}, status=503))

    assert caught.value.status_code == 503


# -- the price book ----------------------------------------------------------------


def test_overrides_win_then_the_catalogue_then_the_fallback() -> None:
    book = PriceBook(
        overrides={SCHNELL: 0.003},
        catalogue={SCHNELL: 0.002, PRO: 0.05},
        catalogue_as_of=T0,
    )

    assert book.price(SCHNELL) == (0.003, PriceSource.OVERRIDE)
    assert book.price(PRO) == (0.05, PriceSource.CATALOGUE)
    dev = "black-forest-labs/flux-dev"
    assert book.price(dev) == (FALLBACK_PRICES[dev], PriceSource.FALLBACK)
    found = book.get(dev)
    assert found is not None
    assert found.as_of == FALLBACK_AS_OF


def test_catalogue_ids_match_by_name_and_case() -> None:
    book = PriceBook(
        catalogue={"FLUX-Schnell": 0.001}, catalogue_source=PriceSource.CACHE
    )

    assert book.price(SCHNELL) == (0.001, PriceSource.CACHE)


def test_the_fallback_covers_the_seven_flux_models_and_is_dated() -> None:
    book = PriceBook()
    models = [
        "flux-schnell", "flux-dev", "flux-pro", "flux-1.1-pro",
        "flux-1.1-pro-ultra", "flux-kontext-pro", "flux-kontext-max",
    ]  # fmt: skip

    for name in models:
        usd, source = book.price(f"black-forest-labs/{name}")
        assert usd > 0
        assert source is PriceSource.FALLBACK
    assert isinstance(FALLBACK_AS_OF, date)


def test_an_unknown_price_is_none_and_an_error_that_says_how_to_give_one() -> None:
    book = PriceBook()

    assert book.get("someone/else") is None
    with pytest.raises(ConfigurationError, match=r"--price someone/else=USD"):
        book.price("someone/else")


@pytest.mark.parametrize("bad", [-0.01, float("nan"), "cheap", None])
def test_a_bad_override_is_refused_at_once(bad: Any) -> None:
    with pytest.raises(ConfigurationError, match="non-negative number"):
        PriceBook(overrides={SCHNELL: bad})


# -- the file cache ----------------------------------------------------------------


def test_cache_round_trip_keeps_prices_and_date(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "catalogue.json"
    write_cache(path, {SCHNELL: 0.003}, T0, "https://api.example")

    assert read_cache(path) == ({SCHNELL: 0.003}, T0)


@pytest.mark.parametrize("content", ["", "{", '{"prices": {}}', "[1, 2]"])
def test_an_unreadable_cache_is_ignored(tmp_path: Path, content: str) -> None:
    path = tmp_path / "catalogue.json"
    path.write_text(content)

    assert read_cache(path) is None
    assert read_cache(tmp_path / "absent.json") is None


def test_cache_dir_is_overridable_by_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(CACHE_DIR_ENV, str(tmp_path))
    assert default_cache_dir() == tmp_path

    monkeypatch.delenv(CACHE_DIR_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir().name == "comet-replicate-async"


# -- the catalogue over HTTP -------------------------------------------------------


@pytest.fixture
async def fake() -> AsyncIterator[FakeCometAPI]:
    async with FakeCometAPI(prices={SCHNELL: 0.01, PRO: 0.07}) as server:
        yield server


@pytest.fixture
async def transport(fake: FakeCometAPI) -> AsyncIterator[AiohttpTransport]:
    sender = AiohttpTransport(fake.base_url, ApiKey(fake.api_key), RequestTimeout(2))
    sender.open()
    yield sender
    await sender.aclose()


async def test_fetches_the_catalogue_once_then_reads_the_cache(
    fake: FakeCometAPI, transport: AiohttpTransport, tmp_path: Path
) -> None:
    options: dict[str, Any] = {"base_url": fake.base_url, "cache_dir": tmp_path}

    fresh = await load_price_book(transport, now=T0, **options)
    cached = await load_price_book(transport, now=T0 + timedelta(hours=23), **options)

    assert fresh.price(PRO) == (0.07, PriceSource.CATALOGUE)
    assert cached.price(PRO) == (0.07, PriceSource.CACHE)
    assert cached.catalogue_as_of == T0
    assert fake.stats.count("catalogue", 200) == 1
    assert fake.stats.count("create") == 0


async def test_a_stale_cache_is_fetched_again(
    fake: FakeCometAPI, transport: AiohttpTransport, tmp_path: Path
) -> None:
    options: dict[str, Any] = {"base_url": fake.base_url, "cache_dir": tmp_path}
    await load_price_book(transport, now=T0, **options)

    later = T0 + timedelta(hours=25)
    book = await load_price_book(transport, now=later, **options)

    assert book.price(SCHNELL) == (0.01, PriceSource.CATALOGUE)
    assert book.catalogue_as_of == later
    assert fake.stats.count("catalogue", 200) == 2


async def test_an_unreachable_catalogue_falls_back_to_a_stale_cache_then_the_table(
    fake: FakeCometAPI,
    transport: AiohttpTransport,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    options: dict[str, Any] = {"base_url": fake.base_url, "cache_dir": tmp_path}
    fake.script("catalogue", Fault.status(503))
    nothing = await load_price_book(transport, now=T0, **options)
    assert nothing.price(SCHNELL) == (FALLBACK_PRICES[SCHNELL], PriceSource.FALLBACK)

    await load_price_book(transport, now=T0, **options)  # fetched and cached
    fake.script("catalogue", Fault.html(200))
    with caplog.at_level(logging.WARNING, logger="comet_replicate_async"):
        stale = await load_price_book(transport, now=T0 + timedelta(days=2), **options)

    assert stale.price(SCHNELL) == (0.01, PriceSource.CACHE)
    assert "cannot read the price catalogue" in caplog.text
    assert fake.stats.count("catalogue") == 3


async def test_overrides_win_over_the_fetched_catalogue(
    fake: FakeCometAPI, transport: AiohttpTransport, tmp_path: Path
) -> None:
    book = await load_price_book(
        transport,
        base_url=fake.base_url,
        cache_dir=tmp_path,
        overrides={SCHNELL: 0.003},
    )

    assert book.price(SCHNELL) == (0.003, PriceSource.OVERRIDE)
    assert book.price(PRO) == (0.07, PriceSource.CATALOGUE)


async def test_the_fake_catalogue_needs_no_key(fake: FakeCometAPI) -> None:
    sender = AiohttpTransport(fake.base_url, ApiKey("wrong"), RequestTimeout(2))
    sender.open()
    try:
        response = await sender.send(build_catalogue_request())
    finally:
        await sender.aclose()

    assert read_catalogue(response) == {SCHNELL: 0.01, PRO: 0.07}


def test_the_fake_as_a_process_takes_catalogue_prices() -> None:
    args = _parser().parse_args(["--port", "0", "--price", f"{SCHNELL}=0.004"])

    assert dict(args.price) == {SCHNELL: 0.004}
    with pytest.raises(SystemExit):
        _parser().parse_args(["--port", "0", "--price", f"{SCHNELL}=cheap"])
