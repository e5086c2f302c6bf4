"""Writes the model tables of docs/typed-inputs.md from the typed input classes.

    python docs/gen_typed_inputs.py

A test runs `render()` and compares it with the page, so the page cannot drift.
"""

from __future__ import annotations

import pathlib

import attrs

from comet_replicate_async._inputs.flux import FLUX_INPUTS

PAGE = pathlib.Path(__file__).with_name("typed-inputs.md")
BEGIN = "<!-- begin generated tables -->"
END = "<!-- end generated tables -->"


def render() -> str:
    """The generated part of the page: one table per model."""
    parts = []
    for cls in FLUX_INPUTS:
        shape = "a list of URLs" if cls.output_shape == "list" else "one URL"
        rows = ["| field | allowed | notes |", "|---|---|---|"]
        rows.append("| `prompt` | a non-empty string | required |")
        for field in attrs.fields(cls):
            check = field.metadata.get("check")
            if check is None:
                continue
            rows.append(
                f"| `{field.name}` | {check.describe()} | {field.metadata['doc']} |"
            )
        parts.append(
            f"### `{cls.__name__}`: `{cls.model}`\n\nOutput: {shape}.\n\n"
            + "\n".join(rows)
        )
    return "\n\n".join(parts)


def main() -> None:
    """Replace the generated part of the page."""
    text = PAGE.read_text()
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    PAGE.write_text(f"{head}{BEGIN}\n{render()}\n{END}{tail}")


if __name__ == "__main__":
    main()
