"""The Troubleshooting page lists every `error:` line the command line can print.

The messages are read from the source (each call that builds one, and the
next steps the CLI adds to the library's errors), so a new message without its
entry on the page fails here.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "troubleshooting.md"
SOURCES = [
    *sorted((ROOT / "comet_replicate_async" / "_cli").glob("*.py")),
    ROOT / "comet_replicate_async" / "_journal" / "sqlite" / "format.py",
]
# Calls whose text ends up on an `error:` line (or on the lines listed above it).
BUILDERS = {
    "CliError",
    "PromptFileError",
    "JournalError",
    "JournalInputChanged",
    "_exit_now",
}


def _texts(node: ast.expr) -> list[str]:
    """The literal parts of a message expression."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.JoinedStr):
        return [
            part.value
            for part in node.values
            if isinstance(part, ast.Constant) and isinstance(part.value, str)
        ]
    return []


def _fixed_part(node: ast.expr) -> str | None:
    """The longest literal run of a message: what the page must show."""
    runs = [
        text.removeprefix("error: ").strip(" :;,.()0123456789") for text in _texts(node)
    ]
    runs = [run for run in runs if len(run) >= 6]
    return max(runs, key=len) if runs else None


def messages() -> list[tuple[str, str]]:
    found = []
    for source in SOURCES:
        tree = ast.parse(source.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                func = node.func
                name = (
                    func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
                )
                arguments = node.args
                if name == "_exit_now":
                    arguments = arguments[1:]
                elif name in ("echo", "print"):
                    arguments = [
                        arg
                        for arg in arguments
                        if any(text.startswith("error: ") for text in _texts(arg))
                    ]
                elif name == "append" and source.name == "_prompts.py":
                    pass  # the prompt file's bad lines, listed above the error
                elif name not in BUILDERS:
                    continue
                for argument in arguments[:1]:
                    fixed = _fixed_part(argument)
                    if fixed is not None:
                        found.append((f"{source.name}:{node.lineno}", fixed))
            # `_errors` returns (exit code, line) for the errors it words itself.
            if isinstance(node, ast.Return) and isinstance(node.value, ast.Tuple):
                fixed = _fixed_part(node.value.elts[-1])
                if fixed is not None:
                    found.append((f"{source.name}:{node.lineno}", fixed))
            # The next steps the CLI adds to the library's errors.
            if isinstance(node, ast.Tuple) and len(node.elts) == 3:
                kind, step, _ = node.elts
                if isinstance(kind, ast.Name) and isinstance(step, ast.Constant):
                    found.append((f"{source.name}:{node.lineno}", str(step.value)))
    return found


def test_the_source_has_the_messages_this_test_looks_for() -> None:
    fixed = {text for _, text in messages()}
    assert "no API key: pass --api-key or set COMETAPI_KEY" in fixed
    assert "check --api-key or COMETAPI_KEY" in fixed
    assert len(fixed) > 25


@pytest.mark.parametrize(("where", "text"), messages())
def test_every_error_line_is_on_the_troubleshooting_page(where: str, text: str) -> None:
    assert text in PAGE.read_text(), f"{where}: {text!r} is not on {PAGE.name}"
