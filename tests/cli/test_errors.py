"""Expected failures of the command line end in one `error: ...` line and a
documented exit code, with no traceback unless --debug; `doctor` checks a setup."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest
from cli_support import API_KEY, FakeProcess, cli_environment, fake_process, run_cli

from helpers import newer_journal

SCHNELL = "black-forest-labs/flux-schnell"


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeProcess]:
    with fake_process("--latency", "flux-schnell=0.1") as server:
        yield server


@pytest.fixture
def clean_fake(fake: FakeProcess) -> FakeProcess:
    fake.reset()
    return fake


def one_error_line(done: subprocess.CompletedProcess[str]) -> str:
    """The `error:` line that ends stderr: the only one, with no traceback."""
    lines = done.stderr.strip().splitlines()
    assert lines, "nothing on stderr"
    assert "Traceback" not in done.stderr
    assert [line for line in lines if line.startswith("error:")] == [lines[-1]]
    return lines[-1]


def api_requests(fake: FakeProcess) -> dict[str, object]:
    """The requests the fake answered, by route, without the tests' own."""
    requests: dict[str, object] = fake.stats()["requests"]
    return {route: count for route, count in requests.items() if route != "control"}


def prompts(tmp_path: Path, text: str = "a boat\nan owl\n") -> Path:
    path = tmp_path / "p.txt"
    path.write_text(text)
    return path


def unused_port() -> int:
    with closing(socket.socket()) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port  # closed again: connecting to it is refused


def test_an_out_folder_that_cannot_be_created(
    clean_fake: FakeProcess, tmp_path: Path
) -> None:
    (tmp_path / "a-file").write_text("")
    out = tmp_path / "a-file" / "out"

    done = run_cli(
        ["batch", str(prompts(tmp_path)), "-m", SCHNELL, "-o", str(out)], clean_fake
    )

    assert done.returncode == 2
    line = one_error_line(done)
    assert line.startswith(f"error: cannot create the output folder {out}")
    assert "--out" in line
    assert api_requests(clean_fake) == {}


