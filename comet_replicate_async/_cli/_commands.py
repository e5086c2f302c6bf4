"""The `comet-replicate` command line (the `cli` extra: click and rich).

Exit codes and the one `error: ...` line of an expected failure: see `_errors`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import anyio
import attrs
import click

from comet_replicate_async._inputs.base import resolve_call
from comet_replicate_async._inputs.flux import typed_input_class
from comet_replicate_async._retry import RetryPolicy
from comet_replicate_async._session import Session
from comet_replicate_async._values import Prediction

from ._batch_report import BulkOptions
from ._batch_run import exit_code, make_folder, print_breaker, run_batch
from ._costs import (
    batch_prices,
    print_dry_run,
    read_price_book,
    read_prices,
    read_usd,
)
from ._demo import demo
from ._doctor import check_reachable, doctor_report
from ._errors import EXIT_FAILED, EXIT_INTERRUPTED, CliError, report
from ._log_policy import apply_log_policy
from ._options import json_summary, out_folder
from ._prompts import (
    coerce_parameter,
    read_models,
    read_prompts,
)
from ._shared_batch import check_journal_url
from ._signals import interrupt_on_signal
from ._status import status
from ._telemetry import telemetry_from_environment

__all__ = ["cli", "main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    # The group fills it in: `report` needs --debug after click has returned.
    state: dict[str, Any] = {"debug": False}
    try:
        code = cli.main(
            args=list(argv) if argv is not None else None,
            standalone_mode=False,
            obj=state,
        )
    except click.exceptions.Exit as done:
        return done.exit_code
    except click.exceptions.Abort as aborted:
        if isinstance(aborted.__cause__, KeyboardInterrupt):
            # Ctrl-C (or SIGTERM, SIGHUP) before the batch listened: one line.
            return report(aborted.__cause__, debug=state["debug"])
        click.echo("Aborted.", err=True)
        return EXIT_INTERRUPTED
    except (Exception, KeyboardInterrupt, BaseExceptionGroup) as error:
        return report(error, debug=state["debug"])
    # Without standalone mode, click returns the code of `Exit` instead of raising.
    return code if isinstance(code, int) else 0


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--api-key", envvar="COMETAPI_KEY", help="CometAPI key [env: COMETAPI_KEY]."
)
@click.option(
    "--base-url", envvar="COMETAPI_BASE_URL", help="API root [env: COMETAPI_BASE_URL]."
)
@click.option(
    "--debug", is_flag=True, help="Show the traceback of an error, for a bug report."
)
@click.pass_context
def cli(
    ctx: click.Context, api_key: str | None, base_url: str | None, debug: bool
) -> None:
    """Create FLUX images through CometAPI's Replicate-format API."""
    ctx.ensure_object(dict)
    ctx.obj.update(api_key=api_key, base_url=base_url, debug=debug)
    apply_log_policy(debug=debug)
    interrupt_on_signal()


def _parameters(model: str, pairs: Sequence[str]) -> dict[str, Any]:
    return {
        name: coerce_parameter(model, name, value)
        for name, value in _texts(pairs).items()
    }


def _texts(pairs: Sequence[str]) -> dict[str, str]:
    """`-i key=value` pairs as texts (each line's model reads them its way)."""
    texts: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise CliError(f"-i takes key=value, got {pair!r}")
        texts[name.strip()] = value
    return texts


def _api_key(ctx: click.Context) -> str:
    if not ctx.obj["api_key"]:
        raise CliError("no API key: pass --api-key or set COMETAPI_KEY")
    return str(ctx.obj["api_key"])


def _session(ctx: click.Context, **options: Any) -> Session:
    return Session(_api_key(ctx), base_url=ctx.obj["base_url"], **options)


