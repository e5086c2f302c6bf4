"""What a bulk batch shows while it runs: a rich bar on a terminal, plain lines elsewhere."""

from __future__ import annotations

import json
import shlex
import sys
import time
from types import TracebackType

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from ._batch_report import BulkSummary, cost_json, cost_rows
from ._batch_report import Progress as Counts
from ._shared_batch import shown_url

__all__ = ["ProgressView"]

PLAIN_EVERY = 5.0  # seconds between plain progress lines when not on a terminal


class ProgressView:
    """Shows a batch's counts; `quiet` shows nothing until the summary."""

    def __init__(self, *, total: int, quiet: bool = False) -> None:
        self.total = total
        self.quiet = quiet
        self.console = Console(stderr=True)
        self.interactive = self.console.is_terminal and not quiet
        self._bar: Progress | None = None
        self._task: TaskID | None = None
        self._last_line = 0.0
        self._counts: Counts | None = None

    def __enter__(self) -> ProgressView:
        if self.interactive:
            self._bar = Progress(
                TextColumn("[bold]batch"),
                BarColumn(),
                TextColumn("{task.completed}/{task.total}"),
                TextColumn("{task.fields[counts]}"),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                console=self.console,
            )
            self._bar.start()
            self._task = self._bar.add_task("batch", total=self.total, counts="")
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._bar is not None:
            self._bar.stop()
        elif not self.quiet and self._counts is not None:
            self._plain_line(self._counts)

    def update(self, counts: Counts) -> None:
        """New counts from the batch."""
        self._counts = counts
        if self.quiet:
            return
        if self._bar is not None and self._task is not None:
            done = counts.succeeded + counts.failed + counts.ambiguous
            self._bar.update(self._task, completed=done, counts=_counts_text(counts))
            return
        now = time.monotonic()
        if now - self._last_line >= PLAIN_EVERY:
            self._plain_line(counts)

    def note(self, text: str) -> None:
        """A one-off message (e.g. on Ctrl-C)."""
        self.console.print(text)

    def _plain_line(self, counts: Counts) -> None:
        self._last_line = time.monotonic()
        print(
            f"progress: {_counts_text(counts)} of {counts.total}",
            file=sys.stderr,
            flush=True,
        )

    def print_summary(self, summary: BulkSummary, *, as_json: bool) -> None:
        """The end: a table (or JSON on stdout with `as_json`)."""
        counts = summary.progress
        shared = summary.journal_url is not None
        # A worker of a shared batch accounts for its own items only.
        mine = summary.handled if shared else counts.total
        if as_json:
            print(
                json.dumps(
                    {
                        "total": counts.total,
                        "succeeded": counts.succeeded,
                        "failed": counts.failed,
                        "ambiguous": counts.ambiguous,
                        "not_finished": mine
                        - counts.succeeded
                        - counts.failed
                        - counts.ambiguous,
                        "resumed": counts.resumed,
                        "interrupted": summary.interrupted,
                        "http_requests": summary.requests,
                        "results": str(summary.results_path),
                        "gallery": str(summary.gallery_path),
                        "journal": str(summary.journal_path),
                        **cost_json(summary),
                    }
                    | _shared_fields(summary)
                ),
                flush=True,
            )
            return
        table = Table(title="batch summary", show_header=False)
        rows = [
            ("inputs in the batch" if shared else "inputs", counts.total),
            *([("handled by this worker", summary.handled)] if shared else []),
            ("succeeded", counts.succeeded),
            ("failed", counts.failed),
            ("ambiguous (may be billed)", counts.ambiguous),
            (
                "not finished",
                mine - counts.succeeded - counts.failed - counts.ambiguous,
            ),
            ("done in an earlier run", counts.resumed),
            ("HTTP requests this run", summary.requests),
            *cost_rows(summary),
        ]
        for label, value in rows:
            table.add_row(label, str(value))
        table.add_row("results", str(summary.results_path))
        table.add_row("gallery", str(summary.gallery_path))
        Console().print(table)
        if summary.over_budget:
            self.console.print(
                f"{summary.over_budget} input(s) not started: the --max-cost cap of "
                f"${summary.max_cost:.4f} is reached. Rerun with a larger --max-cost "
                "to go on; nothing is created twice.",
                highlight=False,
                soft_wrap=True,
            )
        if shared:
            print(f"The whole batch: {_shared_fields(summary)['status']}", flush=True)


def _shared_fields(summary: BulkSummary) -> dict[str, object]:
    """What a shared batch's worker adds to its summary: its part, and where the
    whole batch is read."""
    if summary.journal_url is None:
        return {}
    url = shown_url(summary.journal_url)
    return {
        "handled": summary.handled,
        "journal": url,
        "status": shlex.join(["comet-replicate", "status", "--journal", url]),
    }


def _counts_text(counts: Counts) -> str:
    return (
        f"queued {counts.queued} · running {counts.running} · "
        f"succeeded {counts.succeeded} · failed {counts.failed + counts.ambiguous}"
    )
