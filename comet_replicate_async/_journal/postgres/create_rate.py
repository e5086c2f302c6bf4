"""The shared journal's create budget in PostgreSQL: one token bucket row.

The create pacing of all workers is one token bucket row, refilled from the
server's clock, so the workers' clocks do not matter. Workers that use one API
key share one budget, by name.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import anyio

from comet_replicate_async._journal.shared import CreateTurn

__all__ = ["SharedCreateBudget"]


class _Executes(Protocol):
    """What the budget needs of the journal it is mixed into."""

    budget: str

    async def _execute(
        self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()
    ) -> list[tuple[Any, ...]]: ...

    async def take_create_token(self) -> CreateTurn: ...


class SharedCreateBudget:
    """The create budget of `PostgresJournal`, named by its `budget`."""

    async def set_create_rate(
        self: _Executes, per_second: float, *, burst: float = 1.0
    ) -> None:
        if per_second <= 0 or burst < 1:
            raise ValueError("the create rate must be positive and the burst >= 1")
        await self._execute(
            "insert into comet_replicate.create_budgets"
            " values (%s, %s, %s, %s, clock_timestamp())"
            " on conflict (name) do update set per_second = excluded.per_second,"
            " burst = excluded.burst",
            (self.budget, per_second, burst, burst),
        )

    async def take_create_token(self: _Executes) -> CreateTurn:
        """Reserve the next create slot: how long to wait for it, and when it is.

        The bucket may go negative: each taker is queued behind the earlier
        ones, so N workers together never exceed the rate. A reserved slot that
        goes unused is lost, which errs on the side of fewer creates.
        """
        rows = await self._execute(
            """
            update comet_replicate.create_budgets b set
                tokens = least(b.burst, b.tokens + b.per_second
                    * extract(epoch from now.t - b.refilled_at)::float8) - 1,
                refilled_at = now.t
            from (select clock_timestamp() as t) now
            where b.name = %s
            returning b.tokens, b.per_second, extract(epoch from now.t)::float8
            """,
            (self.budget,),
        )
        if not rows:
            return CreateTurn(0.0, None)  # no budget set: creates are not paced
        tokens, per_second, now = rows[0]
        wait = max(0.0, -float(tokens) / float(per_second))
        return CreateTurn(wait, float(now) + wait)

    async def wait_create_turn(self: _Executes) -> None:
        await anyio.sleep((await self.take_create_token()).wait)
