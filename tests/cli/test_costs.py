"""Spend control on the command line: --max-cost, --price, --dry-run, costs reported.

The command line runs in child processes against a fake in another, except where
a test scripts the fake's replies: there `main()` runs in the test's thread and
the fake in a thread of its own.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from anyio.from_thread import start_blocking_portal
from cli_support import API_KEY, FakeProcess, fake_process, results, run_cli

from comet_replicate_async._cli import main
from comet_replicate_async.testing import FakeCometAPI, Fault, Latency

SCHNELL = "black-forest-labs/flux-schnell"
CATALOGUE_PRICE = 0.004


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeProcess]:
    with fake_process(
        "--default-latency", "0.05", "--price", f"{SCHNELL}={CATALOGUE_PRICE}"
    ) as server:
        yield server


@pytest.fixture
def clean_fake(fake: FakeProcess) -> FakeProcess:
    fake.reset()
    return fake


@pytest.fixture
def threaded_fake() -> Iterator[FakeCometAPI]:
    """A fake in a thread of its own, for `main()` in the test's thread."""
    with start_blocking_portal() as portal:
        server = FakeCometAPI(
            api_key=API_KEY, default_latency=Latency.constant(0.02), filtered_outputs=1
        )
        portal.call(server.start)
        try:
            yield server
        finally:
            portal.call(server.close)


def api_requests(fake: FakeProcess) -> dict[str, Any]:
    requests: dict[str, Any] = fake.stats()["requests"]
    return {route: count for route, count in requests.items() if route != "control"}


def table_row(table: str, label: str) -> str:
    """The value in the summary table's row `label`."""
    for line in table.splitlines():
        cells = [cell.strip() for cell in line.strip("│ ").split("│")]
        if len(cells) == 2 and cells[0] == label:
            return cells[1]
    raise AssertionError(f"no row {label!r} in:\n{table}")


def seconds(duration: str | None) -> int:
    """Seconds in one of Replicate's durations (`35m`, `34m59s`, `1h2m5s`)."""
    assert duration is not None
    parts = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?", duration)
    assert parts is not None, duration
    hours, minutes, secs = (int(part or 0) for part in parts.groups())
    return hours * 3600 + minutes * 60 + secs


def prompts(tmp_path: Path, count: int) -> Path:
    path = tmp_path / "prompts.txt"
    path.write_text("".join(f"a paper boat, take {n}\n" for n in range(count)))
    return path


@pytest.mark.slow
def test_a_cap_stops_creating_and_a_rerun_with_a_larger_cap_finishes(
    clean_fake: FakeProcess, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    command = ["batch", str(prompts(tmp_path, 100)), "-m", SCHNELL, "-o", str(out),
               "--price", f"{SCHNELL}=0.01"]  # fmt: skip

    capped = run_cli([*command, "--max-cost", "0.50"], clean_fake)

    assert capped.returncode == 1, capped.stderr
    assert clean_fake.stats()["created"] == 50
    lines = results(out)
    started = [line for line in lines if line["outcome"] == "succeeded"]
    refused = [line for line in lines if line["outcome"] == "not started"]
    assert len(started) == 50
    assert len(refused) == 50
    assert all(line["not_started_because"] == "budget" for line in refused)
    assert all(line["error_type"] == "BudgetExceededError" for line in refused)
    assert all("nothing was sent" in line["error"] for line in refused)
    assert all(line["cost"] == 0.0 and line["charge"] == "free" for line in refused)
    assert all(line["cost"] == 0.01 and line["charge"] == "billed" for line in started)
    assert table_row(capped.stdout, "not started: cost cap reached") == "50"
    assert table_row(capped.stdout, "cost, all runs") == "$0.5000"
    assert table_row(capped.stdout, "price") == "$0.0100 per image (--price)"
    assert "50 input(s) not started: the --max-cost cap of $0.5000" in capped.stderr

    rerun = run_cli([*command, "--max-cost", "1.00", "--json"], clean_fake)

    assert rerun.returncode == 0, rerun.stderr
    stats = clean_fake.stats()
    assert stats["created"] == 100
    assert stats["duplicates"] == 0
    assert stats["duplicate_inputs"] == {}
    lines = results(out)
    assert [line["outcome"] for line in lines] == ["succeeded"] * 100
    assert len({line["prediction_id"] for line in lines}) == 100
    summary = json.loads(rerun.stdout)
    assert summary["succeeded"] == 100
    assert summary["resumed"] == 50
    assert summary["cost"]["spent"] == pytest.approx(1.00)
    assert summary["not_started_over_budget"] == 0


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--max-cost", "-1", "not an amount of US dollars"),
        ("--max-cost", "lots", "not an amount of US dollars"),
        ("--max-cost", "nan", "not an amount of US dollars"),
        ("--max-cost", "inf", "not an amount of US dollars"),
        ("--price", "flux-schnell=0.1", "expected owner/name=USD"),
        ("--price", f"{SCHNELL}=cheap", "expected owner/name=USD"),
        ("--price", f"{SCHNELL}=-0.1", "expected owner/name=USD"),
        ("--price", SCHNELL, "expected owner/name=USD"),
    ],
)
def test_a_bad_cost_option_is_a_usage_error_and_sends_nothing(
    clean_fake: FakeProcess, tmp_path: Path, option: str, value: str, message: str
) -> None:
    done = run_cli(
        ["batch", str(prompts(tmp_path, 2)), "-m", SCHNELL, "-o", str(tmp_path / "o"),
         option, value],
        clean_fake,
    )  # fmt: skip

    assert done.returncode == 2, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: Invalid value for '{option}'")
    assert message in last
    assert api_requests(clean_fake) == {}
    assert not (tmp_path / "o").exists()


