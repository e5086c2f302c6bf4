"""The budget ledger: pure bookkeeping of a cost cap."""

from __future__ import annotations

import threading

import anyio
import anyio.lowlevel
import pytest

from comet_replicate_async import (
    AmbiguousSubmitError,
    APIConnectionError,
    APIError,
    BadRequestError,
    BudgetExceededError,
    ConfigurationError,
    Prediction,
    PredictionCanceled,
    PredictionFailed,
    PredictionTimeout,
    RateLimitError,
    ServerError,
    Status,
)
from comet_replicate_async._money.ledger import (
    BudgetLedger,
    Charge,
    Reservation,
    Settlement,
    charge_for,
    outcome_of,
)
from comet_replicate_async._money.prices import PriceBook, PriceSource

from helpers import PRO, SCHNELL

BOOK = PriceBook(overrides={SCHNELL: 0.01, PRO: 0.05})


@pytest.mark.parametrize(
    ("outcome", "charge"),
    [
        (Status.SUCCEEDED, Charge.BILLED),
        (Status.FAILED, Charge.BILLED),
        (Status.CANCELED, Charge.BILLED),
        (Status.ABORTED, Charge.FREE),
        ("not_created", Charge.FREE),
        ("ambiguous", Charge.POSSIBLY_BILLED),
        (Status.PROCESSING, Charge.POSSIBLY_BILLED),
        (Status("queued-somewhere"), Charge.POSSIBLY_BILLED),
    ],
)
def test_what_each_outcome_costs(outcome: Settlement, charge: Charge) -> None:
    assert charge_for(outcome) is charge


def test_a_cap_of_fifty_cents_admits_exactly_fifty_one_cent_creates() -> None:
    ledger = BudgetLedger(BOOK, cap=0.50)

    held = [ledger.reserve(SCHNELL) for _ in range(50)]
    with pytest.raises(BudgetExceededError) as caught:
        ledger.reserve(SCHNELL)

    assert len(held) == 50
    assert ledger.reserved == pytest.approx(0.50)
    assert caught.value.model == SCHNELL
    assert caught.value.cap == 0.50
    assert "nothing was sent for this input" in str(caught.value)


def test_billed_outcomes_stay_spent_and_free_ones_give_the_money_back() -> None:
    ledger = BudgetLedger(BOOK, cap=0.04)
    settled: dict[Settlement, Reservation] = {
        outcome: ledger.reserve(SCHNELL)
        for outcome in (Status.SUCCEEDED, Status.FAILED, Status.CANCELED, "ambiguous")
    }
    with pytest.raises(BudgetExceededError):
        ledger.reserve(SCHNELL)

    for outcome, reservation in settled.items():
        ledger.settle(reservation, outcome)

    assert ledger.spent == pytest.approx(0.04)
    assert ledger.possibly_spent == pytest.approx(0.01)
    assert ledger.reserved == 0
    assert ledger.remaining == pytest.approx(0)
    with pytest.raises(BudgetExceededError):
        ledger.reserve(SCHNELL)


@pytest.mark.parametrize("outcome", [Status.ABORTED, "not_created"])
def test_aborted_and_uncreated_release_their_reservation(outcome: Settlement) -> None:
    ledger = BudgetLedger(BOOK, cap=0.01)
    first = ledger.reserve(SCHNELL)

    assert ledger.settle(first, outcome) is Charge.FREE
    again = ledger.reserve(SCHNELL)

    assert ledger.spent == 0
    assert ledger.reserved == pytest.approx(0.01)
    ledger.release(again)
    assert ledger.reserved == 0


def test_a_reservation_is_settled_once() -> None:
    ledger = BudgetLedger(BOOK, cap=1.0)
    reservation = ledger.reserve(PRO)
    ledger.settle(reservation, Status.SUCCEEDED)

    with pytest.raises(ValueError, match="not open"):
        ledger.settle(reservation, Status.SUCCEEDED)
    with pytest.raises(ValueError, match="not open"):
        BudgetLedger(BOOK).settle(reservation, Status.SUCCEEDED)
    assert ledger.spent == pytest.approx(0.05)


