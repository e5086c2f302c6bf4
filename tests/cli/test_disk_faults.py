"""A full disk or a refused permission during a batch: it stops creating, keeps
what it made, ends with one line, and a rerun once the cause is fixed resumes.

Two ways to refuse files: a real small filesystem (a tmpfs, mounted where the
tests may mount one: as root) filled up half-way, and, everywhere, the command
line run through `faulty_disk_cli.py`, whose output files fail with ENOSPC or
EACCES after a few were saved.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest
from cli_support import (
    FakeProcess,
    cli_environment,
    fake_process,
    journal_states,
    results,
    run_cli,
    start_cli,
    wait_for,
)

SCHNELL = "black-forest-labs/flux-schnell"
COUNT = 12
FAULTY_CLI = Path(__file__).parents[1] / "faulty_disk_cli.py"


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeProcess]:
    with fake_process("--latency", "flux-schnell=uniform:0.3:0.6") as server:
        yield server


def batch_command(tmp_path: Path, out: Path) -> list[str]:
    prompts = tmp_path / "p.txt"
    prompts.write_text("".join(f"prompt number {n}\n" for n in range(COUNT)))
    return ["batch", str(prompts), "-m", SCHNELL, "-o", str(out), "-c", "2"]


def journal_ids(out: Path) -> set[str]:
    """The prediction ids the journal holds."""
    path = f"file:{out / 'journal.sqlite3'}?mode=ro"
    with closing(sqlite3.connect(path, uri=True)) as journal:
        rows = journal.execute(
            "select prediction_id from items where prediction_id is not null"
        )
        return {row[0] for row in rows}


def the_error_line(stderr: str) -> str:
    """The one `error:` line, last on stderr, with nothing raw from the library."""
    lines = stderr.strip().splitlines()
    assert "Traceback" not in stderr
    assert [line for line in lines if line.startswith("error:")] == [lines[-1]]
    assert not [line for line in lines if "WARNING" in line or "ERROR" in line]
    return lines[-1]


def assert_a_rerun_finishes_paying_once(
    command: list[str], fake: FakeProcess, out: Path, *, ambiguous: int = 0
) -> None:
    """The rerun ends every input, and creates none twice. At most `ambiguous`
    inputs (creates in flight when the journal's disk filled: their ids could
    not be recorded) are reported ambiguous, never sent again."""
    rerun = run_cli(command, fake)
    stats = fake.stats()
    lines = results(out)
    outcomes = [line["outcome"] for line in lines]
    assert set(outcomes) <= {"succeeded", "ambiguous"}, rerun.stderr
    assert outcomes.count("ambiguous") <= ambiguous
    assert rerun.returncode == (1 if "ambiguous" in outcomes else 0), rerun.stderr
    assert stats["created"] == COUNT
    assert stats["duplicates"] == 0
    for line in lines:
        if line["outcome"] == "succeeded":
            assert (out / line["files"][0]).stat().st_size > 0
    assert not list(out.glob("*.part"))


@pytest.mark.slow
@pytest.mark.timeout(120)
@pytest.mark.parametrize("fault", ["ENOSPC", "EACCES"])
def test_a_refused_output_file_stops_creating_and_a_rerun_resumes(
    fake: FakeProcess, tmp_path: Path, fault: str
) -> None:
    fake.reset()
    out = tmp_path / "out"
    command = batch_command(tmp_path, out)
    env = cli_environment(fake) | {"FAULTY_DISK_AFTER": "2", "FAULTY_DISK_ERRNO": fault}
    faulty = subprocess.run(
        [sys.executable, str(FAULTY_CLI), *command],
        env=env,
        capture_output=True,
        stdin=subprocess.DEVNULL,
        text=True,
        timeout=90,
        check=False,
    )
    made = fake.stats()["predictions"]

    assert faulty.returncode == 3, faulty.stderr
    line = the_error_line(faulty.stderr)
    where = str(out) if fault == "ENOSPC" else str(out / "")
    assert line.startswith(f"error: cannot save {where}"), line
    assert (
        "No space left on device" if fault == "ENOSPC" else "Permission denied"
    ) in line
    assert line.endswith(
        "then rerun the same command to resume (it downloads what is missing)"
    )
    # It stopped creating: the inputs after the fault were never sent...
    assert len(made) < COUNT
    # ...and every prediction it made was polled to its end, and is in the
    # journal, for the rerun to download.
    assert journal_ids(out) == set(made)
    assert journal_states(out) == {"succeeded": len(made)}
    assert not list(out.glob("*.part"))

    assert_a_rerun_finishes_paying_once(command, fake, out)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MB tmpfs (real ENOSPC); skipped where mounting is not allowed."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(disk)],
        capture_output=True,
        check=False,
        timeout=10,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {mounted.stderr.decode().strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=True, timeout=10)


def fill(disk: Path) -> Path:
    """Take every free byte of `disk`: the next write fails with ENOSPC."""
    filler = disk / "filler"
    descriptor = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(descriptor, b"\0" * 4096)
    except OSError:
        pass  # full
    finally:
        os.close(descriptor)
    return filler


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_a_disk_that_fills_up_during_a_batch_ends_in_one_line_and_a_rerun_resumes(
    fake: FakeProcess, tmp_path: Path, small_disk: Path
) -> None:
    fake.reset()
    out = small_disk / "out"
    command = batch_command(tmp_path, out)
    child = start_cli(command, fake)
    wait_for(lambda: fake.stats()["created"] >= 3)
    filler = fill(small_disk)
    _, stderr = child.communicate(timeout=90)
    made = set(fake.stats()["predictions"])

    assert child.returncode == 3, stderr
    line = the_error_line(stderr)
    assert str(out) in line
    assert "rerun the same command to resume" in line
    assert len(made) < COUNT
    # Every id the journal could commit is one the fake made (none was lost
    # to a half-written file), and what it could not is sent again or polled.
    filler.unlink()  # space was freed
    assert journal_ids(out) <= made

    assert_a_rerun_finishes_paying_once(command, fake, out, ambiguous=2)
