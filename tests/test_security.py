"""The key goes to the API host only, and shows up nowhere else."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from comet_replicate_async import UnexpectedResponseError
from comet_replicate_async.testing import FakeCometAPI, Fault, Latency

from helpers import PRO, SCHNELL, session_for

pytestmark = pytest.mark.anyio


async def test_authorization_reaches_only_the_api_routes(tmp_path: Path) -> None:
    async with FakeCometAPI(default_latency=Latency.constant(0.05)) as fake:
        async with session_for(fake) as session:
            schnell = await session.run(SCHNELL, {"prompt": "x", "num_outputs": 3})
            pro = await session.run(PRO, {"prompt": "y"})
            files = await session.download(schnell, tmp_path) + await session.download(
                pro, tmp_path
            )
            fake.script("query", Fault.redirect())
            with pytest.raises(UnexpectedResponseError):
                await session.get(pro.id)
        log = list(fake.stats.requests_log)

    api = [r for r in log if r.route in ("create", "query")]
    elsewhere = [r for r in log if r.route not in ("create", "query")]
    assert len(files) == 4
    assert all(path.read_bytes().startswith(b"\x89PNG") for path in files)
    assert not list(tmp_path.glob("*.part"))
    assert {r.route for r in elsewhere} == {"file"}  # the redirect target: never
    assert all(r.headers.get("Authorization") == f"Bearer {fake.api_key}" for r in api)
    assert all("Authorization" not in r.headers for r in elsewhere)


async def test_download_names_and_retries(tmp_path: Path) -> None:
    async with FakeCometAPI(default_latency=Latency.constant(0.05)) as fake:
        async with session_for(fake) as session:
            pred = await session.run(SCHNELL, {"prompt": "x", "num_outputs": 2})
            fake.script("file", Fault.status(503), Fault.status(502))
            paths = await session.download(pred, tmp_path / "out", stem="boat")

    assert [path.name for path in paths] == ["boat-0.webp", "boat-1.webp"]
    assert all(path.stat().st_size > 0 for path in paths)
    assert session.stats.retries == 2


async def test_key_absent_from_debug_logs_reprs_errors_and_stats(
    caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    caplog.set_level(logging.DEBUG)
    async with FakeCometAPI(
        api_key="sk-very-secret-test-key",
        default_latency=Latency.uniform(0.02, 0.1),
        server_error_rate=0.1,
        reset_rate=0.05,
        malformed_rate=0.05,
        seed=3,
    ) as fake:
        async with session_for(fake, max_concurrency=10) as session:
            items = await session.gather(
                SCHNELL, [{"prompt": f"p{i}"} for i in range(40)]
            )
            for item in items:
                if item.prediction is not None and item.ok:
                    await session.download(item.prediction, tmp_path)
            texts = [repr(session), repr(session.stats), str(session.stats)]

    texts += [f"{item!r} {item.error} {item.error!r}" for item in items]
    texts += [record.getMessage() for record in caplog.records]
    texts += [str(record.exc_info) for record in caplog.records if record.exc_info]
    assert any(item.error for item in items)  # errors really were rendered
    assert any(record.levelno == logging.DEBUG for record in caplog.records)
    assert not [text for text in texts if "sk-very-secret-test-key" in text]
