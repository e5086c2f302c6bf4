from __future__ import annotations

import pytest

from comet_replicate_async import Prediction, Status
from comet_replicate_async._polling.registry import Registry

pytestmark = pytest.mark.anyio


def pred(id_: str) -> Prediction:
    return Prediction(id=id_, status=Status.STARTING, model="a/b")


async def test_due_entries_come_out_in_time_order() -> None:
    registry = Registry()
    registry.add(pred("late"), now=0, first_poll_at=3.0)
    registry.add(pred("early"), now=0, first_poll_at=1.0)
    registry.add(pred("middle"), now=0, first_poll_at=2.0)

    assert registry.pop_due(0.5) is None
    assert registry.next_due_at() == 1.0
    due = [registry.pop_due(10.0) for _ in range(3)]

    assert [entry.id for entry in due if entry] == ["early", "middle", "late"]
    assert registry.pop_due(10.0) is None


async def test_adding_the_same_id_twice_gives_one_entry() -> None:
    registry = Registry()
    first = registry.add(pred("x"), now=0, first_poll_at=1.0)
    second = registry.add(pred("x"), now=0, first_poll_at=5.0)

    assert first is second
    assert len(registry) == 1


async def test_removed_and_rescheduled_entries_leave_no_stale_polls() -> None:
    registry = Registry()
    gone = registry.add(pred("gone"), now=0, first_poll_at=1.0)
    moved = registry.add(pred("moved"), now=0, first_poll_at=1.0)
    registry.remove(gone)
    registry.schedule(moved, 5.0)

    assert "gone" not in registry
    assert registry.next_due_at() == 5.0
    assert registry.pop_due(2.0) is None
    entry = registry.pop_due(5.0)
    assert entry is moved
    assert registry.next_due_at() is None
