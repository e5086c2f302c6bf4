"""The shared journal's create rate in PostgreSQL: one token bucket row.

The create pacing of all workers is one token bucket row, refilled from the
server's clock, so the workers' clocks do not matter. Workers that use one API
key share one rate, by name. A rate, not money: spending is `_money/`'s.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import anyio

from comet_replicate_async._journal.shared import CreateTurn

__all__ = ["Execute", "SharedCreateRate"]

#: Runs one statement in a transaction of its own and returns its rows.
Execute = Callable[[str, Sequence[Any]], Awaitable[list[tuple[Any, ...]]]]


class SharedCreateRate:
    """The create rate named `name`, through the journal's `execute`."""

    def __init__(self, execute: Execute, name: str) -> None:
        self._execute = execute
        self.name = name

    async def set(self, per_second: float, *, burst: float = 1.0) -> None:
        if per_second <= 0 or burst < 1:
            raise ValueError("the create rate must be positive and the burst >= 1")
        await self._execute(
            "insert into comet_replicate.create_rates"
            " values (%s, %s, %s, %s, clock_timestamp())"
            " on conflict (name) do update set per_second = excluded.per_second,"
            " burst = excluded.burst",
            (self.name, per_second, burst, burst),
        )

    async def take_token(self) -> CreateTurn:
        """Reserve the next create slot: how long to wait for it, and when it is.

        The bucket may go negative: each taker is queued behind the earlier
        ones, so N workers together never exceed the rate. A reserved slot that
        goes unused is lost, which errs on the side of fewer creates.
        """
        rows = await self._execute(
            """
            update comet_replicate.create_rates b set
                tokens = least(b.burst, b.tokens + b.per_second
                    * extract(epoch from now.t - b.refilled_at)::float8) - 1,
                refilled_at = now.t
            from (select clock_timestamp() as t) now
            where b.name = %s
            returning b.tokens, b.per_second, extract(epoch from now.t)::float8
            """,
            (self.name,),
        )
        if not rows:
            return CreateTurn(0.0, None)  # no rate set: creates are not paced
        tokens, per_second, now = rows[0]
        wait = max(0.0, -float(tokens) / float(per_second))
        return CreateTurn(wait, float(now) + wait)

    async def wait_turn(self) -> None:
        await anyio.sleep((await self.take_token()).wait)
