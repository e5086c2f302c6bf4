"""An output file that answers 404 or 410 after success is `OutputExpiredError`."""

from __future__ import annotations

from pathlib import Path

import pytest

from comet_replicate_async import FluxSchnell, OutputExpiredError, PollPolicy
from comet_replicate_async._config import ApiKey, RequestTimeout
from comet_replicate_async._sansio import download_error
from comet_replicate_async._transports.aiohttp import AiohttpTransport
from comet_replicate_async.testing import FakeCometAPI, Fault, Latency

from helpers import SCHNELL, session_for

pytestmark = pytest.mark.anyio

QUICK_POLLS = PollPolicy(min_interval=0.02, max_interval=0.02)


@pytest.mark.parametrize("status", [404, 410])
async def test_a_file_gone_after_success_is_output_expired(
    fake_comet: FakeCometAPI, tmp_path: Path, status: int
) -> None:
    async with session_for(fake_comet) as session:
        prediction = await session.run(SCHNELL, {"prompt": "a paper boat"})
    fake_comet.script("file", Fault.status(status))
    files = AiohttpTransport(
        fake_comet.base_url, ApiKey(fake_comet.api_key), RequestTimeout(2)
    )
    try:
        refused = await files.download(prediction.output_urls[0], tmp_path / "0.webp")
    finally:
        await files.aclose()

    assert refused is not None
    error = download_error(refused, prediction)
    assert isinstance(error, OutputExpiredError)
    assert error.prediction_id == prediction.id
    assert error.status_code == status
    assert error.age is not None
    assert error.age >= 0
    assert not (tmp_path / "0.webp").exists()
    assert fake_comet.stats.count("file", status) == 1


async def test_session_download_of_an_expired_file_raises_output_expired(
    fake_comet: FakeCometAPI, tmp_path: Path
) -> None:
    async with session_for(fake_comet) as session:
        prediction = await session.run(SCHNELL, {"prompt": "a paper boat"})
        fake_comet.script("file", Fault.status(404))
        with pytest.raises(OutputExpiredError) as expired:
            await session.download(prediction, tmp_path)

    assert expired.value.prediction_id == prediction.id
    assert expired.value.age is not None
    assert prediction.id in str(expired.value)
    assert "s old" in str(expired.value)
    assert list(tmp_path.iterdir()) == []


async def test_a_batch_item_says_how_many_outputs_the_filter_dropped() -> None:
    inputs = [{"prompt": "three", "num_outputs": 3}, {"prompt": "one"}]
    async with FakeCometAPI(
        filtered_outputs=1, default_latency=Latency.constant(0.05)
    ) as fake:
        async with session_for(fake, poll=QUICK_POLLS) as session:
            items = await session.gather(SCHNELL, inputs)
            typed = await session.gather(FluxSchnell, [FluxSchnell("x", num_outputs=4)])

    assert [len(item.prediction.output_urls) for item in items if item.prediction] == [
        2,
        1,
    ]
    assert [item.missing_outputs for item in items] == [1, 0]
    assert all(item.ok for item in items)
    assert typed[0].missing_outputs == 1
