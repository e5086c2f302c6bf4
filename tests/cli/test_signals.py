"""SIGTERM and SIGHUP stop a batch like Ctrl-C; a second signal ends it at once."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from cli_support import (
    cli_environment,
    fake_process,
    journal_states,
    run_cli,
    start_cli,
    wait_for,
)

from comet_replicate_async._cli._signals import STOP_BOUND

SCHNELL = "black-forest-labs/flux-schnell"


def batch_command(tmp_path: Path, count: int, concurrency: int) -> list[str]:
    path = tmp_path / "p.txt"
    path.write_text("".join(f"prompt number {n}\n" for n in range(count)))
    out = str(tmp_path / "out")
    return ["batch", str(path), "-m", SCHNELL, "-o", out, "-c", str(concurrency)]


class StderrLines:
    """Reads a child's stderr as it comes, so a test can wait for a line."""

    def __init__(self, child: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        assert child.stderr is not None
        self._stream = child.stderr
        self._thread = threading.Thread(target=self._read)
        self._thread.start()

    def _read(self) -> None:
        with self._stream:  # closed once the child's end is
            for line in self._stream:
                self.lines.append(line)

    def seen(self, text: str) -> bool:
        return any(text in line for line in self.lines)

    def join(self) -> str:
        self._thread.join(timeout=30)
        return "".join(self.lines)


@pytest.mark.slow
@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    ("stop_signal", "code"), [(signal.SIGTERM, 143), (signal.SIGHUP, 129)]
)
def test_a_signal_stops_the_batch_which_a_rerun_finishes_paying_once(
    tmp_path: Path, stop_signal: signal.Signals, code: int
) -> None:
    count = 12
    command = batch_command(tmp_path, count, concurrency=3)
    with fake_process("--latency", "flux-schnell=uniform:0.8:1.5") as server:
        child = start_cli(command, server)
        wait_for(lambda: server.stats()["created"] >= 2)
        child.send_signal(stop_signal)
        sent = time.monotonic()
        _, stderr = child.communicate(timeout=STOP_BOUND + 30)
        took = time.monotonic() - sent

        rerun = run_cli(command, server)
        stats = server.stats()

    assert child.returncode == code, stderr
    assert took < STOP_BOUND
    assert "Resume with" in stderr
    assert "Traceback" not in stderr
    assert rerun.returncode == 0, rerun.stderr
    assert stats["created"] == count
    assert stats["duplicates"] == 0
    assert journal_states(tmp_path / "out") == {"succeeded": count}


@pytest.mark.timeout(120)
def test_a_second_signal_exits_at_once(tmp_path: Path) -> None:
    command = batch_command(tmp_path, 6, concurrency=2)
    # Each create takes 20 s on the server: the first signal's stop waits for
    # the creates in flight; the second does not.
    with fake_process("--create-delay", "20") as server:
        child = start_cli(command, server)
        stderr = StderrLines(child)
        wait_for(lambda: journal_states(tmp_path / "out").get("pending", 0) >= 1)
        child.send_signal(signal.SIGTERM)
        wait_for(lambda: stderr.seen("Stopping"))
        child.send_signal(signal.SIGTERM)
        sent = time.monotonic()
        child.wait(timeout=30)
        took = time.monotonic() - sent
        text = stderr.join()
        if child.stdout is not None:
            child.stdout.close()

    assert child.returncode == 143, text
    assert took < 10  # well before the 20 s creates answered
    assert (
        text.strip()
        .splitlines()[-1]
        .startswith("error: stopped at once by a second signal (SIGTERM)")
    )
    assert "Traceback" not in text


def catches(pid: int, signum: int) -> bool:
    """Whether process `pid` has a handler for `signum` (Linux: /proc status)."""
    status = Path(f"/proc/{pid}/status").read_text()
    caught = next(line for line in status.splitlines() if line.startswith("SigCgt:"))
    return bool(int(caught.split()[1], 16) >> (signum - 1) & 1)


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc")
@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("stop_signal", "code"), [(signal.SIGTERM, 143), (signal.SIGHUP, 129)]
)
def test_a_signal_before_the_batch_starts_ends_in_the_interrupted_line(
    tmp_path: Path, stop_signal: signal.Signals, code: int
) -> None:
    out = str(tmp_path / "out")
    with fake_process() as server:
        # The prompts come from a standard input that never ends: the command
        # waits there, before anything is sent.
        child = subprocess.Popen(
            [sys.executable, "-m", "comet_replicate_async",
             "batch", "-", "-m", SCHNELL, "-o", out],
            env=cli_environment(server),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        wait_for(lambda: catches(child.pid, stop_signal))
        child.send_signal(stop_signal)
        _, stderr = child.communicate(timeout=30)
        created = server.stats()["created"]

    assert child.returncode == code, stderr
    assert stderr.strip().splitlines() == [
        "error: interrupted; rerun the same command to go on"
    ]
    assert created == 0