@cli.command()
@click.argument("model")
@click.argument("prompt", required=False)
@click.option(
    "-i",
    "--input",
    "pairs",
    multiple=True,
    metavar="KEY=VALUE",
    help="An input parameter (repeatable), e.g. -i aspect_ratio=16:9.",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    help="Save the output files here.",
)
@click.option("--timeout", type=float, help="Give up waiting after this many seconds.")
@click.option("--json", "as_json", is_flag=True, help="Print the prediction as JSON.")
@click.pass_context
def run(
    ctx: click.Context,
    model: str,
    prompt: str | None,
    pairs: tuple[str, ...],
    out: Path | None,
    timeout: float | None,
    as_json: bool,
) -> None:
    """Run one prediction of MODEL and print its output URLs.

    PROMPT is the same as -i prompt=PROMPT; give it one way, not both.
    """
    parameters = _parameters(model, pairs)
    if prompt is not None:
        if "prompt" in parameters:
            raise click.UsageError(
                "the prompt is given twice, as PROMPT and as -i prompt=...; "
                "give it once",
                ctx,
            )
        parameters["prompt"] = prompt
    model_id, body = resolve_call(typed_input_class(model) or model, parameters)

    async def go() -> tuple[Prediction, list[Path]]:
        async with _session(ctx) as session:
            prediction = await session.run(model_id, body, timeout=timeout)
            files = await session.download(prediction, out) if out else []
            return prediction, files

    prediction, files = anyio.run(go)
    if as_json:
        click.echo(json.dumps(_prediction_json(prediction), indent=2))
        return
    for url in prediction.output_urls:
        click.echo(url)
    for path in files:
        click.echo(f"saved {path}", err=True)


@cli.command()
@click.argument("prediction_id")
@click.pass_context
def get(ctx: click.Context, prediction_id: str) -> None:
    """Print one prediction as JSON."""

    async def go() -> Prediction:
        async with _session(ctx) as session:
            return await session.get(prediction_id)

    prediction = anyio.run(go)
    click.echo(json.dumps(_prediction_json(prediction), indent=2))


