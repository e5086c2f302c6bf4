"""Prompt files for bulk batches: `.txt`, `.jsonl` and `.csv`, read and checked whole.

Every line is read and validated before the first request, so a typo on line
9,000 costs nothing and names its file and line. The file's hash lets a rerun
notice that its input changed.

A line may name its model (a `model` column or key); the others run on the
default (`--model`), or once on each of several (`--models`).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import click

from comet_replicate_async._exceptions import InputValidationError
from comet_replicate_async._inputs.base import resolve_call
from comet_replicate_async._inputs.flux import typed_input_class
from comet_replicate_async._sansio import validate_model_id

__all__ = [
    "PromptFile",
    "PromptFileError",
    "PromptItem",
    "coerce_parameter",
    "read_models",
    "read_prompts",
]


#: Bad lines listed one by one; the rest are counted.
SHOWN_PROBLEMS = 20


class PromptFileError(Exception):
    """A prompt file that cannot be used; the message names the file and line.

    `details` lists each bad line (`FILE:LINE: field: problem`), up to
    `SHOWN_PROBLEMS`, then a count of the rest.
    """

    def __init__(self, message: str, details: tuple[str, ...] = ()) -> None:
        self.details = details
        super().__init__(message)


def _bad_lines(name: str, problems: list[str]) -> PromptFileError:
    shown = problems[:SHOWN_PROBLEMS]
    if len(problems) > SHOWN_PROBLEMS:
        shown.append(f"... and {len(problems) - SHOWN_PROBLEMS} more")
    if len(problems) == 1:
        return PromptFileError(f"{problems[0]}; fix it and rerun (nothing was sent)")
    return PromptFileError(
        f"{name}: {len(problems)} bad lines (above); fix them and rerun "
        "(nothing was sent)",
        tuple(shown),
    )


@attrs.frozen
class PromptItem:
    """One input of a batch.

    Attributes:
        index: position in the file, from 0.
        key: stable identity across reruns: the JSONL `id`, else the index.
        line: where it stands in the file (1-based), for messages.
        input: the `input` object to send.
        model: the `"owner/name"` it runs on ("": the batch's one model).
    """

    index: int
    key: str
    line: int
    input: Mapping[str, Any]
    model: str = ""


@attrs.frozen
class PromptFile:
    """A whole prompt file, read and checked."""

    name: str
    digest: str
    items: tuple[PromptItem, ...]

    @property
    def models(self) -> tuple[str, ...]:
        """The models its items run on, in order of first appearance."""
        return tuple(dict.fromkeys(item.model for item in self.items))


def coerce_parameter(model: str, name: str, text: str) -> Any:
    """A `key=value` text as the type the model's field wants.

    Known fields of the seven models get their own type (`"4"` is 4 for
    `num_outputs`, but stays `"0.25"` for `megapixels`); other keys are read as
    JSON when they parse (`true`, `3`, `[1, 2]`), else kept as text.
    """
    cls = typed_input_class(model)
    field = attrs.fields_dict(cls).get(name) if cls is not None else None
    check = field.metadata.get("check") if field is not None else None
    kind = check.kind if check is not None else None
    if name == "prompt" or kind in ("choice", "image"):
        return text
    if kind == "switch":
        lowered = text.strip().lower()
        if lowered in ("true", "1", "yes"):
            return True
        if lowered in ("false", "0", "no"):
            return False
        return text  # validation names it
    if kind in ("integer", "number"):
        try:
            return int(text) if kind == "integer" else float(text)
        except ValueError:
            return text  # validation names it
    try:
        return json.loads(text)
    except ValueError:
        return text


def read_prompts(
    source: str | Path,
    model: str | None,
    *,
    defaults: Mapping[str, str] | None = None,
    models: Sequence[str] = (),
) -> PromptFile:
    """Read, merge with `defaults` (from `-i key=value`) and validate every item.

    `source` is a `.txt`, `.jsonl` or `.csv` path, or `-` for standard input (read
    as JSONL when its first line starts with `{`, else as text). A line's own
    model (a `model` column or key) wins; a line without one runs on `model`,
    or once on each of `models`, one item per model, in that order.

    Raises:
        PromptFileError: a missing, empty, unreadable or malformed file, a bad
            model, a line with no model to run on, or an invalid item; the
            message names the file and line.
    """
    name = "<stdin>" if str(source) == "-" else str(source)
    raw = _read_bytes(source, name)
    text = _decode(raw, name)
    kind = _kind(source, text)
    fallback = tuple(models) or ((model,) if model is not None else ())
    problems: list[str] = []
    if kind == "csv":
        rows = _csv_rows(text, name, problems)
    elif kind == "jsonl":
        rows = _jsonl_rows(text, name, problems)
    else:
        rows = [
            (number, {"prompt": line.strip()})
            for number, line in enumerate(text.splitlines(), start=1)
            if line.strip() and not line.lstrip().startswith("#")
        ]
    if not rows and not problems:
        raise PromptFileError(f"{name}: no prompts in the file")
    items: list[PromptItem] = []
    seen: dict[str, int] = {}
    for number, (line, row) in enumerate(rows):
        explicit = row.pop("id", None) if kind == "jsonl" else None
        key = str(explicit) if explicit is not None else str(number)
        if key in seen:
            problems.append(
                f"{name}:{line}: id {key!r} already used on line {seen[key]}"
            )
            continue
        seen[key] = line
        own = row.pop("model", None)
        if own is not None and (not isinstance(own, str) or not own.strip()):
            problems.append(f"{name}:{line}: model must be 'owner/name'")
            continue
        line_models = (own.strip(),) if own is not None else fallback
        if not line_models:
            problems.append(
                f"{name}:{line}: no model for this line: give it a model "
                "column (CSV) or key (JSONL), or pass --model"
            )
            continue
        for line_model in line_models:
            try:
                body = _checked(line_model, defaults or {}, row, kind)
            except InputValidationError as error:
                problems.append(f"{name}:{line}: {error}")
                continue
            several = len(line_models) > 1
            items.append(
                PromptItem(
                    index=len(items),
                    key=f"{key}@{line_model}" if several else key,
                    line=line,
                    input=body,
                    model=line_model,
                )
            )
    if problems:
        problems.sort(key=_line_number)
        raise _bad_lines(name, problems)
    return PromptFile(
        name=name, digest=hashlib.sha256(raw).hexdigest(), items=tuple(items)
    )


def read_models(
    ctx: click.Context, param: click.Parameter, value: str | None
) -> tuple[str, ...]:
    """`--models a,b,c`: model ids, each once, in the order given."""
    names = [name.strip() for name in (value or "").split(",") if name.strip()]
    for name in names:
        try:
            validate_model_id(name)
        except InputValidationError as error:
            raise click.BadParameter(str(error), ctx, param) from None
    return tuple(dict.fromkeys(names))


def _checked(
    model: str, defaults: Mapping[str, str], row: Mapping[str, Any], kind: str
) -> dict[str, Any]:
    """The `input` object of one line on `model`: `-i` texts and CSV cells read
    as that model's fields want, then validated."""
    texts = {**defaults, **row} if kind == "csv" else defaults
    merged = {name: coerce_parameter(model, name, text) for name, text in texts.items()}
    if kind != "csv":
        merged.update(row)
    _, body = resolve_call(typed_input_class(model) or model, merged)
    return body


def _read_bytes(source: str | Path, name: str) -> bytes:
    if str(source) == "-":
        return sys.stdin.buffer.read()
    path = Path(source)
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise PromptFileError(f"{name}: no such file") from None
    except OSError as error:
        raise PromptFileError(f"{name}: cannot read it ({error.strerror})") from None


def _decode(raw: bytes, name: str) -> str:
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = raw[: error.start].count(b"\n") + 1
        raise PromptFileError(f"{name}:{line}: not UTF-8 text") from None


def _kind(source: str | Path, text: str) -> str:
    suffix = Path(str(source)).suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        return "jsonl"
    if suffix == ".csv":
        return "csv"
    if str(source) == "-" and text.lstrip().startswith("{"):
        return "jsonl"
    return "txt"


def _line_number(problem: str) -> int:
    # "FILE:LINE: ..." (a file name may hold colons: the number is the last part)
    number = problem.split(": ", 1)[0].rpartition(":")[2]
    return int(number) if number.isdigit() else 0


def _jsonl_rows(
    text: str, name: str, problems: list[str]
) -> list[tuple[int, dict[str, Any]]]:
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as error:
            problems.append(f"{name}:{number}: not valid JSON ({error.msg})")
            continue
        if not isinstance(value, dict):
            problems.append(f"{name}:{number}: each line must be a JSON object")
            continue
        rows.append((number, value))
    return rows


def _csv_rows(
    text: str, name: str, problems: list[str]
) -> list[tuple[int, dict[str, Any]]]:
    """Each row's cells as text (read as the line's model wants later)."""
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        raise PromptFileError(f"{name}: no prompts in the file") from None
    except csv.Error as error:
        raise PromptFileError(f"{name}:1: malformed CSV ({error})") from None
    columns = [column.strip() for column in header]
    if "prompt" not in columns:
        raise PromptFileError(f"{name}:1: the header needs a 'prompt' column")
    rows = []
    try:
        for cells in reader:
            number = reader.line_num
            if not any(cell.strip() for cell in cells):
                continue
            if len(cells) != len(columns):
                problems.append(
                    f"{name}:{number}: {len(cells)} cells, the header has {len(columns)}"
                )
                continue
            rows.append(
                (
                    number,
                    {
                        column: cell
                        for column, cell in zip(columns, cells, strict=True)
                        if cell != ""
                    },
                )
            )
    except csv.Error as error:
        raise PromptFileError(
            f"{name}:{reader.line_num}: malformed CSV ({error})"
        ) from None
    return rows
