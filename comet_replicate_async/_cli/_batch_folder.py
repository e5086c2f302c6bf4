"""The command line's batch folder: prompts in, images, a manifest and a gallery out.

A thin front on the library's batch engine: `Session.as_completed` with the
folder's journal fans the prompts out under the session's concurrency window and
resumes a rerun (finished items come back from the journal, created ones are
polled, one whose create was in flight is ambiguous unless resubmitted), never
creating an input twice. This module turns the items into files: it downloads
each succeeded item's outputs as the item comes (again on a rerun when they are
missing from the folder), and writes `results.jsonl` and the gallery.

With `journal_url` the folder is one worker's part of a batch that many share
through PostgreSQL (`_shared_batch`): the items it handled, no journal file.
What the run reports is in `_batch_report`, the folder's journal in
`_folder_journal`.
"""

from __future__ import annotations

import contextlib
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, cast

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from comet_replicate_async._batch.tracker import BatchIterator
from comet_replicate_async._downloads import output_paths
from comet_replicate_async._exceptions import (
    AmbiguousSubmitError,
    BatchStoppedError,
    BudgetExceededError,
    CometReplicateError,
    JournalError,
    JournalInputChanged,
    PredictionAbandoned,
)
from comet_replicate_async._html import Tile
from comet_replicate_async._inputs.base import FluxInput, ModelCall
from comet_replicate_async._money.ledger import Charge
from comet_replicate_async._retry import stops_creates
from comet_replicate_async._session import Session
from comet_replicate_async._values import BatchItem, Prediction

from ._batch_report import (
    BulkOptions,
    BulkSummary,
    ItemReport,
    Progress,
    ProgressCallback,
)
from ._costs import CostTotals
from ._disk_faults import DiskFault, journal_refused
from ._folder_journal import FolderJournal
from ._gallery import write_gallery
from ._prompts import PromptFile
from ._shared_batch import open_shared_journal, worker_results

if TYPE_CHECKING:
    from ._shared_journal import PromptFileJournal

__all__ = ["run_bulk"]

JOURNAL_NAME = "journal.sqlite3"
RESULTS_NAME = "results.jsonl"
GALLERY_NAME = "index.html"

# Items whose files are being fetched at once; each file also waits for the
# session's own download limit. Reading items never waits for a download.
DOWNLOADERS = 4


async def run_bulk(
    session: Session,
    prompts: PromptFile,
    options: BulkOptions,
    *,
    on_progress: ProgressCallback | None = None,
    stop: anyio.Event | None = None,
) -> BulkSummary:
    """Run (or resume) the batch of `prompts` into `options.out_dir`.

    Setting `stop` stops the batch (`BatchIterator.stop`): no new create is sent,
    creates already sent finish and are journaled, waits stop (a rerun polls
    them), and the manifest and gallery are written before returning.

    Raises:
        JournalInputChanged: a prompt the journal recorded differs, or the model.
        JournalInUse: another run drives this folder.
        CliError: the folder refused a file (full disk, permissions) during
            the run: it stopped creating (see `_disk_faults`).
    """
    await anyio.Path(options.out_dir).mkdir(parents=True, exist_ok=True)
    batch = _Batch(session, prompts, options, on_progress, stop or anyio.Event())
    await batch.run()
    return batch.summary()


