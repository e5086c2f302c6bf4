"""`comet-replicate batch --journal postgresql://...`: CLI workers share one batch.

Real CLI processes, a real PostgreSQL server (the suite's own) and one fake
CometAPI in the test's process.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import IO

import anyio
import pytest
from cli_support import environment, results
from postgres_support import end_all, kill_the_first_midway, sql, with_query

from comet_replicate_async._cli._shared_batch import shown_url
from comet_replicate_async.testing import FakeCometAPI, Latency

pytestmark = pytest.mark.anyio

MODEL = "black-forest-labs/flux-schnell"
OUTCOMES = {"succeeded", "failed", "ambiguous", "canceled"}


def prompt_file(folder: Path, count: int, *, name: str = "prompts.txt") -> Path:
    path = folder / name
    path.write_text("".join(f"a paper boat, study {n}\n" for n in range(count)))
    return path


def batch_arguments(prompts: Path, journal: str, out: Path) -> list[str]:
    return [
        sys.executable, "-m", "comet_replicate_async", "batch", str(prompts),
        "--model", MODEL, "--journal", journal, "--out", str(out),
        "--concurrency", "4",
    ]  # fmt: skip


async def run_batch(
    fake: FakeCometAPI, prompts: Path, journal: str, out: Path, *extra: str
) -> subprocess.CompletedProcess[str]:
    """One CLI worker run to its end (the fake serves it from this loop)."""
    with anyio.fail_after(60):
        done = await anyio.run_process(
            [*batch_arguments(prompts, journal, out), *extra],
            env=environment(fake),
            check=False,
        )
    return subprocess.CompletedProcess(
        done.args, done.returncode, done.stdout.decode(), done.stderr.decode()
    )


async def run_status(journal: str) -> str:
    with anyio.fail_after(30):
        done = await anyio.run_process(
            [sys.executable, "-m", "comet_replicate_async", "status",
             "--journal", journal],
        )  # fmt: skip
    return done.stdout.decode()


@pytest.mark.slow
@pytest.mark.timeout(150)
async def test_cli_workers_share_a_batch_and_finish_a_killed_ones_items(
    postgres_url: str, tmp_path: Path
) -> None:
    count = 48
    prompts = prompt_file(tmp_path, count)
    journal = with_query(postgres_url, batch="cli-kill", lease="2")
    outs = [tmp_path / f"worker-{n}" for n in range(4)]
    fake = FakeCometAPI(default_latency=Latency.uniform(0.5, 1.5), create_delay=1.0)
    logs: list[IO[str]] = [open(out.with_suffix(".log"), "w+") for out in outs]  # noqa: SIM115
    async with fake:
        workers = [
            await anyio.open_process(
                batch_arguments(prompts, journal, out),
                env=environment(fake),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            for out, log in zip(outs, logs, strict=True)
        ]
        victim, survivors = workers[0], workers[1:]

        async def note_in_flight() -> None:
            # The victim is dead: what it had in flight is still pending, or
            # already ambiguous if a survivor took it over (its lease may be
            # close to its end when it dies).
            in_flight.update(
                position
                for (position,) in await sql(
                    postgres_url,
                    'select "index" from comet_replicate.items where batch ='
                    " 'cli-kill' and state in ('pending', 'ambiguous') and"
                    f" created_by like '%:{victim.pid}:%'",
                )
            )

        in_flight: set[int] = set()
        try:
            await kill_the_first_midway(workers, journal, then=note_in_flight)
        finally:
            await end_all(workers)
        status = await run_status(journal)
    output = []
    for log in logs:
        with log:
            log.seek(0)
            output.append(log.read())
    rows = await sql(
        postgres_url,
        'select "index", state, worker, created_by from comet_replicate.items'
        " where batch = 'cli-kill' order by \"index\"",
    )

    assert victim.returncode == -signal.SIGKILL
    # Ambiguous items (the victim's creates in flight) make a survivor exit 1.
    assert all(worker.returncode in (0, 1) for worker in survivors), output
    assert not (outs[0] / "results.jsonl").exists()  # killed before writing it
    lines = [line for out in outs[1:] for line in results(out)]
    # Each survivor's part holds only outcomes: items it did not handle are left out.
    assert {line["outcome"] for line in lines} <= OUTCOMES
    # Across the survivors' parts and the journal, every prompt has one outcome.
    handled = Counter(line["index"] for line in lines)
    assert max(handled.values()) == 1
    journal_states = {position: state for position, state, _, _ in rows}
    assert sorted(journal_states) == list(range(count))
    assert set(journal_states.values()) <= OUTCOMES
    for line in lines:
        assert journal_states[line["index"]] == line["outcome"]
    # Not in any part: the victim ended it and journaled it before it died.
    victim_tag = f":{victim.pid}:"
    for position in set(range(count)) - set(handled):
        [(_, _, worker, _)] = [row for row in rows if row[0] == position]
        assert victim_tag in worker
    # The survivors polled by id what the victim created and left running, and
    # reported what it had in flight as ambiguous, never sending it again.
    taken_over = {
        position
        for position, state, worker, created_by in rows
        if state == "succeeded"
        and victim_tag in (created_by or "")
        and victim_tag not in worker
    }
    assert taken_over
    assert taken_over <= set(handled)
    assert in_flight
    outcomes = {line["index"]: line["outcome"] for line in lines}
    assert {outcomes[position] for position in in_flight} == {"ambiguous"}
    assert fake.stats.duplicates == 0
    assert fake.stats.created <= count
    # Each part's images are in its own folder.
    for out in outs[1:]:
        for line in results(out):
            assert all((out / name).is_file() for name in line["files"])
    # Each survivor's summary counts its own items and points at the whole batch.
    for out, text in zip(outs[1:], output[1:], strict=True):
        [handled_here] = re.findall(r"handled by this worker\W+(\d+)", text)
        assert int(handled_here) == len(results(out))
        assert "The whole batch: comet-replicate status --journal" in text
    assert status.splitlines()[0] == f"batch cli-kill: {count}/{count} ended"


@pytest.mark.slow
async def test_a_worker_with_another_prompt_file_is_refused_before_any_create(
    postgres_url: str, tmp_path: Path
) -> None:
    journal = with_query(postgres_url, batch="files")
    first = prompt_file(tmp_path, 3)
    other = tmp_path / "other.txt"
    other.write_text("a paper boat, study 0\na red fox\na paper boat, study 2\n")
    async with FakeCometAPI(default_latency=Latency.constant(0.01)) as fake:
        done = await run_batch(fake, first, journal, tmp_path / "a", "--json")
        assert done.returncode == 0, done.stderr
        summary = json.loads(done.stdout)
        assert summary["handled"] == 3
        assert summary["status"].startswith("comet-replicate status --journal ")
        created = fake.stats.created
        changed = await run_batch(fake, other, journal, tmp_path / "b")
        shorter = await run_batch(
            fake, prompt_file(tmp_path, 2, name="two.txt"), journal, tmp_path / "c"
        )
        options = await run_batch(
            fake, first, journal, tmp_path / "d", "-i", "num_outputs=2"
        )
        dev = "black-forest-labs/flux-dev"
        model = await run_batch(fake, first, journal, tmp_path / "e", "--model", dev)
        assert fake.stats.created == created == 3
    for refused in (changed, shorter, options, model):
        assert refused.returncode == 2, refused.stderr
        *progress, line = refused.stderr.splitlines()
        assert all(text.startswith("progress: ") for text in progress), progress
        assert line.startswith("error: "), line
        assert "is not what batch 'files' was started with (3 prompts" in line
        assert "Use another batch= name" in line
    assert "other.txt (3 prompts for black-forest-labs/flux-schnell)" in changed.stderr
    assert "(3 prompts for black-forest-labs/flux-dev)" in model.stderr


async def test_a_workers_rerun_keeps_its_earlier_part(
    postgres_url: str, tmp_path: Path
) -> None:
    journal = with_query(postgres_url, batch="rerun")
    prompts, out = prompt_file(tmp_path, 3), tmp_path / "out"
    async with FakeCometAPI(default_latency=Latency.constant(0.01)) as fake:
        first = await run_batch(fake, prompts, journal, out)
        before = results(out)
        again = await run_batch(fake, prompts, journal, out, "--json")
    assert first.returncode == 0, first.stderr
    assert [line["outcome"] for line in before] == ["succeeded"] * 3
    # Every item ended in the first run: the rerun handles none, and keeps the part.
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["handled"] == 0
    assert results(out) == before
    assert fake.stats.created == 3
    assert not (out / "journal.sqlite3").exists()


async def test_journal_takes_a_postgresql_url_only(tmp_path: Path) -> None:
    prompts = prompt_file(tmp_path, 1)
    async with FakeCometAPI() as fake:
        done = await run_batch(fake, prompts, "batch.sqlite3", tmp_path / "out")
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "error: --journal takes a postgresql:// URL, got 'batch.sqlite3'; without "
        "it the --out folder keeps the batch's journal"
    ]
    assert fake.stats.count("create") == 0


def test_a_shown_url_hides_its_password() -> None:
    assert (
        shown_url("postgresql://joe:s3cret@db:5432/p?batch=b")
        == "postgresql://joe:***@db:5432/p?batch=b"
    )
    assert shown_url("postgresql://joe@db/p") == "postgresql://joe@db/p"
    assert shown_url("postgresql://joe:@/p?host=/s") == "postgresql://joe:@/p?host=/s"
