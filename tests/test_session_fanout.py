"""run, wait, submit and the batch calls through the one background poller."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncGenerator, Callable
from contextlib import aclosing
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from comet_replicate_async import (
    BadRequestError,
    BatchItem,
    Event,
    PollPolicy,
    Prediction,
    PredictionAbandoned,
    PredictionFuture,
    PredictionTimeout,
    Session,
    Status,
)
from comet_replicate_async.testing import (
    FakeCometAPI,
    Fault,
    Latency,
    MockTransport,
    mock_reply,
)

from helpers import PRO, QUICK, SCHNELL, eventually, session_for
from helpers import fake as fake

pytestmark = pytest.mark.anyio


def session_tasks() -> list[asyncio.Task[Any]]:
    """Tasks running this package's client code (the fake server's excluded)."""
    return [task for task in asyncio.all_tasks() if _runs_client_code(task.get_coro())]


def _runs_client_code(coroutine: Any) -> bool:
    # Follow the chain of awaited coroutines: anyio wraps each task's own.
    while coroutine is not None:
        code = getattr(coroutine, "cr_code", None)
        filename = code.co_filename if code else ""
        if "comet_replicate_async" in filename and "testing" not in filename:
            return True
        coroutine = getattr(coroutine, "cr_await", None)
    return False


async def read_then_stop(
    stream: AsyncGenerator[BatchItem, None], condition: Callable[[], bool]
) -> int:
    """Read `stream` in a task until `condition()` holds, then stop reading.

    Returns how many client tasks were running just before it stopped.
    """

    async def consume() -> None:
        async with aclosing(stream):
            async for _ in stream:
                pass

    async with anyio.create_task_group() as group:
        group.start_soon(consume)
        await eventually(condition)
        tasks = len(session_tasks())
        group.cancel_scope.cancel()  # the consumer stops reading
    return tasks


async def test_a_new_models_first_finish_brings_forward_the_polls_it_held_back() -> (
    None
):
    # Two older predictions still running hold a younger one's polls back for up
    # to a minute; the first of them to finish must reschedule it from the
    # duration now known.
    poll = PollPolicy(
        survivors=2, min_interval=0.05, max_interval=0.05, straggler_max_interval=60
    )
    async with FakeCometAPI(default_latency=Latency.constant(0.6)) as fake:
        async with session_for(fake, poll=poll) as session:
            older = [session.submit(PRO, {"prompt": f"old {n}"}) for n in range(2)]
            await eventually(lambda: fake.stats.count("query") >= 4)
            with anyio.fail_after(10):
                young = await session.run(PRO, {"prompt": "young"})
            finished = [await future for future in older]

    assert young.status is Status.SUCCEEDED
    assert [prediction.status for prediction in finished] == [Status.SUCCEEDED] * 2


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_gather_keeps_order_under_the_concurrency_limit(
    fake: FakeCometAPI,
) -> None:
    inputs = [{"prompt": f"prompt {i}"} for i in range(300)]

    async with session_for(fake, max_concurrency=20) as session:
        items = await session.gather(SCHNELL, inputs)

    assert [item.index for item in items] == list(range(300))
    assert [item.input for item in items] == inputs
    assert all(item.ok for item in items)
    assert [item.prediction.input["prompt"] for item in items if item.prediction] == [
        i["prompt"] for i in inputs
    ]
    assert fake.stats.peak_in_flight <= 20
    assert fake.stats.created == 300
    assert fake.stats.duplicates == 0


async def test_one_poller_owns_every_query(fake: FakeCometAPI) -> None:
    async with session_for(fake, max_concurrency=50) as session:
        await session.gather(SCHNELL, [{"prompt": f"p{i}"} for i in range(100)])
        # One session task group: the poller, its workers, nothing per prediction.
        tasks_while_idle = len(session_tasks())

    assert tasks_while_idle == 1 + session.poll.max_concurrent_queries
    assert session.stats.queries == fake.stats.count("query")


async def test_one_failed_item_does_not_hurt_its_siblings(fake: FakeCometAPI) -> None:
    inputs: list[dict[str, Any]] = [
        {"prompt": "ok 1"},
        {"no_prompt": True},
        {"prompt": "ok 2"},
    ]

    async with session_for(fake) as session:
        items = await session.gather(SCHNELL, inputs)

    assert [item.ok for item in items] == [True, False, True]
    assert isinstance(items[1].error, BadRequestError)
    assert session.stats.failed == 1
    assert session.stats.succeeded == 2


async def test_session_default_timeout_applies_to_batches() -> None:
    async with (
        FakeCometAPI(
            latency={"flux-pro": Latency.constant(30)}, default_latency=QUICK
        ) as fake,
        session_for(fake, timeout=1.0) as session,
    ):
        items = await session.gather(SCHNELL, [{"prompt": "a"}]) + await session.gather(
            PRO, [{"prompt": "b"}]
        )

    assert items[0].ok
    assert isinstance(items[1].error, PredictionTimeout)
    assert items[1].prediction is not None


async def test_cancelling_one_waiter_removes_only_its_entry() -> None:
    async with (
        FakeCometAPI(
            latency={"flux-pro": Latency.constant(30)},
            default_latency=Latency.constant(0.3),
        ) as fake,
        session_for(fake) as session,
    ):
        long_one = await session.create(PRO, {"prompt": "long"})
        short_one = await session.create(SCHNELL, {"prompt": "short"})
        results: list[Any] = []

        doomed = anyio.CancelScope()

        async def wait_long() -> None:
            with doomed:
                await session.wait(long_one)

        async with anyio.create_task_group() as group:
            group.start_soon(wait_long)
            group.start_soon(_collect, session.wait(short_one), results)
            await eventually(lambda: session.stats.watched == 2)
            doomed.cancel()
            await eventually(lambda: session.stats.watched == 1)
            # Only the cancelled waiter's entry left; the other is still watched.
            assert session.stats.watched == 1

        assert session.stats.watched == 0

    assert results[0].status is Status.SUCCEEDED


async def _collect(awaitable: Any, into: list[Any]) -> None:
    into.append(await awaitable)


async def test_normal_close_waits_for_submitted_predictions(fake: FakeCometAPI) -> None:
    async with session_for(fake) as session:
        futures = [session.submit(SCHNELL, {"prompt": f"p{i}"}) for i in range(5)]
        assert all(future.id is None for future in futures)

    assert all(future.done() for future in futures)
    assert [future.status for future in futures] == [Status.SUCCEEDED] * 5
    assert all(future.id in fake.predictions for future in futures)
    assert not session_tasks()


async def test_close_on_an_error_abandons_logs_ids_and_reraises_unwrapped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    futures: list[PredictionFuture] = []

    async def fail_inside_the_session(slow: FakeCometAPI) -> None:
        async with session_for(slow) as session:
            futures.append(session.submit(PRO, {"prompt": "x"}))
            await eventually(lambda: futures[0].id is not None)
            raise KeyError("user bug")

    async with FakeCometAPI(default_latency=Latency.constant(30)) as slow:
        with pytest.raises(KeyError, match="user bug"):
            await fail_inside_the_session(slow)
    future = futures[0]

    assert future.done()
    assert future.id is not None
    assert future.id in caplog.text
    assert not session_tasks()


async def test_use_from_another_event_loop_is_refused(fake: FakeCometAPI) -> None:
    errors: list[BaseException] = []

    async with session_for(fake) as session:

        def other_loop() -> None:
            try:
                asyncio.run(session.get("abc"))
            except BaseException as error:
                errors.append(error)

        thread = threading.Thread(target=other_loop)
        thread.start()
        await anyio.to_thread.run_sync(thread.join)

    assert len(errors) == 1
    assert isinstance(errors[0], RuntimeError)
    assert "another event loop" in str(errors[0])


async def test_a_429_on_a_query_pauses_the_whole_session(fake: FakeCometAPI) -> None:
    fake.script("query", Fault.rate_limited("0.5"))

    async with session_for(fake, max_concurrency=10) as session:
        items = await session.gather(SCHNELL, [{"prompt": f"p{i}"} for i in range(10)])

    assert all(item.ok for item in items)
    throttled = [r for r in fake.stats.requests_log if r.status == 429]
    assert len(throttled) == 1
    paused_at = throttled[0].monotonic
    # Requests already on the wire land just after the 429; then nothing at all
    # arrives for the rest of the half second the server asked for.
    during_pause = [
        r
        for r in fake.stats.requests_log
        if paused_at + 0.05 < r.monotonic < paused_at + 0.45
    ]
    assert during_pause == []
    assert session.stats.rate_limited == 1


async def test_on_event_sees_creates_status_changes_and_finishes(
    fake: FakeCometAPI,
) -> None:
    events: list[Event] = []

    async with session_for(fake, on_event=events.append) as session:
        await session.run(SCHNELL, {"prompt": "x"})

    kinds = [event.kind for event in events]
    assert kinds[0] == "created"
    assert kinds[-1] == "finished"
    assert events[-1].prediction is not None
    assert events[-1].prediction.status is Status.SUCCEEDED


async def test_a_failing_on_event_handler_is_logged_not_fatal(
    fake: FakeCometAPI, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(event: Event) -> None:
        raise ValueError("handler bug")

    caplog.set_level(logging.ERROR)
    async with session_for(fake, on_event=broken) as session:
        prediction = await session.run(SCHNELL, {"prompt": "x"})

    assert prediction.status is Status.SUCCEEDED
    assert "handler bug" in caplog.text


def test_batch_item_ok() -> None:
    assert not BatchItem(0, {}).ok


async def test_cancelling_during_a_create_keeps_and_logs_the_id(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with FakeCometAPI(default_latency=Latency.constant(5)) as slow:
        slow.script("create", Fault.delay(0.3))
        async with session_for(slow) as session:
            with anyio.move_on_after(0.05):
                await session.run(PRO, {"prompt": "x"})
            assert session.stats.watched == 0
        created = list(slow.predictions)

    assert len(created) == 1
    assert created[0] in caplog.text
    assert "billed" in caplog.text


async def test_stopping_a_batch_early_logs_the_abandoned_ids(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with FakeCometAPI(default_latency=Latency.constant(30)) as slow:
        async with session_for(slow, max_concurrency=3) as session:
            stream = session.as_completed(
                PRO, [{"prompt": f"slow {i}"} for i in range(2)]
            )
            await read_then_stop(stream, lambda: session.stats.watched == 2)
            await eventually(lambda: session.stats.watched == 0)
        slow_ids = list(slow.predictions)

    assert len(slow_ids) == 2
    assert all(prediction_id in caplog.text for prediction_id in slow_ids)


@pytest.mark.slow
@pytest.mark.timeout(120)
@pytest.mark.parametrize("stop", ["after three items", "while creates are slow"])
async def test_a_batch_stopped_half_way_gives_every_slot_back(stop: str) -> None:
    # Items being pulled, queued for a create, created or waiting each hold a slot
    # of the session's window: a stopped batch must leave none behind.
    slow_creates = stop == "while creates are slow"
    async with FakeCometAPI(
        default_latency=Latency.uniform(0.2, 3.0),
        slow_rate=1.0 if slow_creates else 0.0,
        slow_delay=0.3,
    ) as fake:
        async with session_for(fake, max_concurrency=40) as session:
            inputs = ({"prompt": f"p{i}"} for i in range(1000))
            with anyio.move_on_after(0.1 if slow_creates else 30):
                async with aclosing(session.as_completed(SCHNELL, inputs)) as items:
                    seen = 0
                    async for _ in items:
                        seen += 1
                        if seen == 3:
                            break
            await eventually(lambda: session.stats.in_flight == 0)
            with anyio.fail_after(20):
                again = await session.gather(
                    SCHNELL, [{"prompt": f"q{i}"} for i in range(50)]
                )
            stats = session.stats

    assert all(item.ok for item in again)
    assert stats.submitted == stats.succeeded + stats.failed + stats.canceled


async def test_a_batch_keeps_no_task_per_waiting_prediction() -> None:
    # Memory and CPU stay per prediction, not per task: once created, an item
    # waits through a callback on its registry entry.
    poll = PollPolicy(max_concurrent_queries=2)
    async with FakeCometAPI(default_latency=Latency.constant(30)) as slow:
        async with session_for(slow, max_concurrency=100, poll=poll) as session:
            stream = session.as_completed(
                PRO, [{"prompt": f"slow {i}"} for i in range(100)]
            )
            tasks = await read_then_stop(stream, lambda: session.stats.watched == 100)

    # The poller and its 2 workers, the feeder, at most 16 creators, the consumer.
    assert tasks <= 2 + 2 + 16 + 1


async def test_a_create_answering_as_the_session_abandons_logs_its_id(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The race the abandoning close cannot see: the create answered, but its
    # caller had not yet put the id in the registry when the close logged ids.
    session = Session(transport=MockTransport(lambda request: mock_reply(500, {})))
    async with session:
        pass
    answered = Prediction(id="p-late", status=Status.STARTING)

    with pytest.raises(PredictionAbandoned, match="p-late"):
        await session._parts.runner.wait_until(answered, deadline=float("inf"))

    assert "p-late" in caplog.text
