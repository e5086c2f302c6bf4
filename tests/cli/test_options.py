"""The options `batch` and `demo` share are declared once and read as before."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from comet_replicate_async._cli._commands import cli

# Each command's lines for its shared options, as its --help printed them at a
# width of 80 before they were declared once.
SHARED_LINES = {
    "batch": [
        "  -o, --out DIRECTORY             Folder for images, journal and manifest.",
        "                                  [required]",
        "  --json                          Print a machine-readable summary.",
    ],
    "demo": [
        "  -o, --out DIRECTORY    Folder for the results (default: a new temporary",
        "                         folder).",
        "  --json                 Print a machine-readable summary.",
    ],
}


@pytest.mark.parametrize("command", sorted(SHARED_LINES))
def test_the_shared_options_read_as_before(command: str) -> None:
    done = CliRunner().invoke(cli, [command, "--help"], terminal_width=80)

    assert done.exit_code == 0, done.output
    lines = done.output.splitlines()
    assert [line for line in SHARED_LINES[command] if line not in lines] == []


def shared_options(name: str) -> list[tuple[str | None, tuple[str, ...], bool]]:
    return [
        (option.name, tuple(option.opts), option.is_flag)
        for option in cli.commands[name].params
        if isinstance(option, click.Option) and option.name in {"out", "as_json"}
    ]


def test_batch_and_demo_take_the_same_out_and_json() -> None:
    assert shared_options("batch") == shared_options("demo")
    assert [name for name, _, _ in shared_options("batch")] == ["out", "as_json"]
