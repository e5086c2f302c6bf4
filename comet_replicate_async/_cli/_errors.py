"""How the command line ends on an expected failure: one `error: ...` line.

The line says what happened, where, and what to do next; a traceback is shown
only with `--debug`. The exit codes (also on the CLI page of the docs):

- 0: every prediction succeeded.
- 1: some predictions failed or are ambiguous; `run`/`get` failed; `doctor`
  found a failing check.
- 2: a usage or input error, or the output folder or its journal cannot be
  used: nothing was sent.
- 3: a fatal error (wrong key, no access, no such model or one the gateway
  does not serve, no quota, an unreachable API, a journal or an output file the
  disk refuses) stopped the batch.
- 130 interrupted (Ctrl-C), 143 SIGTERM, 129 SIGHUP: rerun to resume.
"""

from __future__ import annotations

import traceback

import click

from comet_replicate_async._exceptions import (
    APIConnectionError,
    AuthenticationError,
    CometReplicateError,
    ConfigurationError,
    InputValidationError,
    JournalError,
    JournalInUse,
    ModelNotFoundError,
    PermissionDeniedError,
)

from ._prompts import PromptFileError

__all__ = [
    "EXIT_FAILED",
    "EXIT_FATAL",
    "EXIT_INTERRUPTED",
    "EXIT_USAGE",
    "CliError",
    "cause_of",
    "report",
]

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_FATAL = 3
EXIT_INTERRUPTED = 130

#: What to do next, for the library's errors the CLI lets through (by type,
#: most specific first). The Troubleshooting page lists each of these.
_NEXT_STEP: tuple[tuple[type[BaseException], str, int], ...] = (
    (ModelNotFoundError, "check the model id", EXIT_FAILED),
    (AuthenticationError, "check --api-key or COMETAPI_KEY", EXIT_FAILED),
    (PermissionDeniedError, "check that the key may use this model", EXIT_FAILED),
    (
        APIConnectionError,
        "check --base-url or COMETAPI_BASE_URL and the network",
        EXIT_FAILED,
    ),
    (ConfigurationError, "check --base-url or COMETAPI_BASE_URL", EXIT_USAGE),
    (InputValidationError, "fix the input; nothing was sent", EXIT_USAGE),
    (JournalInUse, "nothing was sent", EXIT_USAGE),
    (JournalError, "nothing was sent", EXIT_USAGE),
    (CometReplicateError, "see the Troubleshooting page of the docs", EXIT_FAILED),
)


class CliError(Exception):
    """An expected failure the command reports as `error: {message}`."""

    def __init__(
        self, message: str, *, code: int = EXIT_USAGE, details: tuple[str, ...] = ()
    ) -> None:
        self.code = code
        self.details = details  # lines printed before the error line
        super().__init__(message)


def cause_of(error: BaseException) -> BaseException:
    """The cause inside (nested) exception groups: the one leaf that is ours, else
    the first leaf."""
    if not isinstance(error, BaseExceptionGroup):
        return error
    leaves = [cause_of(inner) for inner in error.exceptions]
    ours = [leaf for leaf in leaves if isinstance(leaf, CometReplicateError | CliError)]
    return ours[0] if len(ours) == 1 else leaves[0]


def report(error: BaseException, *, debug: bool) -> int:
    """Print `error` as one line (after its traceback with `--debug`); the exit code."""
    if debug:
        traceback.print_exception(error)
    cause = cause_of(error)
    code, line = _line(cause)
    for detail in getattr(cause, "details", ()):
        click.echo(detail, err=True)
    click.echo(f"error: {line}", err=True)
    return code


def _line(error: BaseException) -> tuple[int, str]:
    if isinstance(error, CliError):
        return error.code, str(error)
    if isinstance(error, PromptFileError):
        return EXIT_USAGE, str(error)
    if isinstance(error, click.UsageError):
        where = error.ctx.command_path if error.ctx is not None else "comet-replicate"
        return EXIT_USAGE, f"{error.format_message()}; see '{where} --help'"
    if isinstance(error, click.ClickException):
        return EXIT_USAGE, error.format_message()
    if isinstance(error, JournalError) and error.while_writing:
        return EXIT_FATAL, str(error)  # its message says that a rerun resumes
    for kind, next_step, code in _NEXT_STEP:
        if isinstance(error, kind):
            return code, f"{error}; {next_step}"
    if isinstance(error, KeyboardInterrupt):
        # 143 or 129 for SIGTERM or SIGHUP (`_signals.Interrupted`).
        code = getattr(error, "code", EXIT_INTERRUPTED)
        return code, "interrupted; rerun the same command to go on"
    if isinstance(error, OSError):
        where = f" {error.filename}" if error.filename else ""
        return EXIT_FAILED, f"cannot use{where} ({error.strerror or error})"
    return EXIT_FAILED, (
        f"unexpected {type(error).__name__}: {error}; rerun with --debug for "
        "the details and report it"
    )