def test_several_images_reserve_several_prices() -> None:
    ledger = BudgetLedger(BOOK, cap=0.05)

    reservation = ledger.reserve(SCHNELL, images=4)

    assert reservation.cost == pytest.approx(0.04)
    assert reservation.source is PriceSource.OVERRIDE
    with pytest.raises(BudgetExceededError):
        ledger.reserve(SCHNELL, images=2)


def test_a_rerun_carries_what_earlier_runs_spent() -> None:
    ledger = BudgetLedger(BOOK, cap=1.00, carried=0.50)

    admitted = 0
    while True:
        try:
            ledger.reserve(SCHNELL)
        except BudgetExceededError:
            break
        admitted += 1

    assert admitted == 50
    assert ledger.spent == pytest.approx(0.50)


def test_an_unknown_price_is_an_error_only_under_a_cap() -> None:
    with pytest.raises(ConfigurationError, match="no price is known"):
        BudgetLedger(BOOK, cap=1.0).reserve("someone/else")

    free = BudgetLedger(BOOK).reserve("someone/else")
    assert free.cost == 0
    assert free.source is None


def test_without_a_cap_the_books_are_kept() -> None:
    ledger = BudgetLedger(BOOK)
    for _ in range(3):
        ledger.settle(ledger.reserve(PRO), Status.SUCCEEDED)

    assert ledger.spent == pytest.approx(0.15)
    assert ledger.remaining is None


@pytest.mark.anyio
async def test_concurrent_tasks_never_pass_the_cap() -> None:
    ledger = BudgetLedger(BOOK, cap=0.30)
    admitted: list[int] = []
    refused: list[int] = []

    async def create(index: int) -> None:
        try:
            reservation = ledger.reserve(SCHNELL)
        except BudgetExceededError:
            refused.append(index)
            return
        admitted.append(index)
        await (
            anyio.lowlevel.checkpoint()
        )  # the create's await: other tasks reserve meanwhile
        ledger.settle(reservation, Status.SUCCEEDED)

    async with anyio.create_task_group() as group:
        for index in range(100):
            group.start_soon(create, index)

    assert len(admitted) == 30
    assert len(refused) == 70
    assert ledger.spent == pytest.approx(0.30)


def test_threads_sharing_a_ledger_never_pass_the_cap() -> None:
    ledger = BudgetLedger(BOOK, cap=0.25)
    admitted: list[bool] = []
    start = threading.Barrier(8)

    def worker() -> None:
        start.wait(timeout=10)
        for _ in range(20):
            try:
                reservation = ledger.reserve(SCHNELL)
            except BudgetExceededError:
                continue
            admitted.append(True)
            ledger.settle(reservation, Status.FAILED)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)

    assert len(admitted) == 25
    assert ledger.spent == pytest.approx(0.25)


def prediction(status: Status) -> Prediction:
    return Prediction(id="p1", status=status, model=SCHNELL)


def api_error(error_class: type[APIError], status: int) -> APIError:
    return error_class("refused", status_code=status)


@pytest.mark.parametrize(
    ("result", "outcome"),
    [
        (prediction(Status.SUCCEEDED), Status.SUCCEEDED),
        (PredictionFailed("nsfw", prediction(Status.FAILED)), Status.FAILED),
        (PredictionCanceled("x", prediction(Status.ABORTED)), Status.ABORTED),
        (PredictionTimeout("late", prediction(Status.PROCESSING)), Status.PROCESSING),
        (PredictionTimeout("create never answered", None), "ambiguous"),
        (AmbiguousSubmitError(SCHNELL, {}, TimeoutError()), "ambiguous"),
        (api_error(RateLimitError, 429), "not_created"),
        (api_error(BadRequestError, 400), "not_created"),
        (api_error(ServerError, 502), "ambiguous"),
        (APIConnectionError("refused", request_sent=False), "not_created"),
        (APIConnectionError("reset", request_sent=True), "ambiguous"),
        (BudgetExceededError(SCHNELL, price=0.01, cap=0, committed=0), "not_created"),
        (RuntimeError("anything else"), "ambiguous"),
    ],
)
def test_outcome_of_a_call(
    result: Prediction | BaseException, outcome: Settlement
) -> None:
    assert outcome_of(result) == outcome


@pytest.mark.parametrize("options", [{"cap": -1.0}, {"carried": -0.5}])
def test_negative_money_is_refused(options: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="must be >= 0"):
        BudgetLedger(BOOK, **options)
