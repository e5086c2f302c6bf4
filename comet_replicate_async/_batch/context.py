"""What the batch engine uses of a session, handed to it in one value.

`SessionParts` builds one `BatchContext` per session and every batch reads it:
the engine never sees the `Session`, and a test can run a batch on parts built
around a `MockTransport`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import attrs

from comet_replicate_async._exceptions import CometReplicateError
from comet_replicate_async._limits import ConcurrencyWindow, CreatePacer
from comet_replicate_async._money.ledger import Reservation
from comet_replicate_async._money.spending import Spending
from comet_replicate_async._polling.poller import Poller
from comet_replicate_async._polling.registry import Registry
from comet_replicate_async._retry import RetryPolicy
from comet_replicate_async._stats import StatsCounter
from comet_replicate_async._telemetry.base import Telemetry
from comet_replicate_async._values import Prediction

__all__ = ["BATCH_CREATES", "BatchContext", "CreateBy"]

# Creates a batch has in flight at once. Sixteen at 0.5 s each is far above the
# create rate limits seen in practice (hundreds a minute), and each waiting create
# would hold a task, a request and, past the pool, a queue place.
BATCH_CREATES = 16

#: The runner's `create_by`: model, body, deadline, on_created, stopped, reservation.
CreateBy = Callable[
    [
        str,
        dict[str, Any],
        float,
        Callable[[Prediction], Awaitable[None]] | None,
        Callable[[], CometReplicateError | None] | None,
        Reservation | None,
    ],
    Awaitable[Prediction],
]


@attrs.frozen
class BatchContext:
    """A session's parts that its batches use, and nothing else of it."""

    window: ConcurrencyWindow
    counters: StatsCounter
    registry: Registry
    poller: Poller
    spending: Spending
    pacer: CreatePacer
    telemetry: Telemetry
    retry: RetryPolicy
    #: Creates one prediction (the runner's, shared with `run` and `submit`).
    create_by: CreateBy
    #: The deadline of a prediction started now, for a timeout (None: the session's).
    deadline: Callable[[float | None], float]
    #: Runs a coroutine function in the session's task group, as a job that a
    #: normal close waits for.
    start_job: Callable[[Callable[[], Awaitable[None]]], None]
