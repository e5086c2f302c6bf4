"""A create sent from a task of the session, so that no cancellation loses its id.

The caller hands each create attempt to a task in the session's task group and
waits for the answer. Cancelling the caller ends its wait at once; the task, if
it has sent the create, finishes it and logs the id (with how to pick it up
again), so a prediction that is billed is never lost. A task that has not sent
the create when its caller leaves sends nothing.
"""

from __future__ import annotations

import asyncio
import logging

import attrs

from ._batch import log_abandoned
from ._exceptions import CometReplicateError
from ._retry import create_may_have_happened
from ._values import Prediction

__all__ = ["CreateHandoff"]

logger = logging.getLogger("comet_replicate_async")


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
