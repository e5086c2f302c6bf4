"""The click options several commands share, each declared once.

`batch` and `demo` both write a folder of results and can print their summary
as JSON; `run` saves its files to a folder too. Each helper builds a fresh
option per command (click keeps one `Option` object per command), so the
commands' `--help` read as before.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

__all__ = ["json_summary", "out_folder"]

F = TypeVar("F", bound=Callable[..., Any])


def out_folder(help: str, *, required: bool = False) -> Callable[[F], F]:
    """`--out`/`-o`: the folder a command writes to."""
    return click.option(
        "--out",
        "-o",
        required=required,
        type=click.Path(file_okay=False, path_type=Path),
        help=help,
    )


def json_summary() -> Callable[[F], F]:
    """`--json`: the summary a batch prints, for a machine to read."""
    return click.option(
        "--json", "as_json", is_flag=True, help="Print a machine-readable summary."
    )
