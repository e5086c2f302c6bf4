"""The spend-control pieces together, against FakeCometAPI over HTTP: prices from
its catalogue, a ledger reserving before each create, and a rerun with a larger
cap. The session and the command line do not use them yet; this test plays the
batch engine's part with public calls."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from comet_replicate_async import BudgetExceededError, PollPolicy, Prediction, Session
from comet_replicate_async._budget import BudgetLedger, outcome_of
from comet_replicate_async._config import ApiKey, RequestTimeout
from comet_replicate_async._estimates import billed_images, estimate_cost
from comet_replicate_async._price_cache import load_price_book
from comet_replicate_async._prices import PriceBook, PriceSource
from comet_replicate_async._transport import AiohttpTransport
from comet_replicate_async.testing import FakeCometAPI

from helpers import SCHNELL, session_for

pytestmark = pytest.mark.anyio

QUICK_POLLS = PollPolicy(min_interval=0.02, max_interval=0.02)


async def prices_from(fake: FakeCometAPI, cache_dir: Path) -> PriceBook:
    transport = AiohttpTransport(fake.base_url, ApiKey(fake.api_key), RequestTimeout(2))
    transport.open()
    try:
        return await load_price_book(
            transport, base_url=fake.base_url, cache_dir=cache_dir
        )
    finally:
        await transport.aclose()


async def run_capped(
    session: Session, ledger: BudgetLedger, inputs: dict[int, dict[str, str]]
) -> dict[int, Prediction | BaseException]:
    results: dict[int, Prediction | BaseException] = {}

    async def one(index: int, input: dict[str, str]) -> None:
        try:
            reservation = ledger.reserve(SCHNELL, images=billed_images(input))
        except BudgetExceededError as refused:
            results[index] = refused
            return
        try:
            results[index] = await session.run(SCHNELL, input)
        except Exception as error:  # each input's own outcome, as a batch keeps it
            results[index] = error
        ledger.settle(reservation, outcome_of(results[index]))

    async with anyio.create_task_group() as group:
        for index, input in inputs.items():
            group.start_soon(one, index, input)
    return results


async def test_a_fifty_cent_cap_creates_fifty_and_a_rerun_finishes_the_rest(
    tmp_path: Path,
) -> None:
    inputs = {index: {"prompt": f"boat {index}"} for index in range(100)}
    async with FakeCometAPI(prices={SCHNELL: 0.01}) as fake:
        book = await prices_from(fake, tmp_path)
        assert book.price(SCHNELL) == (0.01, PriceSource.CATALOGUE)
        estimate = estimate_cost([(SCHNELL, input) for input in inputs.values()], book)
        assert estimate.total == 1.0

        with anyio.fail_after(30):
            async with session_for(fake, poll=QUICK_POLLS) as session:
                first = await run_capped(session, BudgetLedger(book, cap=0.50), inputs)
            refused = {
                index: inputs[index]
                for index, result in first.items()
                if isinstance(result, BudgetExceededError)
            }
            assert fake.stats.created == 50
            assert len(refused) == 50
            assert all(isinstance(first[i], Prediction) for i in first.keys() - refused)

            rerun = BudgetLedger(book, cap=1.00, carried=0.50)
            async with session_for(fake, poll=QUICK_POLLS) as session:
                second = await run_capped(session, rerun, refused)

    assert all(isinstance(result, Prediction) for result in second.values())
    assert fake.stats.created == 100
    assert fake.stats.duplicates == 0
    assert rerun.spent == pytest.approx(1.00)
    assert rerun.reserved == 0
    assert fake.stats.count("catalogue") == 1
