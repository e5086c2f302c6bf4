"""An output file that answers 404 or 410 after success is `OutputExpiredError`."""

from __future__ import annotations

from pathlib import Path

import pytest

from comet_replicate_async import OutputExpiredError
from comet_replicate_async._config import ApiKey, RequestTimeout
from comet_replicate_async._sansio import download_error
from comet_replicate_async._transport import AiohttpTransport
from comet_replicate_async.testing import FakeCometAPI, Fault

from helpers import SCHNELL, session_for

pytestmark = pytest.mark.anyio


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
