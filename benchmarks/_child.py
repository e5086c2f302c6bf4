"""What every client script shares: its command line, its meter, its result file.

A client script is one child process. Its `run(args, meter, results)` sets its
client up, calls `Meter.start()` right before the first prediction and
`Meter.stop()` right after the last result, reporting each input's outcome to
`results` as it is known; `main` does the rest.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import signal
import sys
import time
from collections.abc import Callable, Coroutine
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["ChildArgs", "ItemResult", "Meter", "Results", "describe", "main"]

TERMINAL_STATUSES = frozenset({"succeeded", "failed", "canceled", "aborted"})


@dataclass(frozen=True)
class ChildArgs:
    """The command line every client script takes."""

    base_url: str
    api_key: str
    items: list[dict[str, Any]]
    concurrency: int
    result_file: Path


@dataclass
class ItemResult:
    """The outcome of one workload input, as the client saw it."""

    index: int
    prediction_id: str | None = None
    resolved_wall: float | None = None
    error: str | None = None
    #: The error's class name (such as "AmbiguousSubmitError"), or for a
    #: prediction that ended without succeeding, "PredictionEnded".
    error_type: str | None = None


class Results:
    """Each input's outcome, appended to a file as soon as it is known.

    Nothing is kept in memory per prediction while the workload runs, so the
    child's RSS growth is the client's own: keeping 10,000 ids and times in
    memory would add about 1 MiB to every client's figure.
    """

    def __init__(self, path: Path) -> None:
        self._path = path
        self._file = path.open("w", encoding="utf-8")

    def _write(self, index: int, **fields: Any) -> None:
        self._file.write(json.dumps([index, fields]) + "\n")

    def created(self, index: int, prediction_id: str) -> None:
        """Input *index* has a prediction (its outcome may come later)."""
        self._write(index, prediction_id=prediction_id)

    def succeeded(self, index: int, prediction_id: str, resolved_wall: float) -> None:
        """Input *index* succeeded; the client saw it at *resolved_wall*."""
        self._write(index, prediction_id=prediction_id, resolved_wall=resolved_wall)

    def failed(
        self, index: int, error: BaseException, prediction_id: str | None = None
    ) -> None:
        """Input *index* ended with *error* (its class name tells the kinds apart)."""
        fields: dict[str, Any] = {
            "error": describe(error),
            "error_type": type(error).__name__,
        }
        if prediction_id is not None:
            fields["prediction_id"] = prediction_id
        self._write(index, **fields)

    def ended(self, index: int, prediction_id: str, status: str, detail: str) -> None:
        """Input *index*'s prediction ended without succeeding."""
        self._write(
            index,
            prediction_id=prediction_id,
            error=f"prediction ended {status}{detail}",
            error_type="PredictionEnded",
        )

    def load(self, total: int) -> list[ItemResult]:
        """Close the file and read it back: one `ItemResult` per input."""
        self._file.close()
        results = [ItemResult(index) for index in range(total)]
        with self._path.open(encoding="utf-8") as lines:
            for line in lines:
                index, fields = json.loads(line)
                for name, value in fields.items():
                    setattr(results[index], name, value)
        return results


def _settle_allocator() -> None:
    """Put every child's allocator in the same, long-running-process state.

    asyncio reads each socket with a 256 KiB buffer. glibc serves blocks above
    its mmap threshold (128 KiB at start) with mmap and munmap, and raises the
    threshold once such a block is freed; until then, every socket read also
    costs an mmap, an mremap and a munmap (CPython issue #85451). Whether that
    happened depended on the size of the workload file this child had just read:
    the scale workload's (1.2 MB) raised the threshold, the mixed workload's
    (0.2 MB) did not. Freeing one 1 MiB block makes it the same for every client
    and workload, as in any process that has run for a while.
    """
    block = bytearray(1 << 20)
    del block


def _rss_bytes() -> int:
    """Resident set size now: resident pages (2nd field of statm) times page size."""
    with open("/proc/self/statm", encoding="ascii") as statm:
        resident_pages = int(statm.read().split()[1])
    return resident_pages * os.sysconf("SC_PAGE_SIZE")


def _reset_peak_rss() -> None:
    """Make the peak RSS this process's current RSS (Linux 4.0 and later).

    The peak is then the workload's own, not one reached during imports or
    setup. Where the kernel refuses, the peak counts from the process's start.
    """
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as clear_refs:
            clear_refs.write("5")
    except OSError:
        pass