def test_a_cap_without_a_known_price_is_refused_before_any_create(
    clean_fake: FakeProcess, tmp_path: Path
) -> None:
    done = run_cli(
        ["batch", str(prompts(tmp_path, 2)), "-m", "someone/unpriced-model",
         "-o", str(tmp_path / "o"), "--max-cost", "1"],
        clean_fake,
    )  # fmt: skip

    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines()[-1] == (
        "error: --max-cost needs a price for someone/unpriced-model, and none is "
        "known: give it with --price someone/unpriced-model=USD; nothing was sent"
    )
    assert "create" not in api_requests(clean_fake)


def test_dry_run_prices_every_input_from_the_catalogue_and_sends_nothing(
    clean_fake: FakeProcess, tmp_path: Path
) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text(
        '{"prompt": "an owl"}\n{"prompt": "a boat", "num_outputs": 3}\n'
        '{"prompt": "a fox"}\n'
    )
    command = ["batch", str(path), "-m", SCHNELL, "-o", str(tmp_path / "out"),
               "--dry-run", "--max-cost", "0.01"]  # fmt: skip

    as_json = run_cli([*command, "--json"], clean_fake)
    table = run_cli(command, clean_fake)

    assert as_json.returncode == 0, as_json.stderr
    estimate = json.loads(as_json.stdout)
    assert estimate["inputs"] == 3
    [row] = estimate["models"]
    assert (row["model"], row["count"], row["images"]) == (SCHNELL, 3, 5)
    assert row["unit_price"] == CATALOGUE_PRICE
    assert estimate["total"] == pytest.approx(5 * CATALOGUE_PRICE)
    assert estimate["price_source"] == "catalogue"
    assert estimate["price_as_of"] is not None
    assert estimate["sent"] == 0
    assert table.returncode == 0, table.stderr
    assert "$0.0200" in table.stdout  # 5 images at $0.004
    assert "CometAPI's catalogue" in table.stdout
    assert "covers the first 1 of 3 inputs" in table.stdout
    assert "dry run: nothing was sent" in table.stdout
    # The catalogue is read once (then cached); nothing else is asked.
    assert api_requests(clean_fake) == {"catalogue": {"200": 1}}
    assert not (tmp_path / "out").exists()


def test_dry_run_with_a_given_price_asks_nothing_at_all(
    clean_fake: FakeProcess, tmp_path: Path
) -> None:
    done = run_cli(
        ["batch", str(prompts(tmp_path, 4)), "-m", SCHNELL, "-o", str(tmp_path / "o"),
         "--dry-run", "--json", "--price", f"{SCHNELL}=0.5"],
        clean_fake,
    )  # fmt: skip

    assert done.returncode == 0, done.stderr
    estimate = json.loads(done.stdout)
    assert estimate["total"] == pytest.approx(2.0)
    assert estimate["price_source"] == "override"
    assert api_requests(clean_fake) == {}


