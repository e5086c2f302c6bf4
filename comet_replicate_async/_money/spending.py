"""A session's spend control: its prices, loaded once, and its budget ledger.

Every create goes through `spend`: its price is reserved before it is sent, and
the reservation is settled once the session learns the outcome: the create
failed, a finished status came back (in the create's reply, or later from the
poller: `ended`), or the session closed first (`close`: counted as possibly
billed, since the prediction runs on).

Prices are looked up only when a cap needs one: without `max_cost` the session
sends no catalogue request, and only the user's own prices are counted. With
neither a cap nor prices, no books are kept at all (a create costs nothing more).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import anyio

from comet_replicate_async._exceptions import AmbiguousSubmitError, CometReplicateError
from comet_replicate_async._journal.base import JournalRecord
from comet_replicate_async._transports.base import Transport
from comet_replicate_async._values import Prediction, Status

from .estimates import billed_images
from .ledger import BudgetLedger, Reservation, outcome_of
from .price_cache import load_price_book
from .prices import PriceBook

__all__ = ["Spending"]


class Spending:
    """The prices and the ledger of one session; see the module docstring."""

    def __init__(
        self,
        transport: Transport,
        *,
        base_url: str,
        cap: float | None,
        prices: Mapping[str, float] | None,
    ) -> None:
        self._transport = transport
        self._base_url = base_url
        self._overrides = dict(prices or {})
        # The user's prices alone until a cap needs another: no request, and no
        # estimate counted as if it were a bill.
        self.ledger = BudgetLedger(
            PriceBook(overrides=self._overrides, fallback={}), cap=cap
        )
        self._loaded = cap is None
        self._keeping = cap is not None or bool(self._overrides)
        self._loading: anyio.Lock | None = None
        # Reservations of created predictions, until their end is seen.
        self._running: dict[str, Reservation] = {}
        self._running_numbers: set[int] = set()

    async def reserve(self, model: str, input: Mapping[str, Any]) -> Reservation | None:
        """Hold the price of one create of `input` (per image it asks for); None
        when the session keeps no books (no cap, no prices).

        Raises:
            BudgetExceededError: the cap would be passed; send nothing.
            ConfigurationError: a cap is set and no source knows the price.
        """
        if not self._keeping:
            return None
        if not self._loaded and self.ledger.prices.get(model) is None:
            await self._load_prices()
        return self.ledger.reserve(model, images=billed_images(input))

    async def _load_prices(self) -> None:
        if self._loading is None:
            self._loading = anyio.Lock()
        async with self._loading:
            if self._loaded:
                return
            self.ledger.prices = await load_price_book(
                self._transport, base_url=self._base_url, overrides=self._overrides
            )
            self._loaded = True

    def created(self, reservation: Reservation, prediction: Prediction) -> None:
        """The create answered: settle now if it is finished, else at its end."""
        if prediction.done:
            self.ledger.settle(reservation, prediction.status)
        else:
            self._running[prediction.id] = reservation
            self._running_numbers.add(reservation.number)

    def create_failed(self, reservation: Reservation, error: BaseException) -> None:
        """The create raised. Only `AmbiguousSubmitError` may hide a prediction
        among the session's create errors; a cancellation may too."""
        if isinstance(error, CometReplicateError) and not isinstance(
            error, AmbiguousSubmitError
        ):
            self.ledger.settle(reservation, "not_created")
        else:
            self.ledger.settle(reservation, outcome_of(error))

    def unsent(self, reservation: Reservation) -> None:
        """Give back a reservation whose create never started: a no-op once the
        create took it (settled, or waiting for its prediction's end)."""
        taken = reservation.number in self._running_numbers
        if not taken and self.ledger.is_open(reservation):
            self.ledger.release(reservation)

    def ended(self, prediction: Prediction) -> None:
        """A prediction's finished status was seen."""
        reservation = self._running.pop(prediction.id, None)
        if reservation is not None:
            self._running_numbers.discard(reservation.number)
            self.ledger.settle(reservation, prediction.status)

    @staticmethod
    def journal_cost(reservation: Reservation | None) -> float | None:
        """What a journal records as the cost of a create: None when unpriced."""
        if reservation is None or reservation.source is None:
            return None
        return reservation.cost

    async def carry(self, records: Mapping[int, JournalRecord], model: str) -> None:
        """Count what earlier runs of a batch's journal spent against the cap.

        A record without a cost (a journal written without prices) counts at one
        image of its model's price (`model` when the record names none), when a
        cap needs one.
        """
        spent = Decimal(0)  # exact: fifty records of 0.01 make 0.50, not more
        unpriced: Counter[str] = Counter()
        for record in records.values():
            if record.prediction and record.prediction.get("status") == Status.ABORTED:
                continue  # stopped before it started: free
            if record.cost is not None:
                spent += Decimal(repr(record.cost))
            else:
                unpriced[record.model or model] += 1
        if unpriced and self.ledger.cap is not None:
            if not self._loaded:
                await self._load_prices()
            for name, count in unpriced.items():
                price = self.ledger.prices.get(name)
                if price is not None:
                    spent += price.decimal * count
        if spent:
            self.ledger.carry(spent)

    def close(self) -> None:
        """The session closed: what it never saw end runs on, possibly billed."""
        running, self._running = self._running, {}
        self._running_numbers.clear()
        for reservation in running.values():
            self.ledger.settle(reservation, "ambiguous")
