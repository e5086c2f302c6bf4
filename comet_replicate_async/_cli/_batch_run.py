"""Running a `batch` (or the `demo`) from the command line: the signals that
stop it, the progress view, and what it prints and exits with when it ends.

The batch itself is `_batch_folder`'s; this module is the part between it and
the click command.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Any

import anyio
import click

from comet_replicate_async._exceptions import (
    APIError,
    JournalInputChanged,
    JournalInUse,
    ModelNotFoundError,
)
from comet_replicate_async._session import Session
from comet_replicate_async._stats import Event

from ._batch_folder import run_bulk
from ._batch_report import BulkOptions, BulkSummary
from ._errors import CliError
from ._progress import ProgressView
from ._prompts import PromptFile
from ._signals import stop_on_signal

__all__ = ["exit_code", "make_folder", "print_breaker", "run_batch"]

DEMO_CONCURRENCY = 16


def make_folder(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise CliError(
            f"cannot create the output folder {out} ({error.strerror}); "
            "choose another --out; nothing was sent"
        ) from None


def print_breaker(event: Event) -> None:
    """One line when the session stops its creates in an outage, one when they go on."""
    if event.kind == "breaker_opened":
        error = event.error
        # The status, not the body: a gateway's error page is long HTML.
        last = f"HTTP {error.status_code}" if isinstance(error, APIError) else error
        click.echo(
            f"creates stopped: the gateway kept failing them (last: {last}); one "
            f"create probes it in {event.delay or 0:.0f} s, the others wait",
            err=True,
        )
    elif event.kind == "breaker_closed":
        click.echo("creates resumed: the gateway accepted a create", err=True)


def exit_code(summary: BulkSummary, stopped_by: int | None) -> int:
    # 128 + the signal, as a shell reports a process the signal ended.
    return 128 + stopped_by if summary.interrupted and stopped_by else summary.exit_code


def run_batch(
    session: Session | None,
    prompt_file: PromptFile,
    options: BulkOptions,
    *,
    as_json: bool,
    fake: Any = None,
) -> tuple[BulkSummary, int | None]:
    """The batch's summary, and the signal that stopped it (if one did)."""
    view = ProgressView(total=len(prompt_file.items), quiet=as_json)
    signals: list[int] = []

    async def go() -> BulkSummary | JournalInputChanged | JournalInUse:
        stop = anyio.Event()
        outcome: BulkSummary | JournalInputChanged | JournalInUse
        async with anyio.create_task_group() as group:
            group.start_soon(stop_on_signal, stop, view.note, signals)
            try:
                outcome = await _batch_in_loop(
                    session, prompt_file, options, view, stop, fake
                )
            except (JournalInputChanged, JournalInUse) as refused:
                # Kept, not raised: the task group would wrap it in a group.
                outcome = refused
            group.cancel_scope.cancel()
        return outcome

    summary = anyio.run(go)
    stopped_by = signals[0] if signals else None
    if isinstance(summary, JournalInputChanged | JournalInUse):
        raise CliError(str(summary))
    if isinstance(summary.stopped_by, ModelNotFoundError) and not as_json:
        refused = summary.stopped_by
        near = f" (did you mean {refused.suggestion}?)" if refused.suggestion else ""
        click.echo(
            f"error: the gateway does not serve the model {refused.model}{near}; "
            f"nothing was created for it, {summary.not_sent} input(s) were not "
            "sent. Check --model and rerun the same command.",
            err=True,
        )
        return summary, stopped_by
    if summary.stopped_by is not None and not as_json:
        # One line, not a table of identical failures.
        click.echo(
            f"error: stopped after a create failed with {summary.stopped_by}; "
            f"{summary.not_sent} input(s) were not sent. Fix the cause and rerun "
            "the same command to go on.",
            err=True,
        )
        return summary, stopped_by
    view.print_summary(summary, as_json=as_json)
    if summary.interrupted:
        if summary.still_running:
            click.echo(
                f"{summary.still_running} prediction(s) were still running (and "
                "are billed); a rerun polls them and downloads their images.",
                err=True,
            )
        click.echo(
            "Interrupted: the journal is consistent. Resume with:\n  "
            + shlex.join(["comet-replicate", *sys.argv[1:]]),
            err=True,
        )
    return summary, stopped_by


async def _batch_in_loop(
    session: Session | None,
    prompt_file: PromptFile,
    options: BulkOptions,
    view: ProgressView,
    stop: anyio.Event,
    fake: Any,
) -> BulkSummary:
    if fake is not None:
        await fake.start()
    try:
        price = options.price
        client = session or Session(
            fake.api_key,
            base_url=fake.base_url,
            max_concurrency=DEMO_CONCURRENCY,
            prices=None if price is None else {options.model: price.usd},
        )
        async with client:
            with view:
                return await run_bulk(
                    client, prompt_file, options, on_progress=view.update, stop=stop
                )
    finally:
        if fake is not None:
            await fake.close()
