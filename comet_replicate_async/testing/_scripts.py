"""The fake's scripted faults: per route, and per prediction for its polls.

Scripts come before random faults and throttling. A route script answers the
next requests to that route, one fault each; a poll script answers the next
polls of one prediction, chosen by id or by a test on each new prediction, so a
test can give one prediction odd replies and watch its siblings finish. An
outage answers every create with a gateway's 502 page for a while.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from typing import Literal

import attrs

from ._faults import Fault
from ._predictions import PredictionRecord
from ._replies import BAD_GATEWAY_PAGE
from ._time import MONOTONIC, ServerClock

__all__ = ["FaultScripts", "PollTarget", "ScriptedRoute"]

ScriptedRoute = Literal["create", "query", "file", "catalogue"]
#: Which predictions a poll script is for: an id, or a test on each new record.
PollTarget = str | Callable[[PredictionRecord], bool]
_PollRule = tuple[Callable[[PredictionRecord], bool], tuple[Fault, ...], bool]
#: What nginx answers while the upstream is gone: created nothing.
OUTAGE_FAULT = Fault("status", 502, BAD_GATEWAY_PAGE, content_type="text/html")


@attrs.define
class FaultScripts:
    """Faults queued for the next requests of each route and polls of predictions."""

    _routes: dict[ScriptedRoute, deque[Fault]] = attrs.field(
        factory=lambda: {
            route: deque() for route in ("create", "query", "file", "catalogue")
        }
    )
    # Poll scripts by prediction id (with whether the last one repeats), and
    # the ones waiting for a prediction that matches.
    _polls: dict[str, tuple[deque[Fault], bool]] = attrs.field(factory=dict)
    _poll_rules: list[_PollRule] = attrs.field(factory=list)
    clock: ServerClock = attrs.field(default=MONOTONIC, kw_only=True)
    # The create outage: its end on the fake's clock, or its length while it
    # waits for the first create to start it.
    _outage_until: float = -math.inf
    _outage_pending: float | None = None

    def outage(self, seconds: float, *, from_first_create: bool) -> None:
        if from_first_create:
            self._outage_pending = seconds
        else:
            self._outage_until = self.clock.now() + seconds

    def script(self, route: ScriptedRoute, faults: tuple[Fault, ...]) -> None:
        self._routes[route].extend(faults)

    def script_polls(
        self, which: PollTarget, faults: tuple[Fault, ...], repeat_last: bool
    ) -> None:
        if isinstance(which, str):
            self._polls[which] = (deque(faults), repeat_last)
        else:
            self._poll_rules.append((which, faults, repeat_last))

    def created(self, prediction: PredictionRecord) -> None:
        """A new prediction: give it the poll scripts whose test it matches."""
        for matches, faults, repeat_last in self._poll_rules:
            if matches(prediction):
                self._polls[prediction.id] = (deque(faults), repeat_last)

    def next(self, route: ScriptedRoute) -> Fault | None:
        """The fault scripted for this request to *route*, if any."""
        if route == "create":
            if self._outage_pending is not None:
                self._outage_until = self.clock.now() + self._outage_pending
                self._outage_pending = None
            if self.clock.now() < self._outage_until:
                return OUTAGE_FAULT
        queue = self._routes[route]
        fault = queue.popleft() if queue else None
        # Fault.ok() means "as if nothing were scripted": random faults and
        # throttling still apply.
        return None if fault is None or fault.kind == "ok" else fault

    def next_poll(self, prediction_id: str) -> Fault | None:
        """The fault scripted for this poll of *prediction_id*, if any."""
        queue, repeat_last = self._polls.get(prediction_id, (None, False))
        if not queue:
            return None
        fault = queue[0] if repeat_last and len(queue) == 1 else queue.popleft()
        return None if fault.kind == "ok" else fault

    def clear(self) -> None:
        for queue in self._routes.values():
            queue.clear()
        self._polls.clear()
        self._poll_rules.clear()
        self._outage_until, self._outage_pending = -math.inf, None