def test_dry_run_lists_every_invalid_line_and_sends_nothing(
    clean_fake: FakeProcess, tmp_path: Path
) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text(
        '{"prompt": "fine"}\n{"prompt": "x", "num_outputs": 9}\n{oops\n'
        '{"prompt": "fine too"}\n{"prompt": "y", "output_format": "gif"}\n'
    )

    done = run_cli(
        ["batch", str(path), "-m", SCHNELL, "-o", str(tmp_path / "out"), "--dry-run"],
        clean_fake,
    )

    assert done.returncode == 2, done.stderr
    listed = done.stderr.strip().splitlines()
    assert [line.split(": ", 1)[0] for line in listed[:-1]] == [
        f"{path}:2",
        f"{path}:3",
        f"{path}:5",
    ]
    assert listed[-1].startswith(f"error: {path}: 3 bad lines")
    assert api_requests(clean_fake) == {}


@pytest.mark.parametrize("server_deadline", [True, False])
def test_server_deadline_sends_cancel_after_on_every_create(
    clean_fake: FakeProcess, tmp_path: Path, server_deadline: bool
) -> None:
    flag = ["--server-deadline"] if server_deadline else []
    done = run_cli(
        ["batch", str(prompts(tmp_path, 3)), "-m", SCHNELL, "-o", str(tmp_path / "o"),
         *flag],
        clean_fake,
    )  # fmt: skip

    assert done.returncode == 0, done.stderr
    log = clean_fake.stats(log=True)["requests_log"]
    sent = [entry["headers"].get("Cancel-After") for entry in log
            if entry["route"] == "create"]  # fmt: skip
    assert len(sent) == 3
    if not server_deadline:
        assert sent == [None] * 3
        return
    # The batch's deadline is the session's default, 35 minutes, less the time
    # between an input's start and its create being built.
    assert all(2100 - 60 <= seconds(header) <= 2100 for header in sent)


def test_costs_short_outputs_and_possibly_billed_in_results_and_summary(
    threaded_fake: FakeCometAPI,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text(
        '{"prompt": "lost", "num_outputs": 2}\n'
        '{"prompt": "three", "num_outputs": 3}\n{"prompt": "one"}\n'
    )
    # One create at a time, so the scripted 500 is the first prompt's: its reply
    # is lost after sending, and it may have been created and billed.
    threaded_fake.script("create", Fault.status(500))
    out = tmp_path / "out"
    command = ["--api-key", API_KEY, "--base-url", threaded_fake.base_url, "batch",
               str(path), "-m", SCHNELL, "-o", str(out), "-c", "1",
               "--price", f"{SCHNELL}=0.01"]  # fmt: skip

    code = main([*command, "--json"])

    captured = capsys.readouterr()
    assert code == 1, captured.err
    lost, three, one = results(out)
    assert (lost["outcome"], lost["charge"]) == ("ambiguous", "possibly_billed")
    assert lost["cost"] == pytest.approx(0.02)  # reserved for its two images
    assert (three["outcome"], three["missing_outputs"]) == ("succeeded", 1)
    assert len(three["files"]) == 2
    assert three["cost"] == pytest.approx(0.03)
    assert (one["missing_outputs"], one["cost"]) == (0, pytest.approx(0.01))
    summary = json.loads(captured.out)
    assert summary["short_outputs"] == 1
    assert summary["cost"]["spent"] == pytest.approx(0.06)
    assert summary["cost"]["possibly_billed"] == pytest.approx(0.02)

    code = main(command)  # the rerun's table: from the journal, nothing created

    table = capsys.readouterr().out
    assert code == 1
    spent = table_row(table, "cost, all runs")
    assert spent == "$0.0600 (of which $0.0200 possibly billed)"
    assert table_row(table, "fewer outputs than asked") == "1"
    assert threaded_fake.stats.created == 2


def test_an_output_gone_after_success_is_output_expired_in_the_results(
    threaded_fake: FakeCometAPI,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # The download is retried on a 404 no more than on any other refusal: every
    # try of the file answers 404.
    threaded_fake.script("file", *[Fault.status(404)] * 10)
    out = tmp_path / "out"

    code = main(
        ["--api-key", API_KEY, "--base-url", threaded_fake.base_url, "batch",
         str(prompts(tmp_path, 1)), "-m", SCHNELL, "-o", str(out), "--json"]
    )  # fmt: skip

    captured = capsys.readouterr()
    [line] = results(out)
    assert line["outcome"] == "succeeded"  # and billed; only its file is gone
    assert line["error_type"] == "OutputExpiredError"
    assert line["prediction_id"] in line["error"]
    assert "HTTP 404, output " in line["error"]
    assert "s old" in line["error"]
    assert line["files"] == []
    assert json.loads(captured.out)["downloads_failed"] == 1
    assert code == 0
