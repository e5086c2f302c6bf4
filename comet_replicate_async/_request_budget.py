"""The session's request budget: a cap on its requests in flight, creates and
queries together, learned from the server's refusals.

Gateways built on new-api count every request of a key in flight, queries
included, and refuse one more with a 429 that names no wait. Such a refusal
teaches the cap: the requests of this session sent before the refused one and
still unanswered (the gateway held those when it refused). From then on a
request waits here for a free place instead of being sent into a refusal; the
cap grows back by one per `_PATIENCE` caps' worth of requests answered while
others wait, to find a limit that was underestimated or has been raised.

Queries go first: a poll may find a prediction finished (its result is due to a
caller, and its window slot frees the next create), while a create only adds
work. And while a cap is known, creates leave one place free for the polls, so
a wave of creates never holds back the results of predictions already done.

The decisions are pure bookkeeping: a request takes a ticket when it is sent
and hands it back when answered; only `wait` suspends.
"""

from __future__ import annotations

import asyncio
import collections
import math

from ._clock import SYSTEM_CLOCK, Clock

__all__ = ["RequestBudget"]

# Requests answered while others wait, in caps, before the cap grows by one:
# slowly, as polls answered at once come by the hundred.
_PATIENCE = 8
# A refusal that teaches nothing new (this session already kept to the cap, so
# another client of the key holds places) cuts the cap by one at most this often.
_COOLDOWN = 1.0


class RequestBudget:
    """Requests in flight for one session, under the cap the server taught."""

    def __init__(self, clock: Clock = SYSTEM_CLOCK) -> None:
        self._clock = clock
        # Read on every request: plain attributes, no properties.
        self.cap: float = math.inf
        self._create_cap: float = math.inf
        self.in_flight = 0
        self.waiting = 0
        # Tickets of the requests in flight, in the order they were sent.
        self._sent: dict[int, None] = {}
        self._last_ticket = 0
        self._queries: collections.deque[asyncio.Future[None]] = collections.deque()
        self._creates: collections.deque[asyncio.Future[None]] = collections.deque()
        self._growth = 0.0
        self._last_cut = -math.inf

    @property
    def in_flight_cap(self) -> int | None:
        """Most requests to have in flight at once; None while nothing limits them."""
        return None if self.cap == math.inf else int(self.cap)

    def take(self, *, query: bool) -> int:
        """A ticket to send now, if no one waits and a place is free; else 0.

        The one check on the path of every request while nothing is learned.
        """
        if self.in_flight >= (self.cap if query else self._create_cap) or self.waiting:
            return 0
        self.in_flight += 1
        return self._ticket()

    async def wait(self, *, query: bool) -> int:
        """Wait for a place (queries first); return the request's ticket."""
        if self._free(query) and not (self._queries if query else self.waiting):
            self.in_flight += 1
            return self._ticket()
        waiter = asyncio.get_running_loop().create_future()
        (self._queries if query else self._creates).append(waiter)
        self.waiting += 1
        try:
            await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self.in_flight -= 1  # handed a place just as it was cancelled
                self._wake()
            else:
                self._forget(waiter, query)
            raise
        return self._ticket()

    def done(self, ticket: int) -> None:
        """The request with `ticket` was answered (or failed): its place is free."""
        del self._sent[ticket]
        self.in_flight -= 1
        if self.waiting:
            # Only a cap that holds requests back is worth raising: otherwise
            # it would climb far above what is sent, untested.
            if self.cap != math.inf:
                self._growth += 1.0 / (self.cap * _PATIENCE)
                if self._growth >= 1.0:
                    self._growth = 0.0
                    self._set_cap(self.cap + 1)
            self._wake()

    def on_crowded(self, ticket: int) -> None:
        """The request with `ticket` (still in flight) was refused, no wait named."""
        before = 0
        for sent in self._sent:  # in the order sent: stop at this one
            if sent >= ticket:
                break
            before += 1
        now = self._clock.now()
        if before < self.cap:
            self._set_cap(before)
        elif now - self._last_cut >= _COOLDOWN:
            self._set_cap(self.cap - 1)
        else:
            return
        self._last_cut = now
        self._growth = 0.0

    def _ticket(self) -> int:
        self._last_ticket += 1
        self._sent[self._last_ticket] = None
        return self._last_ticket

    def _set_cap(self, cap: float) -> None:
        self.cap = max(1.0, cap)
        # A create leaves one place to the polls (unless there is only one).
        self._create_cap = max(1.0, self.cap - 1)

    def _free(self, query: bool) -> bool:
        return self.in_flight < (self.cap if query else self._create_cap)

    def _wake(self) -> None:
        for queue, query in ((self._queries, True), (self._creates, False)):
            while queue and self._free(query):
                waiter = queue.popleft()
                self.waiting -= 1
                if not waiter.done():
                    self.in_flight += 1
                    waiter.set_result(None)

    def _forget(self, waiter: asyncio.Future[None], query: bool) -> None:
        queue = self._queries if query else self._creates
        if waiter in queue:  # not when a wake already passed over it as cancelled
            queue.remove(waiter)
            self.waiting -= 1
