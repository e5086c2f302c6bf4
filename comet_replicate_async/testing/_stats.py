"""What the fake server saw: every request and every prediction it created."""

from __future__ import annotations

import json
from collections import Counter, deque
from collections.abc import Mapping
from typing import Any, Final

import attrs

from ._predictions import PredictionRecord
from ._time import MONOTONIC, ServerClock

__all__ = ["FakeStats", "RequestRecord", "canonical_input"]

#: Log entries kept; older ones fall off. A benchmark of 10,000 predictions
#: makes a few tens of thousands of requests, all of which fit.
MAX_LOGGED_REQUESTS: Final = 100_000


@attrs.frozen
class RequestRecord:
    """One request as the server saw it.

    Attributes:
        route: `"create"`, `"query"`, `"file"`, `"catalogue"`, `"control"` or
            `"other"`.
        method: HTTP method.
        path: Request path (no query string).
        status: Reply status; 0 when the connection was reset or abandoned.
        headers: Request headers (the last value wins for repeated names).
        monotonic: The fake's clock when the request arrived.
        wall: `time.time()` when the request arrived.
        prediction_id: The prediction created, queried or downloaded, if any.
    """

    route: str
    method: str
    path: str
    status: int
    headers: Mapping[str, str] = attrs.field(hash=False)
    monotonic: float
    wall: float
    prediction_id: str | None = None


def canonical_input(model: str, input: Mapping[str, Any]) -> str:
    """The key under which identical creates are counted as duplicates."""
    return json.dumps(
        {"input": input, "model": model}, sort_keys=True, separators=(",", ":")
    )


@attrs.define
class FakeStats:
    """Counters and records kept by `FakeCometAPI`.

    Attributes:
        requests_log: Every request, oldest first (bounded).
        requests: Requests counted by `(route, status)`.
        creates_by_input: Predictions actually created (ghosts included), keyed
            by `canonical_input` of model and input.
        predictions: Every prediction created, by id.
    """

    requests_log: deque[RequestRecord] = attrs.field(
        factory=lambda: deque(maxlen=MAX_LOGGED_REQUESTS)
    )
    requests: Counter[tuple[str, int]] = attrs.field(factory=Counter)
    creates_by_input: Counter[str] = attrs.field(factory=Counter)
    predictions: dict[str, PredictionRecord] = attrs.field(factory=dict)
    #: The fake's clock, which the request log and `in_flight_now` read.
    clock: ServerClock = attrs.field(
        default=MONOTONIC, kw_only=True, repr=False, eq=False
    )

    def record_request(self, record: RequestRecord) -> None:
        """Log one finished request."""
        self.requests_log.append(record)
        self.requests[record.route, record.status] += 1

    def record_prediction(self, prediction: PredictionRecord) -> None:
        """Count one created prediction."""
        self.predictions[prediction.id] = prediction
        self.creates_by_input[canonical_input(prediction.model, prediction.input)] += 1

    def clear(self) -> None:
        """Forget everything."""
        self.requests_log.clear()
        self.requests.clear()
        self.creates_by_input.clear()
        self.predictions.clear()

    def count(self, route: str, status: int | None = None) -> int:
        """Requests to *route*, optionally only those answered with *status*."""
        if status is not None:
            return self.requests[route, status]
        return sum(n for (name, _), n in self.requests.items() if name == route)

    @property
    def created(self) -> int:
        """Predictions created in total."""
        return len(self.predictions)

    @property
    def duplicates(self) -> int:
        """Predictions created with a model and input seen before."""
        return sum(n - 1 for n in self.creates_by_input.values() if n > 1)

    @property
    def in_flight_now(self) -> int:
        """Predictions not yet terminal."""
        now = self.clock.now()
        return sum(now < p.terminal_monotonic for p in self.predictions.values())

    @property
    def peak_in_flight(self) -> int:
        """Most predictions non-terminal at one moment, over `[created, terminal)`."""
        # Sweep the interval ends in time order; at equal times the -1 of an
        # ending interval sorts before the +1 of a starting one (half-open).
        events = sorted(
            event
            for p in self.predictions.values()
            for event in ((p.created_monotonic, 1), (p.terminal_monotonic, -1))
        )
        peak = running = 0
        for _, step in events:
            running += step
            peak = max(peak, running)
        return peak

    def to_json(self, *, include_log: bool = False) -> dict[str, Any]:
        """A JSON-able summary (what `GET /_fake/stats` returns).

        Args:
            include_log: Also list every logged request (large).
        """
        requests: dict[str, dict[str, int]] = {}
        for (route, status), n in sorted(self.requests.items()):
            requests.setdefault(route, {})[str(status)] = n
        summary: dict[str, Any] = {
            "created": self.created,
            "duplicates": self.duplicates,
            "peak_in_flight": self.peak_in_flight,
            "in_flight_now": self.in_flight_now,
            "requests": requests,
            "duplicate_inputs": {
                k: n for k, n in self.creates_by_input.items() if n > 1
            },
            "predictions": {
                p.id: {
                    "model": p.model,
                    "input": p.input,
                    "final_status": p.final_status,
                    "created_wall": p.created_wall,
                    "terminal_wall": p.terminal_wall,
                }
                for p in self.predictions.values()
            },
        }
        if include_log:
            summary["requests_log"] = [attrs.asdict(r) for r in self.requests_log]
        return summary
