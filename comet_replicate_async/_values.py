"""Values read from the API: `Status`, `Metrics`, `Prediction`, and `BatchItem`."""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

import attrs

__all__ = ["BatchItem", "CardSlot", "Metrics", "Prediction", "Status", "cards"]


class Status(enum.StrEnum):
    """A prediction's status.

    A status string this client does not know (the API may add one) becomes a
    pseudo-member that is not terminal, so a new status never crashes the poller.
    """

    STARTING = "starting"
    PROCESSING = "processing"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"
    ABORTED = "aborted"

    @classmethod
    def _missing_(cls, value: object) -> Status | None:
        if not isinstance(value, str):
            return None
        # Same trick enum.Flag uses for unnamed values: a member made on demand.
        member = str.__new__(cls, value)
        member._name_ = value.upper()
        member._value_ = value
        return member

    @property
    def terminal(self) -> bool:
        """True for `succeeded`, `failed`, `canceled` and `aborted`."""
        return self in _TERMINAL

    @property
    def known(self) -> bool:
        """False for a status string the API sent that this client does not know."""
        return self._name_ in _KNOWN_NAMES


_TERMINAL = frozenset(
    {Status.SUCCEEDED, Status.FAILED, Status.CANCELED, Status.ABORTED}
)
# Read on every reply: `Status.__members__` builds a new mapping each time.
_KNOWN_NAMES = frozenset(Status.__members__)


@attrs.frozen
class Metrics:
    """What the server measured. Every field may be absent."""

    predict_time: float | None = None
    total_time: float | None = None
    image_count: int | None = None


@attrs.frozen
class Prediction:
    """One prediction as the API last described it.

    `output` is kept as sent (a URL string, a list of URLs, or None); use
    `output_urls` for a uniform tuple. `urls` points at api.replicate.com and is
    informational only: this client never calls it.
    """

    id: str
    status: Status
    model: str = ""
    version: str | None = None
    input: Mapping[str, Any] = attrs.field(factory=dict)
    output: Any = None
    error: str | None = None
    logs: str | None = None
    metrics: Metrics | None = None
    created_at: datetime | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    urls: Mapping[str, str] = attrs.field(factory=dict)
    data_removed: bool = False
    source: str | None = None

    @property
    def done(self) -> bool:
        """True once the status is terminal."""
        return self.status.terminal

    @property
    def output_urls(self) -> tuple[str, ...]:
        """The output's URLs as a tuple: from a string, a list, or a dict's values.

        Only `http(s)` and `data:` URLs count: a language model's text output, or a
        stray token, is not a file to download.
        """
        output = self.output
        if isinstance(output, str):
            return (output,) if _is_url(output) else ()
        if isinstance(output, Mapping):
            output = list(output.values())
        if isinstance(output, list | tuple):
            return tuple(item for item in output if _is_url(item))
        return ()

    def _repr_html_(self) -> str:
        """A notebook shows the images, the status, the prompt, the id and the error."""
        return cards.render(self)


def _is_url(value: object) -> bool:
    # A scheme is case-insensitive (RFC 3986); only its first 8 characters matter.
    return isinstance(value, str) and value[:8].lower().startswith(_URL_PREFIXES)


_URL_PREFIXES = ("https://", "http://", "data:")


@attrs.frozen
class BatchItem:
    """The outcome of one input of a batch: a prediction or an error, never both.

    `index` is the input's position. `prediction` is the succeeded prediction, or,
    for an item that failed after its create answered, the last state known (so
    its id is never lost); None when no prediction was created, or when the create
    is ambiguous (`AmbiguousSubmitError`). `resumed` is True for an item whose
    outcome came from the journal of an earlier run (no request was sent for it).
    `missing_outputs` is how many fewer output files a succeeded prediction
    returned than its input asked for (`num_outputs`; the safety filter drops
    images), 0 when it returned them all. `model` is the `"owner/name"` the
    input ran on (in a batch of typed inputs, each names its own); empty only
    for an input that named no model it could run on.
    """

    index: int
    input: Any
    prediction: Prediction | None = None
    error: BaseException | None = None
    resumed: bool = False
    missing_outputs: int = 0
    model: str = ""

    @property
    def ok(self) -> bool:
        """True when the item succeeded."""
        return self.error is None and self.prediction is not None

    def _repr_html_(self) -> str:
        """A notebook shows the item's images, status, prompt, id and error."""
        return cards.render(self)


class CardSlot:
    """The renderer behind `_repr_html_`, installed once by `_html.py`.

    The renderer reads these values and the errors (which name `Prediction`), so
    this module cannot import it without a cycle: it declares the slot, and
    `_html` fills it as it is imported. The package's `__init__` imports `_html`,
    so the slot is filled before any value can be shown.
    """

    def __init__(self) -> None:
        self._render: Callable[[Prediction | BatchItem], str] | None = None

    def install(self, render: Callable[[Prediction | BatchItem], str]) -> None:
        """Fill the slot; only once (a second renderer would be a wiring bug)."""
        if self._render is not None:
            raise RuntimeError("the HTML card renderer is already installed")
        self._render = render

    def render(self, value: Prediction | BatchItem) -> str:
        """The card of `value`, as HTML."""
        if self._render is None:
            raise RuntimeError("the HTML card renderer is not installed")
        return self._render(value)


#: The one slot both `_repr_html_` render through.
cards = CardSlot()
