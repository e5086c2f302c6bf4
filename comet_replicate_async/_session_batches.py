"""`Session`'s batch calls, `as_completed` and `gather`: their two forms (with a
model for every input, or typed inputs that each name their own), handed to the
batch engine (`_batch/feed.py`)."""

from __future__ import annotations

from collections.abc import AsyncIterable, Iterable
from typing import TYPE_CHECKING, overload

from ._batch.feed import JournalArg, start_batch
from ._batch.inputs import BatchInputs, TypedInputs
from ._batch.tracker import BatchIterator
from ._inputs.base import FluxInput
from ._values import BatchItem

if TYPE_CHECKING:
    from ._lifecycle import Lifecycle
    from ._parts import SessionParts

__all__ = ["BatchCalls"]


class BatchCalls:
    """The batch calls of a `Session` (its base class)."""

    _life: Lifecycle
    _parts: SessionParts

    @overload
    def as_completed(
        self,
        model: str | type[FluxInput],
        inputs: BatchInputs,
        *,
        timeout: float | None = None,
        journal: JournalArg | None = None,
    ) -> BatchIterator: ...

    @overload
    def as_completed(
        self,
        inputs: TypedInputs,
        /,
        *,
        timeout: float | None = None,
        journal: JournalArg | None = None,
    ) -> BatchIterator: ...

    def as_completed(
        self,
        model: str | type[FluxInput] | TypedInputs,
        inputs: BatchInputs | None = None,
        *,
        timeout: float | None = None,
        journal: JournalArg | None = None,
    ) -> BatchIterator:
        """Run one prediction per input; yield a `BatchItem` for each as it finishes.

        Inputs are pulled lazily, one for each free slot of the concurrency window,
        so a huge (or endless) input never sits in memory. A failed item is a
        `BatchItem` with `error` set; its siblings carry on. Stop early with
        `contextlib.aclosing(...)` and `break` (items not read are logged at
        WARNING, each with its id), or with `await items.stop()`, which also
        returns them.

        `model` is `"owner/name"` or a typed input class such as `FluxSchnell`;
        each input is a dict or a typed input, validated when its turn comes (an
        invalid one becomes an item with `InputValidationError`, and costs nothing).
        Without `model` (`as_completed([FluxSchnell(...), FluxDev(...)])`) each
        input must be typed and runs on the model it names; a dict there is an
        invalid input. Either way every item says its model (`BatchItem.model`),
        and every model shares the session's one concurrency window and pace.

        `journal` (a path to an SQLite file, or an object following the `Journal`
        protocol) makes the batch resumable: a rerun with the same journal yields
        finished items again without a request (`BatchItem.resumed`), polls the
        predictions already created, and never creates again an input whose
        create was in flight (`AmbiguousSubmitError`, unless the retry policy
        opts into `retry_ambiguous_creates`). One run at a time holds a journal.
        A `postgresql://...?batch=NAME` URL shares one batch between many
        workers instead, each yielding the items it handled (see "One batch on
        many machines" in the docs).
        """
        return self._start(model, inputs, timeout, journal)

    @overload
    async def gather(
        self,
        model: str | type[FluxInput],
        inputs: BatchInputs,
        *,
        timeout: float | None = None,
        journal: JournalArg | None = None,
    ) -> list[BatchItem]: ...

    @overload
    async def gather(
        self,
        inputs: TypedInputs,
        /,
        *,
        timeout: float | None = None,
        journal: JournalArg | None = None,
    ) -> list[BatchItem]: ...

    async def gather(
        self,
        model: str | type[FluxInput] | TypedInputs,
        inputs: BatchInputs | None = None,
        *,
        timeout: float | None = None,
        journal: JournalArg | None = None,
    ) -> list[BatchItem]:
        """Run one prediction per input; return every `BatchItem` in input order.

        Takes the same arguments as `as_completed`, with or without `model`.
        """
        batch = self._start(model, inputs, timeout, journal)
        return sorted([item async for item in batch], key=lambda item: item.index)

    def _start(
        self,
        model: str | type[FluxInput] | TypedInputs,
        inputs: BatchInputs | None,
        timeout: float | None,
        journal: JournalArg | None,
    ) -> BatchIterator:
        self._life.check_usable()
        model_arg, items = batch_args(model, inputs)
        return start_batch(self._parts.batch, model_arg, items, timeout, journal)


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
