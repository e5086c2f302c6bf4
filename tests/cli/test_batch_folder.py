"""The command line's batch folder on the library engine, run in-process on the fake."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import pytest

from comet_replicate_async._cli._batch_folder import run_bulk
from comet_replicate_async._cli._batch_report import BulkOptions, BulkSummary
from comet_replicate_async._cli._prompts import PromptFile, PromptItem
from comet_replicate_async.testing import FakeCometAPI, Fault, Latency

from helpers import SCHNELL, eventually, session_for

pytestmark = pytest.mark.anyio


def prompt_file(*prompts: str) -> PromptFile:
    items = tuple(
        PromptItem(index=n, key=str(n), line=n + 1, input={"prompt": prompt})
        for n, prompt in enumerate(prompts)
    )
    return PromptFile(name="prompts.txt", digest="-", items=items)


def results(out: Path) -> list[dict[str, Any]]:
    lines = (out / "results.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def still_processing(normal: Any) -> Any:
    return {**normal, "status": "processing", "output": None, "completed_at": None}


async def test_downloads_start_while_later_predictions_still_run(
    tmp_path: Path,
) -> None:
    out = tmp_path / "out"
    prompts = prompt_file("a quick boat", "a slow owl")
    stop = anyio.Event()
    summaries: list[BulkSummary] = []
    async with FakeCometAPI(default_latency=Latency.constant(0.05)) as fake:
        # The owl answers "processing" to every poll for as long as the batch runs.
        fake.script_polls(
            lambda record: record.input["prompt"] == "a slow owl",
            Fault.raw(still_processing),
            repeat_last=True,
        )
        async with session_for(fake) as session, anyio.create_task_group() as group:

            async def batch() -> None:
                options = BulkOptions(model=SCHNELL, out_dir=out)
                summaries.append(await run_bulk(session, prompts, options, stop=stop))

            group.start_soon(batch)
            await eventually(lambda: any(out.glob("00000-*-0.webp")), within=20)
            running = session.stats.in_flight
            still_batching = not summaries
            stop.set()

    assert still_batching
    assert running == 1  # the owl
    boat, owl = results(out)
    assert boat["outcome"] == "succeeded"
    assert (out / boat["files"][0]).read_bytes().startswith(b"\x89PNG")
    assert owl["outcome"] == "created"
    assert "a rerun picks it up" in owl["error"]
    assert summaries[0].interrupted


async def test_a_failed_download_is_recorded_and_retried_by_a_rerun(
    tmp_path: Path,
) -> None:
    out = tmp_path / "out"
    prompts = prompt_file("a boat", "an owl")
    options = BulkOptions(model=SCHNELL, out_dir=out)
    async with FakeCometAPI(default_latency=Latency.constant(0.02)) as fake:
        # Refused, not retried: the first file asked for is not saved.
        fake.script("file", Fault.status(403))
        async with session_for(fake) as session:
            first = await run_bulk(session, prompts, options)
        first_lines = results(out)
        api_requests = fake.stats.requests.copy()
        async with session_for(fake) as session:
            again = await run_bulk(session, prompts, options)
        second_lines = results(out)
        created = fake.stats.created

    failed = [line for line in first_lines if line["error"]]
    assert len(failed) == 1
    assert failed[0]["outcome"] == "succeeded"
    assert failed[0]["files"] == []
    assert failed[0]["error"].startswith("download failed: ")
    assert first.progress.succeeded == again.progress.succeeded == 2
    assert again.progress.resumed == 2
    for line in second_lines:
        assert line["error"] is None
        assert len(line["files"]) == 1
        assert (out / line["files"][0]).read_bytes().startswith(b"\x89PNG")
    # The rerun fetched the missing file only: no create, no query.
    assert created == 2
    new = fake.stats.requests - api_requests
    assert set(new) == {("file", 200)}
    assert new["file", 200] == 1
