"""A batch's inputs: any iterable read as one async stream, checked against a journal.

The engine pulls one input per free slot, so inputs are read lazily; only a
resumed batch reads ahead, up to the journal's last recorded index, to check
every recorded input before anything is created.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Iterable, Mapping
from typing import Any

from comet_replicate_async._exceptions import InputValidationError, JournalInputChanged
from comet_replicate_async._inputs.base import (
    BatchModel,
    FluxInput,
    ModelCall,
    resolve_item,
)
from comet_replicate_async._journal.base import JournalRecord, input_digest

__all__ = [
    "BatchInput",
    "BatchInputs",
    "Inputs",
    "TypedInputs",
    "aiter_inputs",
    "batch_args",
    "checked_inputs",
]

# What `as_completed` and `gather` take: dicts or typed inputs, sync or async.
BatchInput = Mapping[str, Any] | FluxInput
BatchInputs = Iterable[BatchInput] | AsyncIterable[BatchInput]
# A batch with no model argument: each input is typed and names its model.
TypedInputs = Iterable[FluxInput] | AsyncIterable[FluxInput]
# What the engine takes: the public inputs, or the command line's `ModelCall`s.
Input = BatchInput | ModelCall
Inputs = Iterable[Input] | AsyncIterable[Input]


def batch_args(
    model: str | type[FluxInput] | TypedInputs, inputs: BatchInputs | None
) -> tuple[str | type[FluxInput] | None, BatchInputs]:
    """A batch call's model (None: each input names its own) and inputs."""
    if inputs is not None:
        if isinstance(model, Iterable | AsyncIterable) and not isinstance(model, str):
            raise TypeError(
                "pass a model and inputs, or typed inputs alone, not two lists"
            )
        return model, inputs  # a model of the wrong kind: the batch says so
    if isinstance(model, str | type):
        raise TypeError(f"no inputs given for the batch on {model!r}")
    return None, model


async def checked_inputs(
    inputs: AsyncIterator[Input],
    model: BatchModel,
    records: Mapping[int, JournalRecord],
) -> AsyncIterator[Input]:
    """The inputs, after checking each recorded index against its record.

    The inputs up to the last recorded index are read first, so a changed one
    raises before any create. The model counts as part of an input: the same
    prompt on another model is another item (a record written before models
    were recorded is checked by its digest alone).
    """
    if not records:
        return inputs
    head: list[Input] = []
    last = max(records)
    async for input in inputs:
        head.append(input)
        if len(head) > last:
            break
    for index, input in enumerate(head):
        record = records.get(index)
        if record is None:
            continue
        try:
            model_id, body = resolve_item(model, input)
        except InputValidationError:
            model_id, body = None, None
        if body is None or input_digest(body) != record.digest:
            raise JournalInputChanged(
                f"input {index} differs from the one this journal recorded; "
                "use another journal for another batch",
                index,
            )
        if record.model is not None and model_id != record.model:
            raise JournalInputChanged(
                f"input {index} runs on {model_id}, but this journal recorded it "
                f"on {record.model}; use another journal for another batch",
                index,
                recorded_model=record.model,
            )
    if len(head) <= last:
        missing = sorted(set(records) - set(range(len(head))))
        raise JournalInputChanged(
            f"the journal records {len(missing)} input(s) past the end of the "
            f"inputs (from position {missing[0]}); use another journal",
            missing[0],
        )
    return _chain(head, inputs)


async def _chain(head: list[Input], rest: AsyncIterator[Input]) -> AsyncIterator[Input]:
    for input in head:
        yield input
    async for input in rest:
        yield input


async def aiter_inputs(inputs: Inputs) -> AsyncIterator[Input]:
    """Any iterable of inputs, sync or async, as an async iterator."""
    if isinstance(inputs, AsyncIterable):
        async for input in inputs:
            yield input
    else:
        for input in inputs:
            yield input
