"""A session's life: opened once, closed once, and the work a close waits for.

`Lifecycle` holds what `Session` is between `async with` and its end: its state,
its event loop, its task group (the poller and every background job run in it),
and the count of jobs a normal close waits for. Closing lives here too: a normal
close waits for the jobs, a close with a grace period starts no create and waits
for a while, and an abandoning close ends every waiter with the id it was
waiting for and logs the ids left running (and billed).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from typing import Any

import anyio
from anyio.abc import TaskGroup

from ._breaker import CreateBreaker
from ._exceptions import PredictionAbandoned
from ._limits import ConcurrencyWindow
from ._money.spending import Spending
from ._polling.registry import Registry
from ._telemetry.base import log_extra
from ._transports.base import Transport
from ._values import Prediction

__all__ = [
    "Lifecycle",
    "State",
    "closed_while_waiting",
    "log_abandoned",
    "not_started",
]

logger = logging.getLogger("comet_replicate_async")

# The poller's `run`, started in the task group (`task_status=`) as the session opens.
StartPoller = Callable[..., Coroutine[Any, Any, Any]]


class State(enum.Enum):
    UNOPENED = "unopened"  # built, not entered yet
    OPENED = "opened"  # inside `async with`: requests may be sent
    CLOSED = "closed"  # left or aclose()d: a session is never reopened


class Lifecycle:
    """A session's state, its task group, and the jobs a normal close waits for."""

    def __init__(
        self,
        transport: Transport,
        registry: Registry,
        window: ConcurrencyWindow,
        spending: Spending,
        *,
        held_creates: CreateBreaker | None = None,
    ) -> None:
        self._transport = transport
        # Creates held back by the breaker on creates: failed on closing, as
        # the callers waiting for a window slot are.
        self._held_creates = held_creates
        self._spending = spending
        self._registry = registry
        self._window = window
        self.state = State.UNOPENED
        self.loop: asyncio.AbstractEventLoop | None = None
        self.task_group: TaskGroup | None = None
        # Background jobs (submitted futures, batch feeders) a normal close waits for.
        self._jobs = 0
        self._jobs_finished = anyio.Event()
        self._jobs_finished.set()
        # Set by a close with a grace period: no create is sent any more.
        self.closing = False

    @property
    def accepts_creates(self) -> bool:
        """Open, and not closing: a create may still be sent."""
        return not self.closing and self.state is State.OPENED

    async def open(self, start_poller: StartPoller) -> None:
        """Open the transport and the task group, and start the poller in it."""
        if self.state is State.OPENED:
            raise RuntimeError("this Session is already open")
        if self.state is State.CLOSED:
            raise RuntimeError("a closed Session cannot be reopened; make a new one")
        self.loop = asyncio.get_running_loop()
        self._transport.open()
        task_group = anyio.create_task_group()
        await task_group.__aenter__()
        try:
            await task_group.start(start_poller)
        except BaseException:
            task_group.cancel_scope.cancel()
            await task_group.__aexit__(None, None, None)
            await self._transport.aclose()
            raise
        self.task_group = task_group
        self.state = State.OPENED

    def check_usable(self) -> None:
        """Raise unless the session is open, on the loop that runs this call."""
        if self.state is not State.OPENED:
            if self.state is State.UNOPENED:
                raise RuntimeError(
                    "Session is not open: use 'async with Session() as session:'"
                )
            raise RuntimeError("Session is closed")
        if asyncio.get_running_loop() is not self.loop:
            raise RuntimeError(
                "this Session belongs to another event loop; open one Session per loop"
            )

    def job_started(self) -> None:
        self._jobs += 1
        if self._jobs_finished.is_set():
            self._jobs_finished = anyio.Event()

    def job_done(self) -> None:
        self._jobs -= 1
        if self._jobs == 0:
            self._jobs_finished.set()

    def start_job(self, job: Callable[[], Awaitable[None]]) -> None:
        """Run `job` in the session's task group; a normal close waits for it."""
        assert self.task_group is not None, "the session is open"
        self.job_started()
        self.task_group.start_soon(self._run_job, job)

    async def _run_job(self, job: Callable[[], Awaitable[None]]) -> None:
        try:
            await job()
        finally:
            self.job_done()

    @contextlib.contextmanager
    def job(self) -> Iterator[None]:
        """Count the body as a job: a normal close waits for it, whatever task runs it."""
        self.job_started()
        try:
            yield
        finally:
            self.job_done()

    async def close(self, *, abandon: bool, grace: float | None = None) -> None:
        """Close: wait for the jobs (up to `grace`), or abandon them; then stop."""
        if grace is not None and grace < 0:
            raise ValueError(f"grace must be 0 or more seconds, got {grace}")
        if self.state is not State.OPENED:
            self.state = State.CLOSED
            return
        if not abandon and grace is not None:
            self.closing = True
            self._fail_waiters()
            with anyio.move_on_after(grace):
                await self._jobs_finished.wait()
            abandon = self._jobs > 0
        if abandon:
            self.state = State.CLOSED
            self._abandon_outstanding()
        else:
            await self._jobs_finished.wait()
        self.state = State.CLOSED
        task_group, self.task_group = self.task_group, None
        assert task_group is not None
        task_group.cancel_scope.cancel()
        # The user's exception, if any, is not handed to the task group: it must
        # propagate as itself, never wrapped in an ExceptionGroup.
        try:
            await task_group.__aexit__(None, None, None)
        finally:
            self._spending.close()
            await self._transport.aclose()

    def _abandon_outstanding(self) -> None:
        # Cancelling the task group (in close) stops them; say which ids are left
        # running remotely, so nobody pays for a result they cannot find.
        ids = self._registry.ids()
        if ids:
            logger.warning(
                "closing: abandoning %d unfinished prediction(s), which keep running "
                "and are billed: %s",
                len(ids),
                ", ".join(ids),
            )
        # Callers in other tasks would wait forever for a poller that is stopping:
        # each ends now with the id it was waiting for.
        for entry in self._registry.entries():
            if not entry.outcome.done():
                entry.outcome.set_exception(closed_while_waiting(entry.prediction))
                entry.outcome.exception()  # its waiters raise it; nothing to log
        self._fail_waiters()

    def _fail_waiters(self) -> None:
        self._window.fail_waiters(not_started)
        if self._held_creates is not None:
            self._held_creates.fail_waiters(not_started)


def not_started() -> PredictionAbandoned:
    """The error of a call that the closing session will not start."""
    return PredictionAbandoned(
        "not started: the session is closing; nothing was created", None
    )


def closed_while_waiting(prediction: Prediction | None) -> PredictionAbandoned:
    """The error of a caller whose session closed under it."""
    if prediction is None:
        return PredictionAbandoned(
            "the session closed before the create answered", None
        )
    return PredictionAbandoned(
        f"the session closed while waiting for prediction "
        f"{prediction.id} (last status: {prediction.status}); it may still run "
        f"and be billed: another session's wait({prediction.id!r}) picks it up",
        prediction,
    )


def log_abandoned(prediction: Prediction, why: str, batch: str | None = None) -> None:
    """Say that a prediction nobody waits for any more keeps running (and billing)."""
    # At WARNING: the prediction is billed, and this line is how to find it.
    logger.warning(
        "%s: prediction %s keeps running and is billed; "
        "session.wait(%r) picks it up again",
        why,
        prediction.id,
        prediction.id,
        extra=log_extra(prediction.id, prediction.model or None, batch),
    )
