"""The command line prints its own lines, not the library's log records.

Without --debug, a wrong key and a Ctrl-C print exactly the lines the
Troubleshooting page documents (besides the progress lines); with --debug, the
library's records are shown too.
"""

from __future__ import annotations

import re
import shlex
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_support import (
    FakeProcess,
    fake_process,
    journal_states,
    run_cli,
    start_cli,
    wait_for,
)

SCHNELL = "black-forest-labs/flux-schnell"


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeProcess]:
    # Predictions run for 20 s: a Ctrl-C always finds them running.
    with fake_process("--latency", "flux-schnell=20") as server:
        yield server


def batch_command(tmp_path: Path, concurrency: int = 2) -> list[str]:
    prompts = tmp_path / "p.txt"
    prompts.write_text("a boat\nan owl\na fox\n")
    return [
        "batch",
        str(prompts),
        "-m",
        SCHNELL,
        "-o",
        str(tmp_path / "out"),
        "-c",
        str(concurrency),
    ]


def own_lines(stderr: str) -> list[str]:
    """Standard error without the progress lines."""
    return [line for line in stderr.splitlines() if not line.startswith("progress:")]


@pytest.mark.parametrize("debug", [False, True])
def test_a_wrong_key_prints_one_line_and_the_log_only_with_debug(
    fake: FakeProcess, tmp_path: Path, debug: bool
) -> None:
    options = ["--debug"] if debug else []
    command = [*options, "--api-key", "wrong-key", *batch_command(tmp_path, 1)]

    done = run_cli(command, fake)

    assert done.returncode == 3
    lines = own_lines(done.stderr)
    error = lines[-1]
    assert error.startswith("error: stopped after a create failed with HTTP 401")
    assert re.search(
        r"; 2 input\(s\) were not sent\. Fix the cause and rerun the same "
        r"command to go on\.$",
        error,
    )
    logged = [line for line in lines if "batch stopped creating: HTTP 401" in line]
    if debug:
        assert len(logged) == 1
        assert " ERROR comet_replicate_async: " in logged[0]
    else:
        assert lines == [error]
    assert "wrong-key" not in done.stderr + done.stdout


@pytest.mark.timeout(60)
@pytest.mark.parametrize("debug", [False, True])
def test_ctrl_c_prints_the_documented_lines_and_the_log_only_with_debug(
    fake: FakeProcess, tmp_path: Path, debug: bool
) -> None:
    arguments = [*(["--debug"] if debug else []), *batch_command(tmp_path)]
    out = tmp_path / "out"
    child = start_cli(arguments, fake)
    wait_for(lambda: journal_states(out).get("created", 0) == 2)
    child.send_signal(signal.SIGINT)
    _, stderr = child.communicate(timeout=40)

    assert child.returncode == 130, stderr
    lines = own_lines(stderr)
    documented = [
        "Stopping: no new creates; creates in flight are being recorded…",
        "2 prediction(s) were still running (and are billed); a rerun polls them "
        "and downloads their images.",
        "Interrupted: the journal is consistent. Resume with:",
        "  " + shlex.join(["comet-replicate", *arguments]),
    ]
    billed = [line for line in lines if "keeps running and is billed" in line]
    if debug:
        assert len(billed) == 2
        assert [line for line in lines if line in documented] == documented
    else:
        assert lines == documented
    assert "Traceback" not in stderr
