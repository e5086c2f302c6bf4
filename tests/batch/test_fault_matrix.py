"""A batch meets every fault at once: nothing lost, nothing created twice.

FAULT_MATRIX_SIZE sets the batch size (default 400 keeps the suite quick; the
acceptance runs use 2000). The fake's create limit is scaled from "300 a minute"
to the same share of a one-second window, so the run takes seconds, not minutes.
"""

from __future__ import annotations

import os
from collections import Counter

import anyio
import pytest

from comet_replicate_async import AmbiguousSubmitError, BatchItem, Status
from comet_replicate_async.testing import FakeCometAPI, Latency

from helpers import SCHNELL, session_for

pytestmark = pytest.mark.anyio

SIZE = int(os.environ.get("FAULT_MATRIX_SIZE", "400"))


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_fault_matrix_every_input_accounted_for_and_none_paid_twice() -> None:
    fake = FakeCometAPI(
        default_latency=Latency.uniform(0.05, 0.3),
        server_error_rate=0.05,
        ghost_share=0.5,
        reset_rate=0.02,
        malformed_rate=0.01,
        slow_rate=0.02,
        slow_delay=0.3,
        creates_per_minute=60,
        rate_window=1.0,
    )
    inputs = [{"prompt": f"input {index}"} for index in range(SIZE)]

    async with fake:
        async with session_for(fake, max_concurrency=100) as session:
            with anyio.fail_after(60 + SIZE * 0.05):
                items = await session.gather(SCHNELL, inputs)
        records = list(fake.predictions.values())
        throttled = fake.stats.count("create", 429)

    # Every input has exactly one outcome, in order.
    assert [item.index for item in items] == list(range(SIZE))
    assert all(item.error is not None or item.prediction is not None for item in items)
    # Nothing was created twice.
    assert fake.stats.duplicates == 0
    # Every prediction the server created is resolved, or its input says ambiguous.
    by_prompt = {item.input["prompt"]: item for item in items}
    for record in records:
        item = by_prompt[record.input["prompt"]]
        resolved = item.prediction is not None and item.prediction.id == record.id
        assert resolved or isinstance(item.error, AmbiguousSubmitError), (record, item)
    # Only ambiguous creates fail: queries ride out every fault.
    outcomes = Counter(_outcome(item) for item in items)
    assert set(outcomes) <= {"succeeded", "ambiguous"}
    assert outcomes["succeeded"] > SIZE * 0.8
    assert throttled > 0  # the create limit really bit
    assert session.stats.rate_limited >= throttled


def _outcome(item: BatchItem) -> str:
    if (
        item.ok
        and item.prediction is not None
        and item.prediction.status is Status.SUCCEEDED
    ):
        return "succeeded"
    if isinstance(item.error, AmbiguousSubmitError):
        return "ambiguous"
    return f"{type(item.error).__name__}: {item.error}"
