"""What each input of a command-line batch cost, kept as its journal records it.

Mixed in before a journal class (the folder's SQLite one, or the shared
PostgreSQL one), so the manifest and the summary read the costs the session
gave the journal without reading the journal back.
"""

from __future__ import annotations

from typing import Any

__all__ = ["CostsKept"]


class CostsKept:
    """Keeps `costs`: what each input's create cost, by index."""

    costs: dict[int, float]

    # The journal class after this one in the MRO does the writing; mypy cannot
    # see it from a mixin, hence the ignores.
    async def pending(
        self,
        index: int,
        digest: str | None = None,
        *,
        cost: float | None = None,
        model: str | None = None,
    ) -> None:
        await super().pending(index, digest, cost=cost, model=model)  # type: ignore[misc]
        if cost is not None:
            self.costs[index] = cost

    async def unsent(self, index: int) -> None:
        await super().unsent(index)  # type: ignore[misc]
        self.costs.pop(index, None)

    async def finish(self, index: int, state: str, **details: Any) -> None:
        await super().finish(index, state, **details)  # type: ignore[misc]
        if (cost := details.get("cost")) is not None:
            self.costs[index] = cost
