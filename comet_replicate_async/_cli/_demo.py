"""`comet-replicate demo`: a batch against the built-in fake server, no key needed."""

from __future__ import annotations

import tempfile
from pathlib import Path

import click

from comet_replicate_async._money.prices import PriceBook

from ._batch_report import BulkOptions
from ._batch_run import exit_code, run_batch
from ._options import json_summary, out_folder
from ._prompts import PromptFile, PromptItem

__all__ = ["demo"]


@click.command()
@out_folder("Folder for the results (default: a new temporary folder).")
@click.option(
    "--count",
    default=50,
    show_default=True,
    type=click.IntRange(1, 10_000),
    help="How many prompts.",
)
@json_summary()
def demo(out: Path | None, count: int, as_json: bool) -> None:
    """Run a batch against the built-in fake server: no key, no network."""
    from comet_replicate_async.testing import FakeCometAPI, Latency

    out = out or Path(tempfile.mkdtemp(prefix="comet-replicate-demo-"))
    model = "black-forest-labs/flux-schnell"
    subjects = ["a paper boat", "a red fox", "a lighthouse", "an owl", "a teapot"]
    items = tuple(
        PromptItem(
            index=n,
            key=str(n),
            line=n + 1,
            input={"prompt": f"{subjects[n % 5]}, study {n}"},
        )
        for n in range(count)
    )
    prompt_file = PromptFile(name="demo prompts", digest=f"demo-{count}", items=items)
    fake = FakeCometAPI(
        latency={"flux-schnell": Latency.uniform(0.3, 1.2)}, failure_rate=0.04
    )
    # The fake runs in the same event loop as the batch (see run_batch). Its
    # catalogue serves the bundled estimates: the summary shows them as such.
    options = BulkOptions(model=model, out_dir=out, price=PriceBook().get(model))
    summary, stopped_by = run_batch(
        None, prompt_file, options, as_json=as_json, fake=fake
    )
    if not as_json:
        click.echo(f"Open {summary.gallery_path} in a browser to see the images.")
    # The fake fails a few predictions on purpose; the demo worked unless stopped.
    raise click.exceptions.Exit(
        exit_code(summary, stopped_by) if summary.interrupted else 0
    )
