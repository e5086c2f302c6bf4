"""One prediction from a concurrency slot to its outcome: `run`, `wait`, `submit`.

`Runner` takes a slot of the window (not past the deadline), creates through
`CreateCalls`, then waits for the poller to resolve the prediction's entry, counting
itself as a waiter in the registry; the slot goes back to the window however it
ends. `submit` runs the same steps in a task of the session, reported through a
`PredictionFuture`; the batch creators call `create_by` for their creates.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import anyio

from ._exceptions import (
    CometReplicateError,
    PredictionAbandoned,
    PredictionTimeout,
    deadline_passed,
    error_for_status,
)
from ._futures import PredictionFuture
from ._handoff import CreateCalls, OnCreated
from ._lifecycle import Lifecycle, State, closed_while_waiting, log_abandoned
from ._money.ledger import Reservation
from ._polling.poller import Poller
from ._polling.registry import Registry
from ._sansio import build_query_request
from ._stats import StatsCounter
from ._telemetry.base import PredictionHooks, Telemetry
from ._values import Prediction, Status

__all__ = ["Runner", "outcome"]


class Runner:
    """Runs a session's predictions under its window, through its poller."""

    def __init__(
        self,
        life: Lifecycle,
        creates: CreateCalls,
        registry: Registry,
        poller: Poller,
        counters: StatsCounter,
        telemetry: Telemetry,
    ) -> None:
        self._life = life
        self._telemetry = telemetry
        self._creates = creates
        self._window = creates.window
        self._registry = registry
        self._poller = poller
        self._counters = counters
        # Held until each ends: the task group keeps no reference to its futures.
        self._futures: set[PredictionFuture] = set()

    async def run(
        self, model: str, input: dict[str, Any], deadline: float
    ) -> Prediction:
        """Create and wait under a window slot: `Session.run`."""
        self._counters.started()
        with self._life.job():
            if not self._telemetry.on:
                await self.acquire_slot(deadline)
                return await self.run_in_slot(model, input, deadline)
            # The current prediction while it creates; its span ends with it.
            with self._telemetry.prediction(model) as trace:
                try:
                    await self.acquire_slot(deadline, trace)
                    result = await self.run_in_slot(model, input, deadline, trace=trace)
                except BaseException as error:
                    trace.end(None, error)
                    raise
                return trace.ended_with(result)

    async def wait(self, prediction: Prediction | str, deadline: float) -> Prediction:
        """Wait through the poller, as a job a normal close waits for: `Session.wait`."""
        if isinstance(prediction, str):
            build_query_request(prediction)  # validates the id before any request
            prediction = Prediction(id=prediction, status=Status.STARTING)
        with self._life.job():
            return await self.wait_until(prediction, deadline)

    def submit(self, future: PredictionFuture, deadline: float) -> None:
        """Run `future`'s prediction in a task of the session: `Session.submit`."""
        self._counters.started()
        self._life.job_started()
        self._futures.add(future)
        assert self._life.task_group is not None
        # Started here, in the caller's context: its span is the parent.
        trace = self._telemetry.prediction(future.model) if self._telemetry.on else None
        self._life.task_group.start_soon(self._run_future, future, deadline, trace)

    async def acquire_slot(
        self, deadline: float, trace: PredictionHooks | None = None
    ) -> None:
        """Wait for a concurrency slot, but not past the deadline."""
        try:
            with anyio.move_on_after(deadline - time.monotonic()):
                await self._window.acquire()
                if trace is not None:
                    trace.slot_taken()
                return
        except PredictionAbandoned:
            self._counters.finished(succeeded=False)
            raise
        except anyio.get_cancelled_exc_class():
            self._counters.cancelled()
            raise
        self._counters.finished(succeeded=False)
        raise PredictionTimeout(
            "the deadline passed while waiting for a free slot; nothing was created",
            None,
        )

    async def run_in_slot(
        self,
        model: str,
        input: dict[str, Any],
        deadline: float,
        on_created: OnCreated | None = None,
        *,
        trace: PredictionHooks | None = None,
    ) -> Prediction:
        """Create and wait, holding a window slot taken by the caller; free it after."""
        try:
            created = await self.create_by(model, input, deadline, on_created)
        except anyio.get_cancelled_exc_class():
            self._counters.cancelled()
            self._window.release()
            raise
        except BaseException:
            self._counters.finished(succeeded=False)
            self._window.release()
            raise
        # None once counted as cancelled.
        succeeded: bool | None = False
        try:
            result = await self.wait_until(created, deadline, trace)
            succeeded = True
            return result
        except anyio.get_cancelled_exc_class():
            if not created.done:
                log_abandoned(created, "stopped waiting (cancelled)")
            self._counters.cancelled()
            succeeded = None
            raise
        finally:
            if succeeded is not None:
                self._counters.finished(succeeded=succeeded)
            self._window.release()

    async def create_by(
        self,
        model: str,
        input: dict[str, Any],
        deadline: float,
        on_created: OnCreated | None = None,
        stopped: Callable[[], CometReplicateError | None] | None = None,
        reservation: Reservation | None = None,
    ) -> Prediction:
        """Create unless the deadline has passed; raise if it passed meanwhile."""
        if time.monotonic() >= deadline:
            raise PredictionTimeout(
                "the deadline passed before the create; nothing was created", None
            )
        created = await self._creates.create(
            model, input, on_created, deadline, stopped, reservation
        )
        if time.monotonic() >= deadline and not created.done:
            raise PredictionTimeout(
                f"prediction {created.id} was created after its deadline; "
                "it may still run and be billed",
                created,
            )
        return created

    async def wait_until(
        self,
        prediction: Prediction,
        deadline: float,
        trace: PredictionHooks | None = None,
    ) -> Prediction:
        """Wait for the poller to resolve `prediction`, but not past the deadline."""
        if trace is not None:
            trace.watching(prediction)
        if prediction.done:
            return outcome(prediction)
        if self._life.state is not State.OPENED:
            # Its create answered as an abandoning close ran: the close logged the
            # registry's ids, and this one was not there yet.
            log_abandoned(prediction, "the session closed as its create answered")
            raise closed_while_waiting(prediction)
        entry = self._poller.watch(prediction)
        if trace is not None:
            entry.trace = trace  # the poller adds each poll to its span
        self._registry.acquire(entry)
        try:
            with anyio.move_on_after(deadline - time.monotonic()):
                final = await asyncio.shield(entry.outcome)
                return outcome(final)
            raise deadline_passed(entry.prediction)
        finally:
            self._registry.release(entry)

    async def _run_future(
        self,
        future: PredictionFuture,
        deadline: float,
        trace: PredictionHooks | None,
    ) -> None:
        prediction: Prediction | None = None
        error: BaseException | None = None
        try:
            with anyio.CancelScope() as scope:
                future.attach(scope)
                if trace is not None:
                    trace.__enter__()  # the current prediction of this task
                await self.acquire_slot(deadline, trace)
                prediction = await self.run_in_slot(
                    future.model,
                    future.input,
                    deadline,
                    on_created=future.created,
                    trace=trace,
                )
            if prediction is None:
                error = asyncio.CancelledError("canceled by PredictionFuture.cancel()")
        except Exception as exc:
            error = exc
        except BaseException:
            error = closed_while_waiting(future.prediction)
            raise
        finally:
            if trace is not None:
                trace.end(prediction, error)
            future.settle(prediction, error)
            self._futures.discard(future)
            self._life.job_done()


def outcome(prediction: Prediction) -> Prediction:
    """The succeeded prediction, or raise the error its terminal status stands for."""
    error = error_for_status(prediction)
    if error is not None:
        raise error
    return prediction
