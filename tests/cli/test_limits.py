"""The command line under limits: a fatal error stops it, one run per folder."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from cli_support import (
    API_KEY,
    cli_environment,
    fake_process,
    journal_states,
    results,
    run_cli,
    start_cli,
    wait_for,
)

SCHNELL = "black-forest-labs/flux-schnell"


def prompts(tmp_path: Path, count: int) -> Path:
    path = tmp_path / "prompts.txt"
    path.write_text("".join(f"prompt number {n}\n" for n in range(count)))
    return path


def test_a_wrong_key_stops_the_batch_with_one_line(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with fake_process("--create-delay", "0.2") as fake:
        env = {**cli_environment(fake), "COMETAPI_KEY": "wrong-key"}
        done = subprocess.run(
            [sys.executable, "-m", "comet_replicate_async", "batch",
             str(prompts(tmp_path, 300)), "-m", SCHNELL, "-o", str(out), "-c", "16"],
            env=env, capture_output=True, stdin=subprocess.DEVNULL, text=True,
            timeout=120, check=False,
        )  # fmt: skip
        stats = fake.stats()

    assert done.returncode == 3, done.stderr
    error_lines = [line for line in done.stderr.splitlines() if "error" in line]
    assert len(error_lines) == 1
    assert "HTTP 401" in error_lines[0]
    assert "were not sent" in error_lines[0]
    sent = stats["requests"]["create"]["401"]
    assert sent <= 16  # at most the creates in flight when the first 401 came
    lines = results(out)
    not_sent = [line for line in lines if line["outcome"] == "not started"]
    assert len(not_sent) == 300 - sent
    assert all("nothing was sent" in line["error"] for line in not_sent)


@pytest.mark.slow
def test_one_run_per_folder_and_a_killed_runs_lock_is_taken_over(
    tmp_path: Path,
) -> None:
    count = 40
    out = tmp_path / "out"
    command = ["batch", str(prompts(tmp_path, count)), "-m", SCHNELL, "-o", str(out),
               "-c", "8"]  # fmt: skip
    with fake_process("--latency", "flux-schnell=uniform:0.5:1.5") as fake:
        first = start_cli(command, fake)
        wait_for(lambda: journal_states(out).get("created", 0) >= 3)

        second = run_cli(command, fake, timeout=60)

        first.send_signal(signal.SIGKILL)
        first.communicate(timeout=60)
        third = run_cli(command, fake)
        stats = fake.stats()

    assert second.returncode == 2
    host = socket.gethostname()
    assert f"in use by pid {first.pid} on {host} since " in second.stderr
    assert first.returncode == -signal.SIGKILL
    assert third.returncode in (0, 1), third.stderr  # 1: creates cut off mid-flight
    assert "in use" not in third.stderr
    assert stats["duplicates"] == 0
    assert stats["created"] <= count
    # Every prompt has exactly one outcome (an ambiguous one if the kill landed
    # while its create was in flight).
    assert [line["index"] for line in results(out)] == list(range(count))


def test_fake_server_prints_what_to_export() -> None:
    server = subprocess.Popen(
        [sys.executable, "-m", "comet_replicate_async", "fake-server", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cli_environment(None),
    )
    try:
        assert server.stdout is not None
        assert server.stderr is not None
        lines = [server.stdout.readline().strip()]
        lines += [server.stderr.readline().strip() for _ in range(2)]
    finally:
        server.terminate()
        server.wait(timeout=10)
        for stream in (server.stdout, server.stderr):
            if stream is not None:
                stream.close()
    url = lines[0].removeprefix("listening on ")
    assert url.startswith("http://127.0.0.1:")
    assert lines[1] == f"export COMETAPI_BASE_URL={url}"
    assert lines[2] == "export COMETAPI_KEY=test-key"
    assert API_KEY != "test-key"  # the fake's own default, not the tests' key


@pytest.mark.slow
def test_concurrency_caps_the_predictions_in_flight(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with fake_process("--latency", "flux-schnell=uniform:0.2:0.4") as server:
        done = run_cli(
            ["batch", str(prompts(tmp_path, 12)), "-m", SCHNELL, "-o", str(out),
             "-c", "3"],
            server,
        )  # fmt: skip
        stats = server.stats()

    assert done.returncode == 0, done.stderr
    assert stats["created"] == 12
    assert 1 <= stats["peak_in_flight"] <= 3