@cli.command()
@click.argument("prompts", metavar="PROMPTS")
@click.option(
    "--model",
    "-m",
    help="Model id for the lines that name none, e.g. black-forest-labs/flux-schnell.",
)
@click.option(
    "--models",
    callback=read_models,
    metavar="A,B,...",
    help="Run every line that names no model on each of these models.",
)
@out_folder("Folder for images, journal and manifest.", required=True)
@click.option(
    "--concurrency",
    "-c",
    default=16,
    show_default=True,
    type=click.IntRange(1, 10_000),
    help="Predictions in flight at once.",
)
@click.option(
    "--rate",
    type=click.FloatRange(min=0, min_open=True),
    help="At most this many creates a minute.",
)
@click.option(
    "-i",
    "--input",
    "pairs",
    multiple=True,
    metavar="KEY=VALUE",
    help="A parameter for every prompt (repeatable).",
)
@click.option(
    "--resubmit-ambiguous",
    is_flag=True,
    help="Send again a create whose answer was lost (this run, or a crashed "
    "one: 'ambiguous'). May pay twice.",
)
@click.option(
    "--journal",
    metavar="URL",
    help="Share the batch with other workers: postgresql://...?batch=NAME.",
)
@click.option(
    "--max-cost",
    callback=read_usd,
    metavar="USD",
    help="Create nothing more once this many US dollars are spent or reserved, "
    "over every run of the --out folder.",
)
@click.option(
    "--price",
    "prices",
    multiple=True,
    callback=read_prices,
    metavar="MODEL=USD",
    help="The price of one image of MODEL (repeatable); wins over CometAPI's "
    "catalogue.",
)
@click.option(
    "--dry-run",
    is_flag=True,
    help="Check every input and estimate the cost; send nothing.",
)
@click.option(
    "--server-deadline",
    is_flag=True,
    help="Send Cancel-After, so the server stops a prediction nobody waits for "
    "(whether CometAPI passes it on is unconfirmed).",
)
@json_summary()
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="json: the library's log records (WARNING up; all with --debug) on "
    "stderr, one JSON object a line, with prediction_id, model and batch.",
)
@click.pass_context
def batch(
    ctx: click.Context,
    prompts: str,
    model: str | None,
    models: tuple[str, ...],
    out: Path,
    concurrency: int,
    rate: float | None,
    pairs: tuple[str, ...],
    resubmit_ambiguous: bool,
    journal: str | None,
    max_cost: float | None,
    prices: dict[str, float],
    dry_run: bool,
    server_deadline: bool,
    as_json: bool,
    log_format: str,
) -> None:
    """Run one prediction per line of PROMPTS (.txt, .jsonl or .csv; - for stdin).

    Resumable: a journal in the --out folder records every create, so running the
    same command again skips finished items and polls created ones instead of
    paying for them twice. Prompts may be added at the end of the file between
    runs; a changed one is refused.

    A line may name its model (a "model" column or key); the others run on
    --model, or once on each of --models.

    With --journal postgresql://... the batch is shared: run the same command on
    several machines, each with its own --out for its part of the results.

    With the otel extra, the OpenTelemetry SDK and an exporter installed, the
    standard OTEL_* variables (OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_SERVICE_NAME,
    ...) export the batch's traces and metrics.
    """
    if log_format == "json":
        apply_log_policy(debug=ctx.obj["debug"], json_lines=True)
    if journal is not None:
        check_journal_url(journal)
    if model is not None and models:
        raise click.UsageError("give --model or --models, not both")
    prompt_file = read_prompts(prompts, model, defaults=_texts(pairs), models=models)
    api_key, base_url = ctx.obj["api_key"], ctx.obj["base_url"]
    names = prompt_file.models
    if dry_run:
        book = anyio.run(read_price_book, api_key, base_url, names, prices)
        print_dry_run(prompt_file, book, max_cost, as_json=as_json)
        return
    make_folder(out)
    anyio.run(check_reachable, _api_key(ctx), base_url)
    found = anyio.run(batch_prices, api_key, base_url, names, prices, max_cost)
    telemetry = telemetry_from_environment()
    session = _session(
        ctx,
        max_concurrency=concurrency,
        creates_per_minute=rate,
        # The session's own switch: it also resends a create whose answer was
        # lost in this run. Both may pay twice, as the option says.
        retry=RetryPolicy(retry_ambiguous_creates=resubmit_ambiguous),
        max_cost=max_cost,
        # With the models' prices, the journal records what each input cost.
        prices={**prices, **{name: p.usd for name, p in found.items() if p}},
        server_deadline=server_deadline,
        on_event=print_breaker,
        **telemetry.session_options(),
    )
    options = BulkOptions(
        model=", ".join(names),
        out_dir=out,
        journal_url=journal,
        price=found[names[0]] if len(names) == 1 else None,
        max_cost=max_cost,
        prices=found,
    )
    try:
        summary, stopped_by = run_batch(session, prompt_file, options, as_json=as_json)
    finally:
        telemetry.shutdown()
    raise click.exceptions.Exit(exit_code(summary, stopped_by))


@cli.command()
@click.pass_context
def doctor(ctx: click.Context) -> None:
    """Check the key, the API, the price catalogue and versions; create nothing."""
    lines, passed = doctor_report(ctx.obj["api_key"], ctx.obj["base_url"])
    for line in lines:
        click.echo(line)
    if not passed:
        click.echo("error: a check failed (see FAIL above)", err=True)
        raise click.exceptions.Exit(EXIT_FAILED)


@cli.command(
    "fake-server",
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
)
@click.option(
    "--port", default=0, show_default=True, type=int, help="Port; 0 picks a free one."
)
@click.pass_context
def fake_server(ctx: click.Context, port: int) -> None:
    """Serve the fake CometAPI for your own tests (see --help of the fake below).

    Extra options go to the fake server: `--latency flux-schnell=uniform:1:3`,
    `--failure-rate 0.05`, `--creates-per-minute 300` and so on.
    """
    from comet_replicate_async.testing.__main__ import main as serve

    raise click.exceptions.Exit(serve(["--port", str(port), *ctx.args]))


cli.add_command(demo)
cli.add_command(status)


def _prediction_json(prediction: Prediction) -> dict[str, Any]:
    def value(_: Any, __: Any, item: Any) -> Any:
        if isinstance(item, datetime):
            return item.isoformat()
        return item

    data = attrs.asdict(prediction, value_serializer=value)
    data["output_urls"] = list(prediction.output_urls)
    return data
