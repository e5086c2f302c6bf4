"""The command line's batch folder: prompts in, images, a manifest and a gallery out.

The journal is the source of truth. On a rerun, finished items are skipped,
created ones are polled, and an item whose create was in flight when the last
run stopped is ambiguous (it may exist and be billed) unless resubmitted.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import attrs

from comet_replicate_async._exceptions import (
    AmbiguousSubmitError,
    BatchStoppedError,
    CometReplicateError,
    PredictionError,
)
from comet_replicate_async._journal import JournalEntry, SqliteJournal, State
from comet_replicate_async._retry import stops_creates
from comet_replicate_async._session import Session
from comet_replicate_async._values import Prediction, Status

from ._gallery import GalleryEntry, write_gallery
from ._prompts import PromptFile, PromptItem

__all__ = [
    "BulkOptions",
    "BulkSummary",
    "InputChanged",
    "Outcome",
    "Progress",
    "run_bulk",
]

logger = logging.getLogger("comet_replicate_async")

JOURNAL_NAME = "journal.sqlite3"
RESULTS_NAME = "results.jsonl"
GALLERY_NAME = "index.html"


class InputChanged(Exception):
    """The prompt file differs from the one the journal was started with."""


@attrs.frozen
class BulkOptions:
    """How to run a batch."""

    model: str
    out_dir: Path
    concurrency: int = 16
    resubmit_ambiguous: bool = False
    force: bool = False
    gallery_every: float = 2.0


@attrs.define
class Outcome:
    """Where one item stands; one line of results.jsonl."""

    item: PromptItem
    state: State | None = None  # None: not started in any run
    prediction_id: str | None = None
    error: str | None = None
    output_urls: tuple[str, ...] = ()
    files: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """The manifest line."""
        return {
            "index": self.item.index,
            "id": self.item.key,
            "line": self.item.line,
            "input": dict(self.item.input),
            "outcome": self.state or "not started",
            "prediction_id": self.prediction_id,
            "output_urls": list(self.output_urls),
            "files": list(self.files),
            "error": self.error,
        }


@attrs.define
class Progress:
    """Live counts for the progress display."""

    total: int
    queued: int = 0
    running: int = 0
    succeeded: int = 0
    failed: int = 0
    ambiguous: int = 0
    resumed: int = 0


@attrs.frozen
class BulkSummary:
    """How the batch ended."""

    progress: Progress
    interrupted: bool
    results_path: Path
    gallery_path: Path
    journal_path: Path
    requests: int
    #: The fatal create error that stopped the batch creating, if one came.
    stopped_by: CometReplicateError | None = None
    #: Inputs never sent because of it.
    not_sent: int = 0

    @property
    def exit_code(self) -> int:
        """0 all succeeded, 1 some did not, 3 a fatal error stopped it, 130 interrupted."""
        if self.interrupted:
            return 130
        if self.stopped_by is not None:
            return 3
        return 0 if self.progress.succeeded == self.progress.total else 1


ProgressCallback = Callable[[Progress], None]


async def run_bulk(
    session: Session,
    prompts: PromptFile,
    options: BulkOptions,
    *,
    on_progress: ProgressCallback | None = None,
    stop: anyio.Event | None = None,
) -> BulkSummary:
    """Run (or resume) the batch of `prompts` into `options.out_dir`.

    Setting `stop` stops creating new predictions; creates already sent finish and
    are journaled, waits are abandoned (a rerun polls them), and the manifest and
    gallery are written before returning.

    Raises:
        InputChanged: the journal belongs to another prompt file (unless `force`).
    """
    out_dir = options.out_dir
    await anyio.Path(out_dir).mkdir(parents=True, exist_ok=True)
    async with SqliteJournal(out_dir / JOURNAL_NAME) as journal:
        batch = _Batch(
            session, journal, prompts, options, on_progress, stop or anyio.Event()
        )
        await batch.check_and_record_input()
        await batch.run()
    return batch.summary()


class _Batch:
    def __init__(
        self,
        session: Session,
        journal: SqliteJournal,
        prompts: PromptFile,
        options: BulkOptions,
        on_progress: ProgressCallback | None,
        stop: anyio.Event,
    ) -> None:
        self.session = session
        self.journal = journal
        self.prompts = prompts
        self.options = options
        self.on_progress = on_progress
        self.stop = stop
        self.outcomes = [Outcome(item) for item in prompts.items]
        self.progress = Progress(total=len(prompts.items))
        self.waits: set[anyio.CancelScope] = set()
        self.gallery_dirty = anyio.Event()
        self.stopped_by: CometReplicateError | None = None

    async def check_and_record_input(self) -> None:
        meta = await self.journal.meta()
        recorded = meta.get("input_sha256")
        changed = recorded is not None and (
            recorded != self.prompts.digest or meta.get("model") != self.options.model
        )
        if changed and not self.options.force:
            raise InputChanged(
                f"{self.prompts.name} (or the model) differs from the batch recorded in "
                f"{self.journal.path}; use another --out folder, or --force to go on "
                "with the new input (finished items with the same id are kept)"
            )
        await self.journal.set_meta(
            {"input_sha256": self.prompts.digest, "model": self.options.model}
        )

    async def run(self) -> None:
        known = await self.journal.entries()
        work: list[tuple[Outcome, JournalEntry | None]] = []
        for outcome in self.outcomes:
            entry = known.get(outcome.item.key)
            if entry is not None:
                self._restore(outcome, entry)
            if self._needs_work(outcome):
                work.append((outcome, entry))
        self.progress.queued = len(work)
        self._report()
        slots = anyio.Semaphore(self.options.concurrency)
        async with anyio.create_task_group() as background:
            background.start_soon(self._keep_gallery_fresh)
            background.start_soon(self._abandon_on_stop)
            async with anyio.create_task_group() as items:
                for outcome, entry in work:
                    # Take the slot first: an item starts only when one is free.
                    await slots.acquire()
                    if self.stop.is_set() or self.stopped_by is not None:
                        slots.release()
                        break
                    items.start_soon(self._run_item, outcome, entry, slots)
            background.cancel_scope.cancel()
        if self.stopped_by is not None:
            self._mark_not_sent(self.stopped_by)
        await self._write_results()

    def _mark_not_sent(self, reason: CometReplicateError) -> None:
        # Not journaled: a rerun (with the cause fixed) sends them.
        for outcome in self.outcomes:
            if outcome.state is None:
                outcome.error = str(BatchStoppedError(reason))

    def _restore(self, outcome: Outcome, entry: JournalEntry) -> None:
        outcome.state = entry.state
        outcome.prediction_id = entry.prediction_id
        outcome.error = entry.error
        outcome.output_urls = entry.output_urls
        outcome.files = entry.files
        if entry.state == "succeeded":
            self.progress.succeeded += 1
            self.progress.resumed += 1
        elif entry.state == "failed":
            self.progress.failed += 1
            self.progress.resumed += 1

    def _needs_work(self, outcome: Outcome) -> bool:
        state = outcome.state
        if state is None or state == "created":
            return True
        if state in ("pending", "ambiguous"):
            if self.options.resubmit_ambiguous:
                return True
            self.progress.ambiguous += 1
            if state == "pending":
                # The last run stopped while this create was in flight.
                outcome.state = "ambiguous"
                outcome.error = (
                    "the create was in flight when the last run stopped: it may exist "
                    "and be billed; --resubmit-ambiguous sends it again (may pay twice)"
                )
            return False
        if state == "succeeded":
            return bool(outcome.output_urls) and not self._files_present(outcome)
        return False

    def _files_present(self, outcome: Outcome) -> bool:
        return bool(outcome.files) and all(
            (self.options.out_dir / name).is_file() for name in outcome.files
        )

    async def _run_item(
        self, outcome: Outcome, entry: JournalEntry | None, slots: anyio.Semaphore
    ) -> None:
        self.progress.queued -= 1
        self.progress.running += 1
        self._report()
        released = False
        try:
            if outcome.state == "succeeded":
                self.progress.succeeded -= 1  # counted again once downloaded
                prediction = None
            elif outcome.state == "created" and outcome.prediction_id:
                prediction = await self._wait(outcome, outcome.prediction_id)
            else:
                prediction = await self._create_and_wait(outcome)
            slots.release()
            released = True
            if prediction is not None or outcome.state == "succeeded":
                await self._download(outcome, prediction)
        finally:
            if not released:
                slots.release()
            self.progress.running -= 1
            self._count(outcome)
            self.gallery_dirty.set()
            self._report()

    async def _create_and_wait(self, outcome: Outcome) -> Prediction | None:
        item = outcome.item
        if self.stopped_by is not None:
            return None  # stopped while this item waited for its turn: never sent
        await self.journal.pending(item.key, item.index, item.line, item.input)
        outcome.state = "pending"
        try:
            # The id is journaled as the create answers, even if this task is
            # cancelled meanwhile.
            created = await self.session.create(
                self.options.model,
                item.input,
                on_created=lambda new: self.journal.created(item.key, new.id),
            )
        except AmbiguousSubmitError as error:
            await self._finish(outcome, "ambiguous", error=str(error))
            return None
        except CometReplicateError as error:
            # Provably not created (a 4xx, or nothing sent): a plain failure.
            if stops_creates(error) and self.stopped_by is None:
                self.stopped_by = error
            await self._finish(outcome, "failed", error=str(error))
            return None
        outcome.state = "created"
        outcome.prediction_id = created.id
        return await self._wait(outcome, created.id)

    async def _wait(self, outcome: Outcome, prediction_id: str) -> Prediction | None:
        with anyio.CancelScope() as scope:
            self.waits.add(scope)
            try:
                final = await self.session.wait(prediction_id)
            except PredictionError as error:
                await self._finish(outcome, "failed", error=str(error))
                return None
            except CometReplicateError as error:
                # Polling gave up; the prediction still exists: a rerun polls again.
                outcome.error = f"still running when polling gave up: {error}"
                return None
            finally:
                self.waits.discard(scope)
            outcome.output_urls = final.output_urls
            return final
        outcome.error = "interrupted while running; a rerun picks it up"
        return None

    async def _download(self, outcome: Outcome, prediction: Prediction | None) -> None:
        if prediction is None:
            prediction = Prediction(
                id=outcome.prediction_id or "",
                status=Status.SUCCEEDED,
                output=list(outcome.output_urls),
            )
        stem = f"{outcome.item.index:05d}-{prediction.id}"
        error = None
        try:
            paths = await self.session.download(
                prediction, self.options.out_dir, stem=stem
            )
            files: tuple[str, ...] = tuple(path.name for path in paths)
        except CometReplicateError as failure:
            # The prediction succeeded; only the copy failed: a rerun retries it.
            files = ()
            error = f"download failed: {failure}"
        await self._finish(
            outcome,
            "succeeded",
            error=error,
            output_urls=prediction.output_urls,
            files=files,
        )

    async def _finish(
        self,
        outcome: Outcome,
        state: State,
        *,
        error: str | None = None,
        output_urls: tuple[str, ...] = (),
        files: tuple[str, ...] = (),
    ) -> None:
        outcome.state = state
        outcome.error = error
        outcome.output_urls = output_urls or outcome.output_urls
        outcome.files = files
        await self.journal.finished(
            outcome.item.key,
            state,
            prediction_id=outcome.prediction_id,
            error=error,
            output_urls=outcome.output_urls,
            files=files,
        )

    def _count(self, outcome: Outcome) -> None:
        if outcome.state == "succeeded":
            self.progress.succeeded += 1
        elif outcome.state == "ambiguous":
            self.progress.ambiguous += 1
        elif outcome.state == "failed":
            self.progress.failed += 1

    async def _abandon_on_stop(self) -> None:
        await self.stop.wait()
        self._abandon_waits()

    def _abandon_waits(self) -> None:
        # Creates in flight finish and are journaled; waits stop (a rerun polls).
        for scope in list(self.waits):
            scope.cancel()

    async def _keep_gallery_fresh(self) -> None:
        while True:
            await self.gallery_dirty.wait()
            self.gallery_dirty = anyio.Event()
            await self._write_gallery()
            await anyio.sleep(self.options.gallery_every)

    async def _write_gallery(self) -> None:
        entries = [
            GalleryEntry(
                index=outcome.item.index,
                prompt=str(outcome.item.input.get("prompt", "")),
                status=outcome.state or "queued",
                prediction_id=outcome.prediction_id,
                error=outcome.error,
                files=outcome.files,
            )
            for outcome in self.outcomes
        ]
        title = f"{self.prompts.name} · {self.options.model}"
        await anyio.to_thread.run_sync(
            write_gallery, self.options.out_dir / GALLERY_NAME, title, entries
        )

    async def _write_results(self) -> None:
        lines = "".join(json.dumps(o.to_json()) + "\n" for o in self.outcomes)
        path = self.options.out_dir / RESULTS_NAME
        partial = path.with_name(path.name + ".part")
        await anyio.Path(partial).write_text(lines)
        await anyio.Path(partial).replace(path)
        await self._write_gallery()

    def _report(self) -> None:
        if self.on_progress is not None:
            self.on_progress(self.progress)

    def summary(self) -> BulkSummary:
        out_dir = self.options.out_dir
        return BulkSummary(
            progress=self.progress,
            interrupted=self.stop.is_set(),
            results_path=out_dir / RESULTS_NAME,
            gallery_path=out_dir / GALLERY_NAME,
            journal_path=out_dir / JOURNAL_NAME,
            requests=self.session.stats.requests,
            stopped_by=self.stopped_by,
            not_sent=sum(outcome.state is None for outcome in self.outcomes),
        )
