"""The budget ledger: pure bookkeeping of a cost cap, with no I/O and no clock.

Before each create the caller reserves its price (`reserve`); the reservation is
refused with `BudgetExceededError` when spent plus reserved plus this price would
pass the cap, and then nothing may be sent. Once the outcome is known the caller
settles it (`settle`): a billed or possibly billed outcome moves the reservation
into `spent`, a free one releases it.

Sums are kept in `Decimal`, so fifty creates at $0.01 reach a $0.50 cap exactly
(in floats they would pass it at the fiftieth). Every method runs without
awaiting and under a lock, so tasks on one event loop and threads alike may use
one ledger.
"""

from __future__ import annotations

import itertools
import threading
from decimal import Decimal
from enum import StrEnum
from typing import Final, Literal

import attrs

from comet_replicate_async._exceptions import (
    AmbiguousSubmitError,
    APIConnectionError,
    APIError,
    BudgetExceededError,
    PredictionError,
)
from comet_replicate_async._values import Prediction, Status

from .prices import PriceBook, PriceSource

__all__ = [
    "BudgetLedger",
    "Charge",
    "Reservation",
    "Settlement",
    "charge_for",
    "outcome_of",
]

#: What a create came to. A `Status` is its prediction's last known status; the
#: two words are for creates without one: `"ambiguous"` (sent, outcome unknown:
#: it may have been created and billed) and `"not_created"` (provably refused,
#: e.g. 429 or a connection that failed before sending).
Settlement = Status | Literal["ambiguous", "not_created"]


class Charge(StrEnum):
    """How an outcome is counted against the cap."""

    BILLED = "billed"
    POSSIBLY_BILLED = "possibly_billed"
    FREE = "free"


_BILLED: Final = frozenset({Status.SUCCEEDED, Status.FAILED, Status.CANCELED})


def charge_for(outcome: Settlement) -> Charge:
    """How `outcome` counts: succeeded, failed and canceled are billed; aborted
    (stopped before it started) and not created are free; an ambiguous create,
    or a prediction left unfinished (it runs on, and may be billed), is counted
    as possibly billed."""
    if outcome == "not_created" or outcome == Status.ABORTED:
        return Charge.FREE
    if outcome in _BILLED:
        return Charge.BILLED
    return Charge.POSSIBLY_BILLED


def outcome_of(result: Prediction | BaseException) -> Settlement:
    """The outcome of a create from what the call gave: a prediction or an error.

    A prediction's error stands for its last known status. An error without a
    prediction is `"not_created"` only where the server provably made nothing (a
    3xx or 4xx reply, such as a final 429; a connection that failed before
    sending; a refused budget); anything else may have created a prediction and
    is `"ambiguous"`, including a timeout or abandonment while the create was
    awaited. A caller that knows its create was never sent releases instead.
    """
    if isinstance(result, Prediction):
        return result.status
    if isinstance(result, PredictionError) and result.prediction is not None:
        return result.prediction.status
    if isinstance(result, BudgetExceededError):
        return "not_created"
    if isinstance(result, AmbiguousSubmitError):
        return "ambiguous"
    if isinstance(result, APIConnectionError):
        return "ambiguous" if result.request_sent else "not_created"
    if isinstance(result, APIError) and 300 <= result.status_code < 500:
        return "not_created"
    return "ambiguous"


@attrs.frozen
class Reservation:
    """The price held for one create until its outcome is settled.

    `source` is None when no price is known and no cap is set (held at zero).
    """

    number: int
    model: str
    usd: Decimal
    source: PriceSource | None

    @property
    def cost(self) -> float:
        """The price held, in US dollars."""
        return float(self.usd)


def _as_decimal(usd: float | Decimal) -> Decimal:
    return usd if isinstance(usd, Decimal) else Decimal(repr(float(usd)))