def _peak_rss_bytes() -> int:
    """This process's peak RSS (VmHWM), since its start or the last reset.

    Not ``getrusage().ru_maxrss``: Linux carries the parent's peak RSS into a
    child across exec, so a child started by a large orchestrator reported the
    orchestrator's peak, not its own.
    """
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024  # in kB
    raise RuntimeError("no VmHWM in /proc/self/status")


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass
class Meter:
    """CPU, memory and wall time of the workload alone (not imports or setup)."""

    _cpu_start: float = 0.0
    _wall_start: float = 0.0
    _started_wall: float = 0.0
    rss_before: int = 0
    readings: dict[str, float] = field(default_factory=dict)

    def start(self) -> None:
        """Take the baseline; call right before the first prediction starts."""
        _reset_peak_rss()
        self.rss_before = _rss_bytes()
        self._cpu_start = _cpu_seconds()
        self._wall_start = time.perf_counter()
        self._started_wall = time.time()

    def stop(self) -> None:
        """Take the final readings; call right after the last result."""
        wall = time.perf_counter() - self._wall_start
        cpu = _cpu_seconds() - self._cpu_start
        peak = _peak_rss_bytes()
        self.readings = {
            "cpu_seconds": cpu,
            "wall_seconds": wall,
            "peak_rss": peak,
            # Wall clocks, so the orchestrator can tell the workload from setup.
            "started_wall": self._started_wall,
            "finished_wall": time.time(),
        }


#: A client's run: reports each input's outcome to the `Results`.
Workload = Callable[[ChildArgs, Meter, Results], Coroutine[Any, Any, None]]


def _parse(argv: list[str] | None) -> ChildArgs:
    parser = argparse.ArgumentParser(description="Run one benchmark workload.")
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--api-key", required=True)
    parser.add_argument("--workload-file", type=Path, required=True)
    parser.add_argument("--concurrency", type=int, required=True)
    parser.add_argument("--result-file", type=Path, required=True)
    args = parser.parse_args(argv)
    return ChildArgs(
        base_url=args.base_url.rstrip("/"),
        api_key=args.api_key,
        items=json.loads(args.workload_file.read_text(encoding="utf-8")),
        concurrency=args.concurrency,
        result_file=args.result_file,
    )


def describe(error: BaseException) -> str:
    """A one-line description of *error* for the result file."""
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _await_chain(coro: Any) -> list[str]:
    """Where a coroutine is suspended, outermost first, following what it awaits.

    `Task.print_stack` stops at the first frame; tasks started by anyio would
    then all show the same wrapper line, hiding where they wait.
    """
    lines = []
    while coro is not None:
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "ag_frame", None)
        frame = frame or getattr(coro, "gi_frame", None)
        if frame is not None:
            code = frame.f_code
            lines.append(f"  {code.co_filename}:{frame.f_lineno} in {code.co_name}")
        coro = (
            getattr(coro, "cr_await", None)
            or getattr(coro, "ag_await", None)
            or getattr(coro, "gi_yieldfrom", None)
        )
    return lines


def _dump_tasks() -> None:
    """Print where every asyncio task waits to stderr: where a stuck run is stuck."""
    tasks = asyncio.all_tasks()
    print(f"--- interrupted: {len(tasks)} asyncio tasks ---", file=sys.stderr)
    for task in tasks:
        print(
            task.get_name(), *_await_chain(task.get_coro()), sep="\n", file=sys.stderr
        )


async def _supervise(
    workload: Workload, args: ChildArgs, meter: Meter, results: Results
) -> bool:
    """Run *workload*; on SIGTERM dump the tasks and stop it. True if it finished."""
    task = asyncio.create_task(workload(args, meter, results))

    def interrupt() -> None:
        _dump_tasks()
        task.cancel()

    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, interrupt)
    try:
        await task
    except asyncio.CancelledError:
        return False
    return True


def main(workload: Workload, argv: list[str] | None = None) -> None:
    """Parse the command line, run *workload*, write the result file.

    A run stopped by SIGTERM (the orchestrator's timeout) still writes what it
    resolved so far, marked ``interrupted``, and exits with status 3.
    """
    args = _parse(argv)
    _settle_allocator()
    meter = Meter()
    outcomes = Results(args.result_file.with_suffix(".outcomes.jsonl"))
    finished = asyncio.run(_supervise(workload, args, meter, outcomes))
    if not meter.readings:
        meter.stop()  # interrupted before the client stopped it
    results = outcomes.load(len(args.items))
    document = {
        "items": [asdict(result) for result in results],
        "rss_before": meter.rss_before,
        "interrupted": not finished,
        **meter.readings,
    }
    args.result_file.write_text(json.dumps(document), encoding="utf-8")
    if not finished:
        sys.exit(3)
