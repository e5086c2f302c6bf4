"""`PredictionFuture`: the handle `Session.submit` returns."""

from __future__ import annotations

import asyncio
from collections.abc import Generator
from typing import Any

import anyio

from ._values import Prediction, Status

__all__ = ["PredictionFuture"]


class PredictionFuture:
    """A prediction running in the background of a session.

    Await it for the succeeded `Prediction` (or the error that ended it). `id` is
    None until the create call answered; `status` follows the poller. `cancel()`
    stops local tracking only: CometAPI has no cancel endpoint, so the remote
    prediction carries on and is billed.

    Awaiting is shielded: cancelling a task that awaits the future does not cancel
    the prediction; call `cancel()` for that.
    """

    def __init__(self, model: str, input: Any) -> None:
        self.model = model
        self.input = input
        self._prediction: Prediction | None = None
        self._finished = asyncio.Event()
        self._error: BaseException | None = None
        self._cancel_scope: anyio.CancelScope | None = None
        self._cancel_requested = False

    def __repr__(self) -> str:
        state = "done" if self.done() else "pending"
        return (
            f"<PredictionFuture {self.model} id={self.id} status={self.status} {state}>"
        )

    @property
    def id(self) -> str | None:
        """The prediction id, once created."""
        return self._prediction.id if self._prediction else None

    @property
    def status(self) -> Status | None:
        """The last status seen, or None before the create answered."""
        return self._prediction.status if self._prediction else None

    @property
    def prediction(self) -> Prediction | None:
        """The last state seen, or None before the create answered."""
        return self._prediction

    def done(self) -> bool:
        """True once it succeeded, failed, was canceled or gave up."""
        return self._finished.is_set()

    def cancelled(self) -> bool:
        """True once `cancel()` stopped it (at once, as for `asyncio.Future`)."""
        return self._cancel_requested

    def exception(self) -> BaseException | None:
        """The error it ended with, or None (raises if not done yet)."""
        if not self.done():
            raise asyncio.InvalidStateError("the prediction has not finished")
        return self._error

    def cancel(self) -> bool:
        """Stop tracking it locally; returns False if it had already finished.

        The remote prediction is not canceled (CometAPI cannot) and is still billed.
        """
        if self.done():
            return False
        self._cancel_requested = True
        if self._cancel_scope is not None:
            self._cancel_scope.cancel()
        return True

    async def wait(self) -> Prediction:
        """The succeeded prediction, or raise what ended it."""
        await self._finished.wait()
        if self._error is not None:
            raise self._error
        assert self._prediction is not None
        return self._prediction

    def __await__(self) -> Generator[Any, None, Prediction]:
        return self.wait().__await__()

    # The runner's driver API (`_runner.py`): not for users, and left out of the
    # API reference (docs/reference.md filters these three names out).

    def attach(self, scope: anyio.CancelScope) -> None:
        """For the runner: the scope `cancel()` cancels, cancelled at once if
        `cancel()` came first."""
        self._cancel_scope = scope
        if self._cancel_requested:
            scope.cancel()

    def created(self, prediction: Prediction) -> None:
        """For the runner: the create answered (or the poller saw a new state)."""
        self._prediction = prediction

    def settle(
        self, prediction: Prediction | None, error: BaseException | None
    ) -> None:
        """For the runner: how it ended; a second call is ignored."""
        if self._finished.is_set():
            return
        if prediction is not None:
            self._prediction = prediction
        if self._cancel_requested:
            # cancel() said so: a result that raced it in is not handed out.
            error = asyncio.CancelledError("canceled by PredictionFuture.cancel()")
        self._error = error
        self._finished.set()