@attrs.define(eq=False)
class BudgetLedger:
    """Spend and reservations against a cap, in US dollars.

    Args:
        prices: where each create's price comes from.
        cap: the most that may be spent; None keeps the books without a limit
            (and then a model without a known price is reserved at zero).
        carried: dollars spent by earlier runs of the same batch (from its
            journal), so a rerun with a larger cap goes on where the last stopped.
    """

    prices: PriceBook
    cap: float | None = attrs.field(
        default=None, validator=attrs.validators.optional(attrs.validators.ge(0))
    )
    carried: float = attrs.field(default=0.0, validator=attrs.validators.ge(0))
    _spent: Decimal = attrs.field(init=False)
    _possibly: Decimal = attrs.field(init=False, default=Decimal(0))
    _open: dict[int, Reservation] = attrs.field(init=False, factory=dict)
    _numbers: itertools.count[int] = attrs.field(
        init=False, factory=lambda: itertools.count(1)
    )
    _lock: threading.Lock = attrs.field(init=False, factory=threading.Lock)

    def __attrs_post_init__(self) -> None:
        self._spent = _as_decimal(self.carried)

    @property
    def spent(self) -> float:
        """Dollars billed or possibly billed, including those `carried`."""
        return float(self._spent)

    @property
    def possibly_spent(self) -> float:
        """The part of `spent` from ambiguous or unfinished outcomes."""
        return float(self._possibly)

    @property
    def reserved(self) -> float:
        """Dollars held for creates whose outcome is not settled yet."""
        with self._lock:
            return float(sum((r.usd for r in self._open.values()), Decimal(0)))

    @property
    def remaining(self) -> float | None:
        """Dollars left under the cap after spent and reserved; None without a cap."""
        if self.cap is None:
            return None
        with self._lock:
            return float(_as_decimal(self.cap) - self._committed())

    def _committed(self) -> Decimal:
        return self._spent + sum((r.usd for r in self._open.values()), Decimal(0))

    def reserve(self, model: str, *, images: int = 1) -> Reservation:
        """Hold the price of one create of `model` (billed `images` times).

        Raises:
            BudgetExceededError: the cap would be passed; send nothing.
            ConfigurationError: a cap is set and no price is known for `model`.
        """
        source: PriceSource | None
        if self.cap is None and self.prices.get(model) is None:
            usd, source = Decimal(0), None
        else:
            price, source = self.prices.price(model)
            usd = _as_decimal(price) * max(1, images)
        with self._lock:
            if self.cap is not None:
                committed = self._committed()
                if committed + usd > _as_decimal(self.cap):
                    raise BudgetExceededError(
                        model,
                        price=float(usd),
                        cap=self.cap,
                        committed=float(committed),
                    )
            reservation = Reservation(next(self._numbers), model, usd, source)
            self._open[reservation.number] = reservation
        return reservation

    def settle(self, reservation: Reservation, outcome: Settlement) -> Charge:
        """Count `reservation` as `outcome` says: spent, or released when free.

        Raises:
            ValueError: the reservation is not open (settled already, or another
                ledger's).
        """
        charge = charge_for(outcome)
        with self._lock:
            if self._open.get(reservation.number) is not reservation:
                raise ValueError(f"reservation {reservation.number} is not open here")
            del self._open[reservation.number]
            if charge is not Charge.FREE:
                self._spent += reservation.usd
            if charge is Charge.POSSIBLY_BILLED:
                self._possibly += reservation.usd
        return charge

    def is_open(self, reservation: Reservation) -> bool:
        """Whether `reservation` is held here and not settled yet."""
        with self._lock:
            return self._open.get(reservation.number) is reservation

    def carry(self, usd: float | Decimal) -> None:
        """Count `usd` more as spent by earlier runs (a batch's journal records it)."""
        if usd < 0:
            raise ValueError(f"carried spend must be 0 or more, got {usd}")
        with self._lock:
            self._spent += _as_decimal(usd)

    def release(self, reservation: Reservation) -> None:
        """Give back a reservation whose create was not sent (the same as settling
        it as `"not_created"`)."""
        self.settle(reservation, "not_created")
