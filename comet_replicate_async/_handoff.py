"""A create sent from a task of the session, so that no cancellation loses its id.

`CreateCalls` builds each create request and runs its attempts through the call
layer's retry loop; the caller hands each create attempt to a task in the session's task group and
waits for the answer. Cancelling the caller ends its wait at once; the task, if
it has sent the create, finishes it and logs the id (with how to pick it up
again), so a prediction that is billed is never lost. A task that has not sent
the create when its caller leaves sends nothing.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import attrs

from ._breaker import CreateBreaker, Ticket
from ._calls import Calls
from ._exceptions import BatchStoppedError, CometReplicateError, ModelNotFoundError
from ._inputs.flux import near_miss
from ._lifecycle import Lifecycle, log_abandoned, not_started
from ._limits import ConcurrencyWindow
from ._money.ledger import Reservation
from ._money.spending import Spending
from ._retry import create_may_have_happened
from ._sansio import RequestSpec, build_create_request
from ._stats import Event
from ._telemetry.base import log_extra, note_cost
from ._values import Prediction

__all__ = ["CreateCalls", "CreateHandoff", "OnCreated"]

logger = logging.getLogger("comet_replicate_async")

# Told of each new prediction as its create answers, whatever became of the caller.
OnCreated = Callable[[Prediction], Awaitable[None] | None]


class CreateCalls:
    """A session's creates: each priced, then each attempt sent from a task of the
    session."""

    def __init__(
        self,
        calls: Calls,
        life: Lifecycle,
        window: ConcurrencyWindow,
        spending: Spending,
        emit: Callable[[Event], None],
        *,
        prefer_wait: int | None,
        server_deadline: bool,
        breaker: CreateBreaker | None = None,
    ) -> None:
        self.breaker = breaker or CreateBreaker()
        self._calls = calls
        self._life = life
        self.window = window
        self._spending = spending
        self._emit = emit
        self._prefer_wait = prefer_wait
        self._server_deadline = server_deadline

    async def create(
        self,
        model: str,
        input: dict[str, Any],
        on_created: OnCreated | None = None,
        deadline: float = math.inf,
        stopped: Callable[[], CometReplicateError | None] | None = None,
        reservation: Reservation | None = None,
        prediction_deadline: bool = True,
    ) -> Prediction:
        """Create, retrying what provably created nothing until `deadline`.

        `stopped` tells whether the batch has stopped creating (and why): checked
        before each attempt that would be the first to reach the server. The
        create's price is reserved first, unless the caller did (`reservation`).
        `prediction_deadline`: `deadline` is also the prediction's, which
        `Cancel-After` may send; False when it bounds the create alone.
        """
        spec = build_create_request(
            model,
            input,
            prefer_wait=self._prefer_wait,
            cancel_after=self._cancel_after(deadline) if prediction_deadline else None,
        )
        read_timeout = None if self._prefer_wait is None else self._prefer_wait + 5.0
        spending = self._spending
        if reservation is None:
            reservation = await spending.reserve(model, input)
        # No wrapper around the create: each create waiting for its turn in the
        # pacer holds its chain of frames, so the chain stays short.
        create = self._calls.create(
            model,
            input,
            lambda: self._hand_off(
                spec, read_timeout, on_created, model, (deadline, stopped)
            ),
            deadline=deadline,
            stopped=stopped,
        )
        if reservation is None:
            return await create
        try:
            prediction = await create
        except BaseException as error:
            spending.create_failed(reservation, error)
            raise
        spending.created(reservation, prediction)
        note_cost(spending.journal_cost(reservation))
        return prediction

    def _cancel_after(self, deadline: float) -> float | None:
        """Seconds left for `Cancel-After`, with `server_deadline` and a deadline."""
        if not self._server_deadline or deadline == math.inf:
            return None
        return max(deadline - time.monotonic(), 0.001)  # the header wants > 0

    async def _hand_off(
        self,
        spec: RequestSpec,
        read_timeout: float | None,
        on_created: OnCreated | None,
        model: str,
        until: tuple[float, Callable[[], CometReplicateError | None] | None],
    ) -> Prediction:
        """Send one create from a task of the session and wait for its answer.

        The create first waits for the breaker (`_breaker.py`) to let it go, up
        to its deadline; a batch that stopped meanwhile sends nothing. Once
        sent, a create is never interrupted and its id never lost, whatever
        cancels the caller (a scope, `task.cancel()`, `wait_for`, a server
        cancelling its handler): the caller stops waiting at once, and the task
        finishes the create and logs the id.
        """
        life = self._life
        if not life.accepts_creates:
            raise not_started()
        deadline, stopped = until
        ticket = await self.breaker.wait_admitted(deadline)
        if not life.accepts_creates:  # closing meanwhile
            self.breaker.released(ticket)
            raise not_started()
        if stopped is not None and (reason := stopped()):
            self.breaker.released(ticket)
            raise BatchStoppedError(reason)
        assert life.loop is not None
        assert life.task_group is not None
        handoff = CreateHandoff(life.loop.create_future())
        life.job_started()
        life.task_group.start_soon(
            self._send, spec, read_timeout, on_created, handoff, (model, ticket)
        )
        try:
            return await asyncio.shield(handoff.answer)
        except asyncio.CancelledError:
            handoff.caller_left()
            raise

    async def _send(
        self,
        spec: RequestSpec,
        read_timeout: float | None,
        on_created: OnCreated | None,
        handoff: CreateHandoff,
        admitted: tuple[str, Ticket],
    ) -> None:
        model, ticket = admitted
        breaker = self.breaker
        settled = False
        try:
            if handoff.caller_gone:
                handoff.failed(asyncio.CancelledError())  # never sent
                return
            if not self._life.accepts_creates:  # closing meanwhile
                handoff.failed(not_started())
                return
            # Never interrupted once sent: a cancel must not lose a paid-for id.
            with anyio.CancelScope(shield=True):
                try:
                    prediction = await self._calls.send(spec, read_timeout=read_timeout)
                except Exception as error:
                    settled = True
                    if isinstance(error, ModelNotFoundError):
                        # Named by the request, whatever the reply's message says.
                        error.asked_for(model, near_miss(model))
                    if isinstance(error, CometReplicateError) and (
                        create_may_have_happened(error)
                    ):
                        breaker.failed(ticket, error)
                    else:
                        breaker.released(ticket)
                    handoff.failed(error)
                    return
            settled = True
            breaker.accepted(ticket)
            self.window.on_success()
            self._emit(Event("created", prediction=prediction))
            if on_created is not None:
                with anyio.CancelScope(shield=True):
                    await _call_on_created(on_created, prediction)
            handoff.created(prediction)
        finally:
            if not settled:
                breaker.released(ticket)
            self._life.job_done()


async def _call_on_created(on_created: OnCreated, prediction: Prediction) -> None:
    try:
        result = on_created(prediction)
        if inspect.isawaitable(result):
            await result
    except Exception:
        logger.exception(
            "on_created raised for prediction %s; ignored",
            prediction.id,
            extra=log_extra(prediction.id, prediction.model or None),
        )


@attrs.define(eq=False)
class CreateHandoff:
    """One create attempt between its caller and the session task that sends it."""

    answer: asyncio.Future[Prediction]
    caller_gone: bool = False

    def caller_left(self) -> None:
        """The caller was cancelled: whatever the create returns is nobody's now."""
        self.caller_gone = True
        answer = self.answer
        if answer.done() and not answer.cancelled() and answer.exception() is None:
            # It answered just as the caller was cancelled.
            log_abandoned(answer.result(), "cancelled as its create answered")

    def created(self, prediction: Prediction) -> None:
        """The create answered with a prediction."""
        if self.caller_gone:
            log_abandoned(prediction, "cancelled while its create was in flight")
            self.answer.cancel()
        else:
            self.answer.set_result(prediction)

    def failed(self, error: BaseException) -> None:
        """The create failed (or was never sent)."""
        if not self.caller_gone:
            self.answer.set_exception(error)
            return
        self.answer.cancel()
        if isinstance(error, CometReplicateError) and create_may_have_happened(error):
            logger.warning(
                "cancelled while its create was in flight: the create may or may not "
                "have happened (%s); a prediction may exist and be billed",
                type(error).__name__,
            )
