"""The parts a `Session` is made of, built from its options and wired together.

`Session` holds them and delegates to them; this module only connects them: the
transport under the call layer, the call layer under the poller, the downloads
and the creates, one window and one set of counters shared by all of them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

import attrs

from ._batch.context import BatchContext
from ._breaker import BreakerState, CreateBreaker
from ._calls import Calls
from ._downloads import Downloads
from ._exceptions import CometReplicateError
from ._handoff import CreateCalls
from ._lifecycle import Lifecycle
from ._limits import ConcurrencyWindow
from ._money.spending import Spending
from ._polling.poller import Poller
from ._polling.registry import Registry
from ._polling.schedule import PollPolicy
from ._retry import RetryPolicy
from ._runner import Runner
from ._stats import Event, EventHandler, Events, SessionStats, StatsCounter
from ._telemetry.base import NO_TELEMETRY, Telemetry
from ._transports.base import Transport

__all__ = ["SessionParts"]

logger = logging.getLogger("comet_replicate_async")


@attrs.frozen
class SessionParts:
    """One session's parts; `build` wires them."""

    transport: Transport
    counters: StatsCounter
    window: ConcurrencyWindow
    calls: Calls
    downloads: Downloads
    spending: Spending
    registry: Registry
    poller: Poller
    life: Lifecycle
    creates: CreateCalls
    runner: Runner
    telemetry: Telemetry
    batch: BatchContext

    @classmethod
    def build(
        cls,
        transport: Transport,
        *,
        base_url: str,
        retry: RetryPolicy,
        poll: PollPolicy,
        max_concurrency: int,
        adaptive_concurrency: bool,
        creates_per_minute: float | None,
        prefer_wait: int | None,
        on_event: EventHandler | None,
        download_concurrency: int,
        max_cost: float | None,
        prices: Mapping[str, float] | None,
        server_deadline: bool,
        deadline: Callable[[float | None], float],
        telemetry: Telemetry = NO_TELEMETRY,
    ) -> SessionParts:
        # Recording telemetry observes from outside: its transport, pacer and
        # listener stand in for the plain ones (which it returns when off).
        transport = telemetry.transport(transport)
        window = ConcurrencyWindow(max_concurrency, adaptive=adaptive_concurrency)
        spending = Spending(transport, base_url=base_url, cap=max_cost, prices=prices)
        events = Events(telemetry.on_event(on_event), finished=spending.ended)
        counters = StatsCounter()
        calls = Calls(
            transport,
            retry=retry,
            poll=poll,
            window=window,
            pacer=telemetry.pacer(creates_per_minute),
            counters=counters,
            emit=events.emit,
        )
        registry = Registry()
        poller = Poller(
            registry,
            calls.query_once,
            policy=poll,
            retry=retry,
            on_update=events.on_poll_update,
        )
        breaker = CreateBreaker(
            failures=retry.breaker_failures,
            backoff=retry.breaker_backoff,
            max_backoff=retry.max_breaker_backoff,
            on_change=_breaker_news(events),
        )
        life = Lifecycle(transport, registry, window, spending, held_creates=breaker)
        creates = CreateCalls(
            calls,
            life,
            window,
            spending,
            events.emit,
            prefer_wait=prefer_wait,
            server_deadline=server_deadline,
            breaker=breaker,
        )
        telemetry.observe(
            lambda: counters.in_flight,
            lambda: window.limit,
            lambda: calls.pacer.rate,
            lambda: spending.ledger.spent,
            lambda: counters.queries,
        )
        runner = Runner(life, creates, registry, poller, counters, telemetry)
        batch = BatchContext(
            window=window,
            counters=counters,
            registry=registry,
            poller=poller,
            spending=spending,
            pacer=calls.pacer,
            telemetry=telemetry,
            retry=retry,
            create_by=runner.create_by,
            deadline=deadline,
            start_job=life.start_job,
        )
        return cls(
            transport=transport,
            counters=counters,
            window=window,
            calls=calls,
            downloads=Downloads(calls, download_concurrency),
            spending=spending,
            registry=registry,
            poller=poller,
            life=life,
            creates=creates,
            runner=runner,
            telemetry=telemetry,
            batch=batch,
        )

    def stats(self) -> SessionStats:
        """A snapshot of the counters, the limits, the money and the breaker."""
        breaker, ledger = self.creates.breaker, self.spending.ledger
        return self.counters.snapshot(
            watched=len(self.registry),
            concurrency_limit=self.window.limit,
            create_rate=self.calls.pacer.rate,
            budget=self.calls.budget,
            spent=ledger.spent,
            reserved=ledger.reserved,
            breaker=breaker.state,
            breaker_openings=breaker.openings,
        )


def _breaker_news(
    events: Events,
) -> Callable[[BreakerState, CometReplicateError | None, float | None], None]:
    """Tell the log and `on_event` when the breaker on creates opens or closes."""

    def told(
        state: BreakerState, error: CometReplicateError | None, delay: float | None
    ) -> None:
        if state == "open":
            logger.warning(
                "creates stopped: the gateway kept failing them (last: %s); "
                "one create probes it in %.0f s, the others wait",
                error,
                delay or 0.0,
            )
            events.emit(Event("breaker_opened", error=error, delay=delay))
        else:
            logger.warning("creates resumed: a probe was accepted")
            events.emit(Event("breaker_closed"))

    return told
