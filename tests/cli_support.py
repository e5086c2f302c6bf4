"""Running the command line and a fake server in separate processes, for CLI tests."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

import attrs

from comet_replicate_async.testing import FakeCometAPI

API_KEY = "cli-test-key"


@attrs.frozen
class FakeProcess:
    """A fake CometAPI in its own process."""

    base_url: str
    process: subprocess.Popen[str]

    def stats(self, *, log: bool = False) -> dict[str, Any]:
        url = f"{self.base_url}/_fake/stats" + ("?log=1" if log else "")
        with urllib.request.urlopen(url, timeout=10) as reply:  # loopback only
            data: dict[str, Any] = json.load(reply)
            return data

    def reset(self) -> None:
        request = urllib.request.Request(f"{self.base_url}/_fake/reset", method="POST")
        with urllib.request.urlopen(request, timeout=10):
            pass


@contextmanager
def fake_process(*arguments: str) -> Iterator[FakeProcess]:
    """Start `python -m comet_replicate_async.testing --port 0 ...`; stop it after."""
    process = subprocess.Popen(
        [sys.executable, "-m", "comet_replicate_async.testing", "--port", "0",
         "--api-key", API_KEY, *arguments],
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("listening on "), line
        yield FakeProcess(base_url=line.split()[-1], process=process)
    finally:
        process.terminate()
        process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()


def cli_environment(fake: FakeProcess | None) -> dict[str, str]:
    """The environment a CLI child runs with: the fake's key and URL, or neither."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMETAPI_")}
    if fake is not None:
        env["COMETAPI_KEY"] = API_KEY
        env["COMETAPI_BASE_URL"] = fake.base_url
    return env


def start_cli(
    arguments: Sequence[str], fake: FakeProcess | None
) -> subprocess.Popen[str]:
    """`python -m comet_replicate_async ...` in a child process (no TTY)."""
    return subprocess.Popen(
        [sys.executable, "-m", "comet_replicate_async", *arguments],
        env=cli_environment(fake),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )


def run_cli(
    arguments: Sequence[str], fake: FakeProcess | None, *, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run the command line to the end."""
    return subprocess.run(
        [sys.executable, "-m", "comet_replicate_async", *arguments],
        env=cli_environment(fake),
        capture_output=True,
        stdin=subprocess.DEVNULL,
        text=True,
        timeout=timeout,
        check=False,
    )


def journal_states(out: Path) -> dict[str, int]:
    """How many items the journal holds in each state (empty before it exists)."""
    path = out / "journal.sqlite3"
    if not path.exists():
        return {}
    try:
        # closing(): a connection's own `with` commits but does not close it, and
        # Python 3.13 warns about every connection left to the garbage collector.
        reader = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1)
        with closing(reader) as connection:
            rows = connection.execute(
                "select state, count(*) from items group by state"
            )
            return dict(rows.fetchall())
    except sqlite3.OperationalError:
        return {}  # not created yet


def wait_for(condition: Callable[[], bool], *, within: float = 30) -> None:
    """Wait until `condition()` holds (checked every 20 ms), or fail."""
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


def results(out: Path) -> list[dict[str, Any]]:
    """The lines of results.jsonl."""
    lines = (out / "results.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def environment(fake: FakeCometAPI) -> dict[str, str]:
    """This process's environment, pointed at *fake* (no other COMETAPI_*)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMETAPI_")}
    return env | {"COMETAPI_KEY": fake.api_key, "COMETAPI_BASE_URL": fake.base_url}