class _Batch:
    def __init__(
        self,
        session: Session,
        prompts: PromptFile,
        options: BulkOptions,
        on_progress: ProgressCallback | None,
        stop: anyio.Event,
    ) -> None:
        self.session = session
        self.prompts = prompts
        self.options = options
        self.on_progress = on_progress
        self.stop = stop
        self.outcomes = [
            ItemReport(item, model=item.model or options.model)
            for item in prompts.items
        ]
        self.progress = Progress(total=len(prompts.items))
        self.ended = 0
        self.gallery_dirty = anyio.Event()
        self.stopped_by: CometReplicateError | None = None
        self.disk_fault = DiskFault()
        self.items: BatchIterator | None = None
        # Cancelled by `stop`: the items are then taken through `stop()`.
        self.reading = anyio.CancelScope()
        models = [outcome.model for outcome in self.outcomes]
        self.journal: FolderJournal | PromptFileJournal = (
            FolderJournal(options.out_dir / JOURNAL_NAME, models)
            if options.journal_url is None
            else open_shared_journal(options.journal_url, prompts, models)
        )

    async def run(self) -> None:
        # Each input bound to its model: one batch, one window for every model.
        calls = [
            ModelCall(outcome.model, outcome.item.input) for outcome in self.outcomes
        ]
        # Through the session's own batch call: a `ModelCall` names its model as
        # a typed input does, so the batch takes them as typed inputs.
        items = self.items = self.session.as_completed(
            cast("list[FluxInput]", calls), journal=self.journal
        )
        self._report()
        send, receive = anyio.create_memory_object_stream[
            tuple[ItemReport, Prediction]
        ](math.inf)
        refused: Exception | None = None
        async with anyio.create_task_group() as background:
            background.start_soon(self._keep_gallery_fresh)
            background.start_soon(self._stop_reading)
            async with anyio.create_task_group() as downloads:
                for _ in range(DOWNLOADERS):
                    downloads.start_soon(self._download, receive.clone())
                receive.close()
                # Closing `send` lets the downloaders finish the queue, then end.
                with send:
                    try:
                        await self._read(items, send)
                    except Exception as error:
                        # Kept, not raised: the task group would wrap it in a group.
                        refused = error
            background.cancel_scope.cancel()
        if refused is not None:
            raise self._explained(refused)
        for outcome in self.outcomes:
            # Read once every end is journaled (an aborted prediction costs 0).
            recorded = self.journal.costs.get(outcome.item.index)
            free = outcome.charge is Charge.FREE
            outcome.cost = 0.0 if free else recorded
        await self._write_results()
        if self.disk_fault.error is not None:
            raise self.disk_fault.error

    async def _read(
        self,
        items: BatchIterator,
        downloads: MemoryObjectSendStream[tuple[ItemReport, Prediction]],
    ) -> None:
        with self.reading:
            async for item in items:
                self._take(item, downloads)
        if self.reading.cancel_called:
            for item in await items.stop():
                self._take(item, downloads)

    async def _stop_reading(self) -> None:
        await self.stop.wait()
        self.reading.cancel()

    def _take(
        self,
        item: BatchItem,
        downloads: MemoryObjectSendStream[tuple[ItemReport, Prediction]],
    ) -> None:
        outcome = self.outcomes[item.index]
        prediction, error = item.prediction, item.error
        outcome.prediction_id = prediction.id if prediction is not None else None
        outcome.status = prediction.status if prediction is not None else None
        outcome.error = None if error is None else str(error)
        outcome.error_type = None if error is None else type(error).__name__
        outcome.missing_outputs = item.missing_outputs
        refused = journal_refused(error)
        if refused is not None:
            self._refused(refused, self.options.out_dir)
        if isinstance(error, BatchStoppedError | BudgetExceededError):
            outcome.state = None  # nothing was sent: a rerun sends it
            outcome.not_started_because = (
                "budget" if isinstance(error, BudgetExceededError) else "batch stopped"
            )
            if isinstance(error, BatchStoppedError) and stops_creates(error.reason):
                self.stopped_by = self.stopped_by or error.reason
        elif isinstance(error, AmbiguousSubmitError):
            outcome.state = "ambiguous"
            outcome.error = (
                f"{error} --resubmit-ambiguous sends it again (may pay twice)"
            )
        elif prediction is not None and not prediction.done:
            outcome.state = "created"
            outcome.error = (
                "interrupted while running; a rerun picks it up"
                if isinstance(error, PredictionAbandoned)
                else f"still running when polling gave up ({error}); a rerun picks it up"
            )
        elif error is not None or prediction is None:
            outcome.state = "failed"
            if isinstance(error, CometReplicateError) and stops_creates(error):
                self.stopped_by = self.stopped_by or error
        else:
            outcome.state = "succeeded"
            outcome.output_urls = prediction.output_urls
            self._save(outcome, prediction, downloads)
        self._count(outcome, resumed=item.resumed)

    def _save(
        self,
        outcome: ItemReport,
        prediction: Prediction,
        downloads: MemoryObjectSendStream[tuple[ItemReport, Prediction]],
    ) -> None:
        """Download the files, unless an earlier run saved them all."""
        paths = output_paths(prediction, self.options.out_dir, _stem(outcome))
        if all(path.is_file() for path in paths):
            outcome.files = tuple(path.name for path in paths)
        else:
            downloads.send_nowait((outcome, prediction))

    async def _download(
        self, receive: MemoryObjectReceiveStream[tuple[ItemReport, Prediction]]
    ) -> None:
        async with receive:
            async for outcome, prediction in receive:
                if self.disk_fault.error is not None:
                    # The folder refuses files: a rerun downloads this one.
                    outcome.error = "not downloaded: the folder refused a file"
                    continue
                try:
                    paths = await self.session.download(
                        prediction, self.options.out_dir, stem=_stem(outcome)
                    )
                except CometReplicateError as failure:
                    # The prediction succeeded; only the copy failed: a rerun
                    # finds the files missing and downloads them again.
                    outcome.error = f"download failed: {failure}"
                    outcome.error_type = type(failure).__name__
                except OSError as failure:
                    outcome.error = f"not saved: {failure.strerror or failure}"
                    outcome.error_type = type(failure).__name__
                    self._forget_parts(outcome, prediction)
                    self._refused(failure, self.options.out_dir)
                else:
                    outcome.files = tuple(path.name for path in paths)
                self.gallery_dirty.set()

    def _forget_parts(self, outcome: ItemReport, prediction: Prediction) -> None:
        """Remove what a refused download left: it takes space a rerun needs."""
        for path in output_paths(prediction, self.options.out_dir, _stem(outcome)):
            with contextlib.suppress(OSError):
                path.with_name(path.name + ".part").unlink(missing_ok=True)

    def _refused(self, failure: OSError | JournalError, where: Path) -> None:
        """The folder refused a file: stop creating (once), keep polling."""
        if self.disk_fault.record(failure, where) and self.items is not None:
            self.items.stop_creating(self.disk_fault.reason())

    def _count(self, outcome: ItemReport, *, resumed: bool) -> None:
        self.ended += 1
        if outcome.state == "succeeded":
            self.progress.succeeded += 1
        elif outcome.state == "ambiguous":
            self.progress.ambiguous += 1
        elif outcome.state == "failed":
            self.progress.failed += 1
        if resumed and outcome.state in ("succeeded", "failed"):
            self.progress.resumed += 1
        self.gallery_dirty.set()
        self._report()

    def _explained(self, error: Exception) -> Exception:
        """The engine's refusal, in the folder's and the prompt file's terms."""
        if not isinstance(error, JournalInputChanged) or error.position is None:
            return error
        position = error.position
        where = self.options.out_dir
        name = self.prompts.name
        if error.recorded_model is not None and position < len(self.outcomes):
            outcome = self.outcomes[position]
            refused = JournalInputChanged(
                f"{name}:{outcome.item.line}: the batch in {where} runs "
                f"{error.recorded_model}, not {outcome.model}, here; use another "
                "--out folder for another model",
                position,
            )
        elif position < len(self.prompts.items):
            line = self.prompts.items[position].line
            refused = JournalInputChanged(
                f"{name}:{line}: not the prompt the batch in {where} recorded in "
                "this place; prompts may be added at the end, not changed, removed "
                "or moved. Use another --out folder for another batch",
                position,
            )
        else:
            refused = JournalInputChanged(
                f"{name} has {len(self.prompts.items)} prompts, fewer than the "
                f"batch in {where} recorded; use another --out folder for another "
                "batch",
                position,
            )
        refused.__cause__ = error
        return refused

    async def _keep_gallery_fresh(self) -> None:
        while True:
            await self.gallery_dirty.wait()
            self.gallery_dirty = anyio.Event()
            await self._write_gallery()
            await anyio.sleep(self.options.gallery_every)

    async def _write_gallery(self) -> None:
        entries = [
            Tile(
                index=outcome.item.index,
                prompt=str(outcome.item.input.get("prompt", "")),
                status=outcome.state or "queued",
                model=outcome.model,
                prediction_id=outcome.prediction_id,
                error=outcome.error,
                images=outcome.files,
            )
            for outcome in self.outcomes
            # A shared batch's worker shows its own items, not the others'.
            if outcome.state is not None or self.options.journal_url is None
        ]
        models = dict.fromkeys(outcome.model for outcome in self.outcomes)
        title = f"{self.prompts.name} · {', '.join(models)}"
        path = self.options.out_dir / GALLERY_NAME
        try:
            await anyio.to_thread.run_sync(write_gallery, path, title, entries)
        except OSError as failure:
            self._refused(failure, path)

    async def _write_results(self) -> None:
        path = self.options.out_dir / RESULTS_NAME
        results = [outcome.to_json() for outcome in self.outcomes]
        if self.options.journal_url is not None:
            results = await worker_results(anyio.Path(path), results)
        lines = "".join(json.dumps(result) + "\n" for result in results)
        partial = path.with_name(path.name + ".part")
        try:
            await anyio.Path(partial).write_text(lines)
            await anyio.Path(partial).replace(path)
        except OSError as failure:
            # The journal holds every outcome: a rerun writes the manifest.
            with contextlib.suppress(OSError):
                await anyio.Path(partial).unlink(missing_ok=True)
            self._refused(failure, path)
        await self._write_gallery()

    def _report(self) -> None:
        progress = self.progress
        progress.running = self.session.stats.in_flight
        progress.queued = max(0, progress.total - self.ended - progress.running)
        if self.on_progress is not None:
            self.on_progress(progress)

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
            journal_url=self.options.journal_url,
            handled=sum(outcome.state is not None for outcome in self.outcomes),
            costs=CostTotals.of([(o.charge, o.cost) for o in self.outcomes]),
            price=self.options.price,
            prices=self.options.prices,
            model_costs={
                model: CostTotals.of(
                    [(o.charge, o.cost) for o in self.outcomes if o.model == model]
                )
                for model in self.options.prices
            },
            max_cost=self.options.max_cost,
            over_budget=sum(o.not_started_because == "budget" for o in self.outcomes),
            short_outputs=sum(o.missing_outputs > 0 for o in self.outcomes),
            downloads_failed=sum(
                o.state == "succeeded" and o.error is not None for o in self.outcomes
            ),
            still_running=sum(o.state == "created" for o in self.outcomes),
        )


def _stem(outcome: ItemReport) -> str:
    """The files of an item are `{index:05d}-{prediction id}-{n}{ext}`."""
    return f"{outcome.item.index:05d}-{outcome.prediction_id}"
