"""What a create costs: CometAPI's public catalogue, read as pure code, and a price book.

`build_catalogue_request` says how to ask for the catalogue (`GET /api/models`, a
public route that needs no key) and `read_catalogue` reads the reply into
`{model: usd per request}`. A `PriceBook` answers `price(model)` from, in this
order: the user's overrides, the catalogue (fresh or from the file cache), and a
bundled table of estimates for the seven FLUX models.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from types import MappingProxyType
from typing import Any, Final

import attrs

from comet_replicate_async._exceptions import (
    ConfigurationError,
    UnexpectedResponseError,
)
from comet_replicate_async._sansio import (
    RawResponse,
    RequestSpec,
    error_from_response,
    excerpt,
)

__all__ = [
    "FALLBACK_AS_OF",
    "FALLBACK_PRICES",
    "Price",
    "PriceBook",
    "PriceSource",
    "build_catalogue_request",
    "read_catalogue",
]

CATALOGUE_PATH: Final = "/api/models"

#: When the bundled table was compiled. Its figures are ESTIMATES: Replicate's
#: published per-image list prices for these models, not CometAPI's (which
#: CometAPI's own pages state differently from one page to the next); they serve
#: only when neither the catalogue nor its cache can be read.
FALLBACK_AS_OF: Final = date(2026, 12, 1)
FALLBACK_PRICES: Final[Mapping[str, float]] = MappingProxyType(
    {
        "black-forest-labs/flux-schnell": 0.003,
        "black-forest-labs/flux-dev": 0.025,
        "black-forest-labs/flux-pro": 0.055,
        "black-forest-labs/flux-1.1-pro": 0.04,
        "black-forest-labs/flux-1.1-pro-ultra": 0.06,
        "black-forest-labs/flux-kontext-pro": 0.04,
        "black-forest-labs/flux-kontext-max": 0.08,
    }
)

# Where a record keeps its model id and its per-request price, most likely first.
_ID_KEYS: Final = ("id", "model", "model_id", "name")
_PRICE_KEYS: Final = ("per_request", "price_per_request", "per_image", "price")


class PriceSource(StrEnum):
    """Where a price came from."""

    OVERRIDE = "override"
    CATALOGUE = "catalogue"
    CACHE = "cache"
    FALLBACK = "fallback"


@attrs.frozen
class Price:
    """The price of one create of `model`, in US dollars, and where it came from.

    `as_of` is when that source was read (the catalogue's fetch time, the
    fallback table's date); None for an override.
    """

    model: str
    usd: float
    source: PriceSource
    as_of: datetime | date | None = None

    @property
    def decimal(self) -> Decimal:
        """`usd` as an exact decimal, for sums that must not drift (fifty times 0.01 is 0.50)."""
        return Decimal(repr(self.usd))


def build_catalogue_request() -> RequestSpec:
    """The catalogue call: `GET /api/models` on the API host."""
    return RequestSpec(
        kind="query",
        method="GET",
        path=CATALOGUE_PATH,
        headers={"Accept": "application/json"},
        authenticated=False,  # public: the key has no business there
    )


def read_catalogue(response: RawResponse) -> dict[str, float]:
    """Per-request prices in US dollars by catalogue id, from a catalogue reply.

    Tolerant by design, since the catalogue is documented only by example: the
    records may be the reply itself (a list) or under `data` (also `models` or
    `items`, also one level deeper); a record's id is its `id` (else `model`,
    `model_id`, `name`); its price is `pricing.per_request` (else a few other
    names, at the top level too), a number or a numeric string (`"$0.003"`).
    Records priced in tokens or seconds only, in another currency, or not
    readable are skipped.

    Raises:
        APIError: for an error status; `UnexpectedResponseError` for a reply that
            is not JSON or holds no list of records.
    """
    if not 200 <= response.status < 300:
        raise error_from_response(response)
    try:
        data = json.loads(response.body)
    except (ValueError, RecursionError):
        raise _unexpected(response, "the catalogue is not valid JSON") from None
    records = _records(data)
    if records is None:
        raise _unexpected(response, "the catalogue holds no list of models")
    prices: dict[str, float] = {}
    for record in records:
        if not isinstance(record, Mapping):
            continue
        model_id = _first_text(record, _ID_KEYS)
        usd = _per_request_usd(record)
        if model_id is not None and usd is not None:
            prices[model_id] = usd
    return prices


def _records(data: Any) -> list[Any] | None:
    for _ in range(3):  # the list itself, or up to two envelopes around it
        if isinstance(data, list):
            return data
        if not isinstance(data, Mapping):
            return None
        data = next(
            (data[key] for key in ("data", "models", "items") if key in data), None
        )
    return None


def _first_text(record: Mapping[str, Any], keys: Iterable[str]) -> str | None:
    for key in keys:
        value = record.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


def _per_request_usd(record: Mapping[str, Any]) -> float | None:
    pricing = record.get("pricing")
    for holder in (pricing, record):
        if not isinstance(holder, Mapping) or not _in_dollars(holder):
            continue
        for key in _PRICE_KEYS:
            usd = _amount(holder.get(key))
            if usd is not None:
                return usd
    return None


def _in_dollars(holder: Mapping[str, Any]) -> bool:
    # The catalogue writes units into the currency ("USD / M Tokens"): only the
    # dollar amount matters here, the per-request key says what it is per.
    currency = holder.get("currency")
    return not isinstance(currency, str) or currency.strip().upper().startswith("USD")


def _amount(value: object) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        try:
            value = Decimal(value.strip().removeprefix("$").strip())
        except InvalidOperation:
            return None
    if not isinstance(value, int | float | Decimal):
        return None
    usd = float(value)
    return usd if math.isfinite(usd) and usd >= 0 else None


def _unexpected(response: RawResponse, reason: str) -> UnexpectedResponseError:
    body = excerpt(response.body)
    return UnexpectedResponseError(
        f"GET {CATALOGUE_PATH}: {reason}: {body}" if body else reason,
        status_code=response.status,
        body=body,
    )


def _model_key(model: str) -> str:
    return model.strip().lower()


def _name_of(model: str) -> str:
    return _model_key(model).rsplit("/", 1)[-1]


def _checked_overrides(overrides: Mapping[str, float]) -> dict[str, float]:
    checked: dict[str, float] = {}
    for model, usd in overrides.items():
        amount = _amount(usd)
        if amount is None:
            raise ConfigurationError(
                f"price for {model!r} must be a non-negative number of US dollars, "
                f"got {usd!r}"
            )
        checked[_model_key(model)] = amount
    return checked


@attrs.frozen
class PriceBook:
    """Prices of creates, by model, each with its source.

    Args:
        overrides: `{"owner/name": usd}` from the user; they win over everything.
        catalogue: prices read from the catalogue, by catalogue id. Ids are
            matched to `owner/name` as they are, else by the part after the last
            `/` (the catalogue may list `flux-schnell` alone).
        catalogue_source: `CATALOGUE` if read just now, `CACHE` if from the file
            cache; ignored when `catalogue` is empty.
        catalogue_as_of: when the catalogue was fetched.
        fallback: the bundled table of estimates, used last.
        fallback_as_of: its date.
    """

    overrides: Mapping[str, float] = attrs.field(
        factory=dict, converter=_checked_overrides
    )
    catalogue: Mapping[str, float] = attrs.field(factory=dict)
    catalogue_source: PriceSource = PriceSource.CATALOGUE
    catalogue_as_of: datetime | None = None
    fallback: Mapping[str, float] = FALLBACK_PRICES
    fallback_as_of: date = FALLBACK_AS_OF
    _by_id: dict[str, float] = attrs.field(init=False, repr=False, eq=False)
    _by_name: dict[str, float] = attrs.field(init=False, repr=False, eq=False)
    _fallback_by_id: dict[str, float] = attrs.field(init=False, repr=False, eq=False)

    @_by_id.default
    def _index_ids(self) -> dict[str, float]:
        return {_model_key(key): usd for key, usd in self.catalogue.items()}

    @_by_name.default
    def _index_names(self) -> dict[str, float]:
        return {_name_of(key): usd for key, usd in self.catalogue.items()}

    @_fallback_by_id.default
    def _index_fallback(self) -> dict[str, float]:
        return {_model_key(key): usd for key, usd in self.fallback.items()}

    def get(self, model: str) -> Price | None:
        """The price of one create of `model`, or None when no source knows it."""
        key = _model_key(model)
        if key in self.overrides:
            return Price(model, self.overrides[key], PriceSource.OVERRIDE)
        usd = self._by_id.get(key, self._by_name.get(_name_of(model)))
        if usd is not None:
            return Price(model, usd, self.catalogue_source, self.catalogue_as_of)
        usd = self._fallback_by_id.get(key)
        if usd is not None:
            return Price(model, usd, PriceSource.FALLBACK, self.fallback_as_of)
        return None

    def price(self, model: str) -> tuple[float, PriceSource]:
        """`(usd, source)` for one create of `model`.

        Raises:
            ConfigurationError: no source knows the model's price (a cost cap
                cannot be kept without one); it says how to give one.
        """
        found = self.get(model)
        if found is None:
            raise ConfigurationError(
                f"no price is known for {model}: give one with "
                f"prices={{{model!r}: USD}} (or --price {model}=USD on the command line)"
            )
        return found.usd, found.source
