"""A batch's inputs: any iterable read as one async stream, checked against a journal.

The engine pulls one input per free slot, so inputs are read lazily; only a
resumed batch reads ahead, up to the journal's last recorded position, to check
every recorded input before anything is created.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Iterable, Mapping
from typing import TYPE_CHECKING

from ._batch_journal import JournalRecord, input_digest
from ._exceptions import InputValidationError, JournalInputChanged
from ._inputs import FluxInput, resolve_call

if TYPE_CHECKING:
    from ._session import BatchInput

__all__ = ["Inputs", "aiter_inputs", "checked_inputs"]

Inputs = Iterable["BatchInput"] | AsyncIterable["BatchInput"]


async def checked_inputs(
    inputs: AsyncIterator[BatchInput],
    model: str | type[FluxInput],
    records: Mapping[int, JournalRecord],
) -> AsyncIterator[BatchInput]:
    """The inputs, after checking each recorded position against its record.

    The inputs up to the last recorded position are read first, so a changed one
    raises before any create.
    """
    if not records:
        return inputs
    head: list[BatchInput] = []
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
            _, body = resolve_call(model, input)
        except InputValidationError:
            body = None
        if body is None or input_digest(body) != record.digest:
            raise JournalInputChanged(
                f"input {index} differs from the one this journal recorded; "
                "use another journal for another batch",
                index,
            )
    if len(head) <= last:
        missing = sorted(set(records) - set(range(len(head))))
        raise JournalInputChanged(
            f"the journal records {len(missing)} input(s) past the end of the "
            f"inputs (from position {missing[0]}); use another journal",
            missing[0],
        )
    return _chain(head, inputs)


async def _chain(
    head: list[BatchInput], rest: AsyncIterator[BatchInput]
) -> AsyncIterator[BatchInput]:
    for input in head:
        yield input
    async for input in rest:
        yield input


async def aiter_inputs(inputs: Inputs) -> AsyncIterator[BatchInput]:
    """Any iterable of inputs, sync or async, as an async iterator."""
    if isinstance(inputs, AsyncIterable):
        async for input in inputs:
            yield input
    else:
        for input in inputs:
            yield input
