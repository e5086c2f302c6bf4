"""A batch killed with SIGKILL at any moment loses nothing and pays once.

Every journal write is one transaction, so the file is readable after any kill,
and a rerun resumes from it: the 20 kills in a row below land at seeded random
moments (measured from "the fake has seen k more creates", plus a random extra),
and a final rerun leaves one outcome per input with no create sent twice.
"""

from __future__ import annotations

import random
import sqlite3
import subprocess
import time
from collections import Counter
from contextlib import closing
from functools import partial
from pathlib import Path

import pytest
from cli_support import (
    FakeProcess,
    fake_process,
    results,
    run_cli,
    start_cli,
    wait_for,
)

SCHNELL = "black-forest-labs/flux-schnell"
KILLS = 20
COUNT = 50


def journal_is_readable(path: Path) -> bool:
    """SQLite's own check of the whole file, and every item row read."""
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as journal:
        (check,) = journal.execute("pragma integrity_check").fetchone()
        journal.execute('select "index", state, prediction_id from items').fetchall()
    return bool(check == "ok")


def created_or_ended(
    server: FakeProcess, child: subprocess.Popen[str], target: int
) -> bool:
    """The fake has seen `target` creates in all, or the run ended by itself."""
    return server.stats()["created"] >= target or child.poll() is not None


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_twenty_kills_in_a_row_lose_nothing_and_pay_once(tmp_path: Path) -> None:
    rng = random.Random(16)
    prompts = tmp_path / "p.txt"
    prompts.write_text("".join(f"prompt number {n}\n" for n in range(COUNT)))
    out = tmp_path / "out"
    command = ["batch", str(prompts), "-m", SCHNELL, "-o", str(out), "-c", "3"]
    kills = 0
    started = time.monotonic()

    with fake_process("--latency", "flux-schnell=uniform:1:2") as server:
        for _ in range(KILLS):
            before = server.stats()["created"]
            child = start_cli(command, server)
            target = before + rng.randint(0, 3)
            # Until k more creates (or the end of the batch, once all are made).
            wait_for(partial(created_or_ended, server, child, target))
            time.sleep(rng.uniform(0, 0.5))  # the random moment itself
            if child.poll() is None:
                child.kill()
                kills += 1
            child.communicate(timeout=30)
            assert journal_is_readable(out / "journal.sqlite3")

        final = run_cli(command, server)
        stats = server.stats()

    took = time.monotonic() - started
    lines = results(out)
    # One outcome per input, and every one of them settled.
    assert [line["index"] for line in lines] == list(range(COUNT))
    outcomes = Counter(line["outcome"] for line in lines)
    assert set(outcomes) <= {"succeeded", "ambiguous"}, final.stderr
    # A kill between a create's send and its answer leaves that input ambiguous
    # (never resent without --resubmit-ambiguous): at most one per kill.
    assert outcomes["ambiguous"] <= kills
    assert final.returncode == (0 if not outcomes["ambiguous"] else 1), final.stderr
    # No input was created twice, and every succeeded line is the fake's one
    # prediction of that prompt.
    per_prompt = Counter(p["input"]["prompt"] for p in stats["predictions"].values())
    assert stats["duplicates"] == 0
    assert max(per_prompt.values()) == 1
    for line in lines:
        if line["outcome"] == "succeeded":
            prediction = stats["predictions"][line["prediction_id"]]
            assert prediction["input"]["prompt"] == line["input"]["prompt"]
    assert kills >= KILLS // 2, "most kills should land while the batch runs"
    assert took < 150


def test_the_help_of_resubmit_ambiguous_says_it_may_pay_twice() -> None:
    done = run_cli(["batch", "--help"], None)

    assert done.returncode == 0
    text = " ".join(done.stdout.split())  # as wrapped to the terminal's width
    assert "--resubmit-ambiguous Send again a create whose answer was lost" in text
    assert "May pay twice." in text