def _not_sqlite(path: Path) -> None:
    path.write_bytes(b"this is not a database\n" * 50)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (_not_sqlite, "not an SQLite database"),
        (newer_journal, "written by a newer version"),
    ],
    ids=["not-sqlite", "newer-schema"],
)
def test_a_journal_that_cannot_be_used_is_named_and_left_as_it_is(
    clean_fake: FakeProcess, tmp_path: Path, make: object, message: str
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    journal = out / "journal.sqlite3"
    make(journal)  # type: ignore[operator]
    before = journal.read_bytes()

    done = run_cli(
        ["batch", str(prompts(tmp_path)), "-m", SCHNELL, "-o", str(out)], clean_fake
    )

    assert done.returncode == 2
    line = one_error_line(done)
    assert str(journal) in line
    assert message in line
    assert journal.read_bytes() == before
    assert "create" not in clean_fake.stats()["requests"]


def test_debug_shows_the_traceback_before_the_line(
    clean_fake: FakeProcess, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    _not_sqlite(out / "journal.sqlite3")

    done = run_cli(
        ["--debug", "batch", str(prompts(tmp_path)), "-m", SCHNELL, "-o", str(out)],
        clean_fake,
    )

    assert done.returncode == 2
    assert "Traceback" in done.stderr
    assert "JournalError" in done.stderr
    # It came out of the batch's task group: the line reports the cause alone.
    assert "ExceptionGroup" in done.stderr
    assert "is not a journal (not an SQLite database)" in done.stderr.splitlines()[-1]
    assert done.stderr.strip().splitlines()[-1].startswith("error: ")


@pytest.mark.parametrize("command", ["batch", "run", "get"])
def test_no_key_says_how_to_give_one(tmp_path: Path, command: str) -> None:
    arguments = {
        "batch": [
            "batch",
            str(prompts(tmp_path)),
            "-m",
            SCHNELL,
            "-o",
            str(tmp_path / "o"),
        ],
        "run": ["run", SCHNELL, "-i", "prompt=a boat"],
        "get": ["get", "abc123"],
    }[command]

    done = run_cli(arguments, None)

    assert done.returncode == 2
    assert (
        one_error_line(done) == "error: no API key: pass --api-key or set COMETAPI_KEY"
    )


def test_a_wrong_key_on_run_is_one_line_naming_the_key_option(
    fake: FakeProcess,
) -> None:
    done = run_cli(
        ["--api-key", "wrong-key", "run", SCHNELL, "-i", "prompt=a boat"], fake
    )

    assert done.returncode == 1
    line = one_error_line(done)
    assert "HTTP 401" in line
    assert "check --api-key or COMETAPI_KEY" in line
    assert "wrong-key" not in done.stderr + done.stdout


def test_a_wrong_key_stops_the_batch_at_the_first_refusal_in_one_line(
    clean_fake: FakeProcess, tmp_path: Path
) -> None:
    done = run_cli(
        ["--api-key", "wrong-key", "batch", str(prompts(tmp_path)), "-m", SCHNELL,
         "-o", str(tmp_path / "out"), "-c", "1"],
        clean_fake,
    )  # fmt: skip

    assert done.returncode == 3
    line = one_error_line(done)
    assert line.startswith("error: stopped after a create failed with HTTP 401")
    assert "1 input(s) were not sent" in line
    assert "wrong-key" not in done.stderr + done.stdout
    assert api_requests(clean_fake)["create"] == {"401": 1}


@pytest.mark.timeout(60)
def test_an_unreachable_api_stops_the_batch_before_anything_is_sent(
    tmp_path: Path,
) -> None:
    url = f"http://127.0.0.1:{unused_port()}"

    done = run_cli(
        ["--base-url", url, "--api-key", API_KEY, "batch", str(prompts(tmp_path)),
         "-m", SCHNELL, "-o", str(tmp_path / "out")],
        None, timeout=50,
    )  # fmt: skip

    assert done.returncode == 3
    line = one_error_line(done)
    assert line.startswith(f"error: cannot reach the API at {url}")
    assert "COMETAPI_BASE_URL" in line
    assert not (tmp_path / "out" / "journal.sqlite3").exists()


def test_every_bad_prompt_line_is_reported_before_anything_is_sent(
    clean_fake: FakeProcess, tmp_path: Path
) -> None:
    lines = []
    for n in range(30):
        if n % 6 == 0:  # 5 good lines among 25 bad ones
            lines.append(f'{{"prompt": "good {n}"}}')
        elif n % 3 == 0:
            lines.append("{not json")
        else:
            lines.append(f'{{"prompt": "bad {n}", "num_outputs": 99}}')
    bad = [n + 1 for n in range(30) if n % 6 != 0]
    assert len(bad) == 25
    path = tmp_path / "p.jsonl"
    path.write_text("\n".join(lines) + "\n")

    done = run_cli(
        ["batch", str(path), "-m", SCHNELL, "-o", str(tmp_path / "out")], clean_fake
    )

    assert done.returncode == 2
    line = one_error_line(done)
    assert line == (
        f"error: {path}: {len(bad)} bad lines (above); fix them and rerun "
        "(nothing was sent)"
    )
    listed = done.stderr.strip().splitlines()[:-1]
    assert len(listed) == 21
    assert listed[-1] == f"... and {len(bad) - 20} more"
    numbers = [int(text.split(":")[1]) for text in listed[:-1]]
    assert all(text.startswith(f"{path}:") for text in listed[:-1])
    assert numbers == bad[:20]
    assert any("num_outputs" in text for text in listed)
    assert any("not valid JSON" in text for text in listed)
    assert api_requests(clean_fake) == {}


def test_doctor_with_a_good_key_passes_and_creates_nothing(
    clean_fake: FakeProcess,
) -> None:
    done = run_cli(["doctor"], clean_fake)

    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.strip().splitlines()
    assert [line.split(":")[0] for line in lines] == [
        "ok   API key", "ok   API answers", "ok   key accepted",
        "ok   price catalogue", "ok   versions",
    ]  # fmt: skip
    assert "comet-replicate-async" in lines[-1]
    assert "aiohttp" in lines[-1]
    assert API_KEY not in done.stdout + done.stderr
    stats = clean_fake.stats()
    assert "create" not in stats["requests"]
    assert stats["created"] == 0


def test_doctor_with_a_wrong_key_fails_the_key_check(fake: FakeProcess) -> None:
    done = run_cli(["--api-key", "wrong-key", "doctor"], fake)

    assert done.returncode == 1
    assert "FAIL key accepted: refused" in done.stdout
    assert "ok   API answers" in done.stdout
    assert "wrong-key" not in done.stdout + done.stderr
    assert one_error_line(done) == "error: a check failed (see FAIL above)"


@pytest.mark.timeout(60)
def test_doctor_with_an_unreachable_url_fails(tmp_path: Path) -> None:
    env = {**cli_environment(None), "COMETAPI_KEY": API_KEY}
    url = f"http://127.0.0.1:{unused_port()}"
    done = subprocess.run(
        [sys.executable, "-m", "comet_replicate_async", "--base-url", url, "doctor"],
        env=env, capture_output=True, stdin=subprocess.DEVNULL, text=True,
        timeout=50, check=False,
    )  # fmt: skip

    assert done.returncode == 1
    assert f"FAIL API answers: {url}" in done.stdout
    assert API_KEY not in done.stdout + done.stderr
