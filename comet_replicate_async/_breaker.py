"""The circuit breaker on creates: a gateway outage costs a few creates, not a batch.

A create that fails after it was sent (a 5xx, an HTML page, a reset) may have
created a prediction, so it is never sent again (the money rule) and its input
ends `AmbiguousSubmitError`. Without a breaker, a batch under an outage turns
every input into one of those within a second. With it:

- after an ambiguous failure, one create at a time goes until one is accepted
  (a session's first creates are already let out slowly by the request
  budget's slow start: one, then two, four, ... per reply);
- `failures` ambiguous failures in a row, with none accepted between, open the
  breaker: no create is sent, the others wait (up to their deadlines);
- after `backoff` seconds (doubling per failed probe, up to `max_backoff`, with
  a jitter that only lengthens it) ONE create probes; its acceptance closes the
  breaker and every waiting create goes.

The decisions are a pure state machine on the injectable clock (`admit`,
`accepted`, `failed`, `released`); `wait_admitted` is the one await, for the
callers that must wait.
"""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Callable
from typing import Literal

import attrs

from ._clock import SYSTEM_CLOCK, Clock
from ._exceptions import CometReplicateError, PredictionTimeout

__all__ = ["BreakerState", "CreateBreaker", "Ticket"]

#: "closed": creates go; "open": none goes until the probe's time;
#: "probing": one create is testing the gateway.
BreakerState = Literal["closed", "open", "probing"]
#: Told of each opening (with the error and the wait to the probe) and closing.
OnChange = Callable[[BreakerState, CometReplicateError | None, float | None], None]

# A probe waits its backoff times 1 to this: later, never sooner, so that a
# probe never lands inside an outage it was meant to outlast.
_JITTER = 1.25


@attrs.frozen
class Ticket:
    """One create let through: `solo` when it is the only one allowed out.

    `generation` counts the openings before it was issued: the failure of a
    create sent before the breaker opened is not a new one.
    """

    solo: bool
    generation: int


class CreateBreaker:
    """Stops creates while the gateway keeps failing them; see the module."""

    def __init__(
        self,
        *,
        failures: int = 3,
        backoff: float = 5.0,
        max_backoff: float = 60.0,
        clock: Clock = SYSTEM_CLOCK,
        rng: random.Random | None = None,
        on_change: OnChange | None = None,
    ) -> None:
        self._threshold = failures
        self._backoff = backoff
        self._max_backoff = max(max_backoff, backoff)
        self._clock = clock
        self._rng = rng or random.Random()
        self._on_change = on_change
        self.state: BreakerState = "closed"
        #: Times the breaker opened (a failed probe reopening it is not counted).
        self.openings = 0
        self._failures = 0
        # One at a time until a create is accepted, after a failure. (Not for
        # the session's first: the request budget's slow start has it go alone,
        # but for a second at most, so a slow gateway does not hold the rest.)
        self._solo = False
        self._solo_out = False
        self._generation = 0
        self._free = Ticket(solo=False, generation=0)
        self._probe_at = -math.inf
        self._next_backoff = backoff
        self._waiters: set[asyncio.Future[None]] = set()
        self._last_error: CometReplicateError | None = None

    @property
    def probe_in(self) -> float | None:
        """Seconds to the next probe while open; None otherwise."""
        if self.state != "open":
            return None
        return max(0.0, self._probe_at - self._clock.now())

    def admit(self) -> Ticket | float:
        """A ticket to send a create now, or the time to ask again (inf: on news)."""
        if self.state == "closed" and not self._solo:
            return self._free  # the common case: one attribute test
        if self.state == "open":
            if self._clock.now() < self._probe_at:
                return self._probe_at
            self.state = "probing"
        if self._solo_out:
            return math.inf
        self._solo_out = True
        return Ticket(solo=True, generation=self._generation)

    def accepted(self, ticket: Ticket) -> None:
        """A create was accepted: the gateway works."""
        was = self.state
        self._end(ticket)
        self._failures = 0
        self._solo = False
        self.state = "closed"
        self._next_backoff = self._backoff
        if was != "closed" and self._on_change is not None:
            self._on_change("closed", None, None)
        self._wake()

    def failed(self, ticket: Ticket, error: CometReplicateError) -> None:
        """A create failed after it was sent (it may have created a prediction)."""
        self._end(ticket)
        self._last_error = error
        if ticket.generation != self._generation:
            self._wake()  # sent before the breaker opened: already counted
            return
        self._failures += 1
        self._solo = True
        if self.state == "probing" or self._failures >= self._threshold:
            self._open(error)
        self._wake()

    def released(self, ticket: Ticket) -> None:
        """A create ended without news of the gateway (a 429, a 4xx, never sent)."""
        self._end(ticket)
        if ticket.solo:
            self._wake_after_its_caller()

    async def wait_admitted(self, deadline: float = math.inf) -> Ticket:
        """Wait for a ticket, but not past `deadline` (then `PredictionTimeout`)."""
        while True:
            verdict = self.admit()
            if isinstance(verdict, Ticket):
                return verdict
            if self._clock.now() >= deadline:
                raise self._held_back()
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.add(waiter)
            until = min(verdict, deadline)
            timer = None
            if until < math.inf:
                timer = self._clock.call_at(until, _resolve, waiter)
            try:
                await waiter
            finally:
                self._waiters.discard(waiter)
                if timer is not None:
                    timer.cancel()

    def fail_waiters(self, error: Callable[[], BaseException]) -> None:
        """Raise a new `error()` in every create waiting here (the session is
        closing: they will not be sent)."""
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_exception(error())

    def _end(self, ticket: Ticket) -> None:
        if ticket.solo and ticket.generation == self._generation:
            self._solo_out = False

    def _open(self, error: CometReplicateError) -> None:
        was = self.state
        delay = self._next_backoff * self._rng.uniform(1.0, _JITTER)
        self._next_backoff = min(self._next_backoff * 2, self._max_backoff)
        self._probe_at = self._clock.now() + delay
        self.state = "open"
        self._generation += 1
        self._free = Ticket(solo=False, generation=self._generation)
        self._solo_out = False
        if was == "closed":
            self.openings += 1
            if self._on_change is not None:
                self._on_change("open", error, delay)

    def _wake_after_its_caller(self) -> None:
        # The next create must not go before the caller of this one has seen its
        # error: a 401 or a model not served stops a batch, and the creates
        # waiting here check that once let through. The caller's wake-up takes
        # two turns of the loop (its answer is shielded), so these take three.
        if not self._waiters:
            return
        loop = asyncio.get_running_loop()
        loop.call_soon(loop.call_soon, loop.call_soon, self._wake)

    def _wake(self) -> None:
        for waiter in self._waiters:
            _resolve(waiter)

    def _held_back(self) -> PredictionTimeout:
        cause = f" (last: {self._last_error})" if self._last_error else ""
        return PredictionTimeout(
            "the deadline passed while creates were stopped: the gateway kept "
            f"failing them{cause}; nothing was created for this input",
            None,
        )


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)
