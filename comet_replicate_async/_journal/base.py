"""What a resumable batch records, and the `Journal` protocol a store follows.

A batch records each input by index, with the digest of its canonical JSON,
durably before its create; the prediction id durably after; and its outcome at
the end, with what each create cost (reserved before it, settled at its end),
so a rerun counts the money spent before against its cost cap. A store is an
async context manager; entering it takes the batch for this run (one run per
journal). The stores live beside this module: `sqlite/store.py` (a path given
as `journal=`) and `postgres/store.py` (a `postgresql://` URL, the journal many
workers share); `opener.py` picks one.
"""

from __future__ import annotations

import hashlib
import inspect
import json
from collections.abc import Mapping
from typing import Any, Literal, Protocol, Self, get_args, runtime_checkable

import attrs

from comet_replicate_async._values import Prediction, Status

__all__ = [
    "FINAL_STATES",
    "FinalState",
    "ItemState",
    "Journal",
    "JournalRecord",
    "input_digest",
    "prediction_record",
    "recorded_prediction",
    "takes_model",
]

#: Where an item stands. `queued` (recorded, not claimed yet) is a shared
#: journal's; a record read back shows it as `pending`.
ItemState = Literal[
    "queued", "pending", "created", "succeeded", "failed", "canceled", "ambiguous"
]
#: The states an item ends in.
FinalState = Literal["succeeded", "failed", "canceled", "ambiguous"]
FINAL_STATES: frozenset[str] = frozenset(get_args(FinalState))


def input_digest(input: Mapping[str, Any]) -> str:
    """SHA-256 of the input's canonical JSON (sorted keys, no spaces)."""
    canonical = json.dumps(
        input, sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


@attrs.frozen
class JournalRecord:
    """What a journal knows of one input.

    `prediction` holds the final prediction's id, status, model, output and
    error once it ended (the fields a resumed `BatchItem` carries). `cost` is
    what its create cost in US dollars (billed or possibly billed; 0 when
    aborted), None when no price was known. `model` is the `"owner/name"` it
    ran on, None in a journal written before models were recorded.
    """

    index: int
    digest: str
    state: ItemState
    prediction_id: str | None = None
    prediction: Mapping[str, Any] | None = None
    error: str | None = None
    cost: float | None = None
    model: str | None = None


@runtime_checkable
class Journal(Protocol):
    """A store for resumable batches (`as_completed(..., journal=...)`).

    Entering it takes the batch for this run and refuses at once if another run
    holds it; leaving it makes every write durable and lets the batch go.
    `pending` and `created` must be durable when they return: the batch sends the
    create only after `pending`, and counts an item created only after `created`.
    """

    async def __aenter__(self) -> Self: ...

    async def __aexit__(self, *exc_info: object) -> None: ...

    async def recorded(self) -> Mapping[int, JournalRecord]:
        """Every recorded input, by index."""
        ...

    async def pending(
        self,
        index: int,
        digest: str,
        *,
        cost: float | None = None,
        model: str | None = None,
    ) -> None:
        """The create of the input at `index` is about to be sent; `cost` is
        its price, reserved (None when no price is known); `model` the
        `"owner/name"` it runs on (the digest covers the input only)."""
        ...

    async def created(self, index: int, prediction_id: str) -> None:
        """The create answered with `prediction_id`."""
        ...

    async def unsent(self, index: int) -> None:
        """The create was provably never sent: forget the input (a rerun sends it)."""
        ...

    async def finish(
        self,
        index: int,
        state: FinalState,
        *,
        prediction: Mapping[str, Any] | None = None,
        error: str | None = None,
        cost: float | None = None,
    ) -> None:
        """The input ended; `prediction` as `prediction_record` makes it. `cost`
        (passed only when it changed, e.g. 0 for an aborted prediction) replaces
        the one given to `pending`."""
        ...


def takes_model(journal: Journal) -> bool:
    """Whether `journal.pending` takes `model=`: a store written for an earlier
    version may not, and then keeps the input's digest alone."""
    try:
        parameters = inspect.signature(journal.pending).parameters.values()
    except (TypeError, ValueError):  # no signature to read: assume the protocol
        return True
    return any(p.name == "model" or p.kind is p.VAR_KEYWORD for p in parameters)


def prediction_record(prediction: Prediction) -> dict[str, Any]:
    """The fields of an ended prediction that a journal keeps."""
    return {
        "id": prediction.id,
        "status": str(prediction.status),
        "model": prediction.model,
        "output": prediction.output,
        "error": prediction.error,
    }


def recorded_prediction(record: Mapping[str, Any]) -> Prediction:
    """The prediction `prediction_record` kept."""
    return Prediction(
        id=record["id"],
        status=Status(record["status"]),
        model=record.get("model") or "",
        output=record.get("output"),
        error=record.get("error"),
    )
