"""What a command-line batch reports: its options, each item's outcome, the
live counts and the summary of how it ended.

An `Outcome` is one line of `results.jsonl`; `BulkSummary.exit_code` is the
command's exit code.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

import attrs

from comet_replicate_async._exceptions import CometReplicateError
from comet_replicate_async._money.ledger import Charge
from comet_replicate_async._money.prices import Price
from comet_replicate_async._values import Status

from ._costs import CostTotals, charge_of
from ._prompts import PromptItem

__all__ = [
    "BulkOptions",
    "BulkSummary",
    "Outcome",
    "Progress",
    "ProgressCallback",
    "ReportedState",
]

#: Where an item stands: "created" is still running (a rerun polls it).
ReportedState = Literal["succeeded", "failed", "ambiguous", "created"]


@attrs.frozen
class BulkOptions:
    """How to run a batch (its concurrency and retries are the session's)."""

    #: The batch's model, for the lines that name none (with several, their
    #: names joined: a title).
    model: str
    out_dir: Path
    gallery_every: float = 2.0
    #: A `postgresql://` journal shared with other workers, instead of the folder's.
    journal_url: str | None = None
    #: The model's price the session was given, and the cap: for the summary.
    price: Price | None = None
    max_cost: float | None = None
    #: Each model's price, when the batch runs several.
    prices: Mapping[str, Price | None] = attrs.field(factory=dict)


@attrs.define
class Outcome:
    """Where one item stands; one line of results.jsonl."""

    item: PromptItem
    state: ReportedState | None = None  # None: not sent in any run
    prediction_id: str | None = None
    error: str | None = None
    output_urls: tuple[str, ...] = ()
    files: tuple[str, ...] = ()
    error_type: str | None = None
    #: Why an item was not started: "budget" (the cost cap) or "batch stopped".
    not_started_because: str | None = None
    status: Status | None = None  # its prediction's last known status
    cost: float | None = 0.0  # None: charged, at an unknown price
    missing_outputs: int = 0  # fewer outputs than `num_outputs` asked for
    model: str = ""  # the "owner/name" it runs on

    def to_json(self) -> dict[str, Any]:
        """The manifest line."""
        return {
            "index": self.item.index,
            "id": self.item.key,
            "line": self.item.line,
            "model": self.model,
            "input": dict(self.item.input),
            "outcome": self.state or "not started",
            "prediction_id": self.prediction_id,
            "output_urls": list(self.output_urls),
            "files": list(self.files),
            "error": self.error,
            "error_type": self.error_type,
            "not_started_because": self.not_started_because,
            "cost": self.cost,
            "charge": str(self.charge),
            "missing_outputs": self.missing_outputs,
        }

    @property
    def charge(self) -> Charge:
        """How it counts against the money: billed, possibly_billed or free."""
        return charge_of(self.state, self.status)


@attrs.define
class Progress:
    """Live counts for the progress display."""

    total: int
    queued: int = 0
    running: int = 0
    succeeded: int = 0
    failed: int = 0
    ambiguous: int = 0
    resumed: int = 0


@attrs.frozen
class BulkSummary:
    """How the batch ended."""

    progress: Progress
    interrupted: bool
    results_path: Path
    gallery_path: Path
    journal_path: Path
    requests: int
    #: The fatal create error that stopped the batch creating, if one came.
    stopped_by: CometReplicateError | None = None
    #: Inputs never sent because of it.
    not_sent: int = 0
    #: The shared journal, when this run was one worker of a shared batch.
    journal_url: str | None = None
    #: Items this run handled (a shared batch's worker handles its part).
    handled: int = 0
    #: What the batch's items cost over all its runs, and at what price.
    costs: CostTotals = attrs.field(factory=CostTotals)
    price: Price | None = None
    max_cost: float | None = None
    #: With several models: each one's price, and what its items cost.
    prices: Mapping[str, Price | None] = attrs.field(factory=dict)
    model_costs: Mapping[str, CostTotals] = attrs.field(factory=dict)
    #: Inputs the cost cap left unsent (a rerun with a larger cap sends them).
    over_budget: int = 0
    #: Succeeded items with fewer outputs than they asked for (safety filter).
    short_outputs: int = 0
    #: Succeeded items whose files could not be saved (e.g. expired outputs).
    downloads_failed: int = 0
    #: Predictions created but not finished when the run ended (a rerun polls them).
    still_running: int = 0

    @property
    def exit_code(self) -> int:
        """0 all succeeded, 1 some did not, 3 a fatal error stopped it, 130 interrupted."""
        if self.interrupted:
            return 130
        if self.stopped_by is not None:
            return 3
        mine = self.progress.total if self.journal_url is None else self.handled
        return 0 if self.progress.succeeded == mine else 1


ProgressCallback = Callable[[Progress], None]
