"""Every error this package raises derives from one base.

```
CometReplicateError
├── ConfigurationError            missing key, bad base URL
├── InputValidationError          (also ValueError) raised before any request is sent
├── APIError                      status_code, message, code, request_id, body
│   ├── BadRequestError           400 (and 422)
│   ├── AuthenticationError       401
│   ├── PermissionDeniedError     403
│   ├── NotFoundError             404
│   │   └── ModelNotFoundError    the gateway serves no such model (CometAPI: 503 model_not_found)
│   ├── RateLimitError            429, with .retry_after
│   ├── ServerError               5xx
│   └── UnexpectedResponseError   HTML, redirects, malformed JSON, wrong shape
├── APIConnectionError            the request or its reply was lost on the wire
│   └── APITimeoutError           connect or read timeout
├── AmbiguousSubmitError          a create that may or may not have happened
├── BatchStoppedError             a fatal error stopped the batch: nothing was sent for this input
├── BudgetExceededError           the cost cap is reached: nothing was sent for this input
├── JournalError                  a journal file that is not ours, too new, or cannot be written; names the file
├── JournalInUse                  another run holds the batch journal ("in use by pid N on HOST since T")
├── JournalInputChanged           a journal's recorded position holds another input: raised before any create
├── OutputExpiredError            an output file answered 404 or 410 (output files expire)
└── PredictionError               .prediction
    ├── PredictionFailed          status "failed"
    ├── PredictionCanceled        status "canceled" or "aborted"
    ├── PredictionTimeout         the local deadline passed; carries the id and last status
    └── PredictionAbandoned       local tracking stopped (session closing, batch stopped)
```

No message here ever contains the API key: errors are built from what the server
sent back and from request paths, never from request headers.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ._values import Prediction, Status

__all__ = [
    "APIConnectionError",
    "APIError",
    "APITimeoutError",
    "AmbiguousSubmitError",
    "AuthenticationError",
    "BadRequestError",
    "BatchStoppedError",
    "BudgetExceededError",
    "CometReplicateError",
    "ConfigurationError",
    "InputValidationError",
    "JournalError",
    "JournalInUse",
    "JournalInputChanged",
    "ModelNotFoundError",
    "NotFoundError",
    "OutputExpiredError",
    "PermissionDeniedError",
    "PredictionAbandoned",
    "PredictionCanceled",
    "PredictionError",
    "PredictionFailed",
    "PredictionTimeout",
    "RateLimitError",
    "ServerError",
    "UnexpectedResponseError",
    "deadline_passed",
    "error_for_status",
]


class CometReplicateError(Exception):
    """Base class of every error raised by comet_replicate_async."""


class ConfigurationError(CometReplicateError):
    """The session cannot be configured: no API key, or a base URL that is not HTTP(S)."""


class InputValidationError(CometReplicateError, ValueError):
    """The input was rejected locally, before any request was sent.

    `problems` lists every problem found, each naming the field, the value given and
    what is allowed, so one round of fixes is enough.
    """

    def __init__(self, problems: list[str] | str) -> None:
        self.problems: tuple[str, ...] = (
            (problems,) if isinstance(problems, str) else tuple(problems)
        )
        super().__init__("; ".join(self.problems))


class APIError(CometReplicateError):
    """The API answered with an error status or a reply that cannot be read.

    Attributes:
        status_code: the HTTP status of the reply.
        message: the server's message (CometAPI's `error.message`, Replicate's
            `detail`), or a short excerpt of the body.
        code: CometAPI's `error.code` when it sent one (e.g. `"invalid_request"`).
        request_id: the id CometAPI puts in its messages, for support tickets.
        body: a short excerpt of the raw body.
        retry_after: seconds the server asked us to wait, if it said.
        error_type: CometAPI's `error.type` when it sent one (e.g.
            `"comet_api_error"`).
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        code: str | None = None,
        request_id: str | None = None,
        body: str = "",
        retry_after: float | None = None,
        error_type: str | None = None,
    ) -> None:
        self.message = message
        self.status_code = status_code
        self.code = code
        self.request_id = request_id
        self.body = body
        self.retry_after = retry_after
        self.error_type = error_type
        text = f"HTTP {status_code}: {message}"
        if request_id and request_id not in message:
            text += f" (request id: {request_id})"
        super().__init__(text)


class BadRequestError(APIError):
    """400 or 422: the server refused the request body. Fix the input; never retried."""


class AuthenticationError(APIError):
    """401: the API key is missing, malformed or revoked. Never retried."""


class PermissionDeniedError(APIError):
    """403: access refused (CometAPI's WAF can also answer this). Never retried."""


class NotFoundError(APIError):
    """404: no such prediction, model or path."""


class ModelNotFoundError(NotFoundError):
    """The gateway serves no such model: nothing was created, and a batch stops.

    CometAPI answers an unknown model with 503 and the code `model_not_found`
    ("no available channel for ... model X"), not with 404.

    Attributes:
        model: the model asked for (None when neither the request nor the reply
            named it).
        suggestion: the FLUX model it is a near miss of, if any ("did you mean
            black-forest-labs/flux-schnell?").
    """

    def __init__(
        self,
        message: str,
        *,
        model: str | None = None,
        suggestion: str | None = None,
        **details: Any,
    ) -> None:
        super().__init__(message, **details)
        self.model = model
        self.suggestion = suggestion

    def asked_for(self, model: str, suggestion: str | None) -> None:
        """Name the model the request asked for, and its near miss."""
        self.model = model
        self.suggestion = suggestion

    def __str__(self) -> str:
        model = self.model or "asked for"
        text = f"the gateway does not serve the model {model}"
        if self.suggestion:
            text += f" (did you mean {self.suggestion}?)"
        return f"{text}; nothing was created (HTTP {self.status_code}: {self.message})"


class RateLimitError(APIError):
    """429: throttled. `retry_after` holds the wait the server asked for, if any."""


class ServerError(APIError):
    """5xx: a gateway or upstream failure."""


class UnexpectedResponseError(APIError):
    """A reply that is not the JSON we expect: HTML, a redirect, malformed JSON or
    the wrong shape. Redirects are never followed on API calls."""


class APIConnectionError(CometReplicateError):
    """The request or its reply was lost on the wire.

    Attributes:
        request_sent: False only when the connection failed before any byte of the
            request left this process, so the server provably did nothing.
    """

    def __init__(self, message: str, *, request_sent: bool) -> None:
        self.request_sent = request_sent
        super().__init__(message)


class APITimeoutError(APIConnectionError):
    """A connect or read timeout. A read timeout means the request was sent."""


class AmbiguousSubmitError(CometReplicateError):
    """A create request was sent but its outcome is unknown.

    The prediction may exist and may be billed; CometAPI offers no way to list
    predictions, so it cannot be found again. Sending the same input again may pay
    twice: do that only on purpose (`RetryPolicy(retry_ambiguous_creates=True)`).
    The underlying error is `__cause__`.
    """

    def __init__(self, model: str, input: Mapping[str, Any], cause: Exception) -> None:
        self.model = model
        self.input = input
        super().__init__(
            f"create for {model} may or may not have happened ({cause}); "
            "the prediction may exist and be billed, and CometAPI cannot list it. "
            "Resubmitting may pay twice."
        )


class JournalError(CometReplicateError):
    """A journal file that cannot be used: not an SQLite database, not a journal
    of this client, written by a newer version, or it cannot be written (full
    disk, no permission). The message names the file; an unusable file is left
    as it was.

    Attributes:
        path: the journal file.
        while_writing: True when a write failed during a run (a rerun resumes
            once the cause is fixed), False when the file was refused on opening.
    """

    def __init__(self, message: str, *, path: str, while_writing: bool = False) -> None:
        self.path = path
        self.while_writing = while_writing
        super().__init__(message)


class JournalInUse(CometReplicateError):
    """Another run holds this batch journal; one run at a time drives a journal."""


class JournalInputChanged(CometReplicateError):
    """A position the journal recorded holds a different input now.

    Raised before any create: a journal belongs to one batch of inputs.

    Attributes:
        position: the first recorded position whose input differs or is missing
            (None when the journal was refused for another reason).
        recorded_model: the model the journal recorded there, when the input
            is the same but runs on another model now (None otherwise).
    """

    def __init__(
        self,
        message: str,
        position: int | None = None,
        *,
        recorded_model: str | None = None,
    ) -> None:
        super().__init__(message)
        self.position = position
        self.recorded_model = recorded_model


class BatchStoppedError(CometReplicateError):
    """This input was never sent: an earlier create of its batch failed fatally.

    A wrong key (401), a forbidden model (403), a model path that does not exist
    (404) or a quota or billing refusal would fail every create alike, so the batch
    stops creating. `reason` is that first error (also `__cause__`).
    """

    def __init__(self, reason: CometReplicateError) -> None:
        self.reason = reason
        self.__cause__ = reason
        super().__init__(
            f"nothing was sent for this input: the batch stopped creating after {reason}"
        )


class BudgetExceededError(CometReplicateError):
    """The cost cap is reached: nothing was sent for this input.

    Attributes:
        model: the model the input was for.
        price: what its create would have cost, in US dollars.
        cap: the cap, in US dollars.
        committed: dollars already spent or reserved when the create was refused.
    """

    def __init__(
        self, model: str, *, price: float, cap: float, committed: float
    ) -> None:
        self.model = model
        self.price = price
        self.cap = cap
        self.committed = committed
        super().__init__(
            f"cost cap of ${cap:.4f} reached (${committed:.4f} spent or reserved; "
            f"a create of {model} costs ${price:.4f}): nothing was sent for this input"
        )


class OutputExpiredError(CometReplicateError):
    """An output file answered 404 or 410: it was deleted, most likely because it
    expired (Replicate deletes output files after an hour, BFL's links expire after
    about ten minutes). Download outputs as soon as their prediction succeeds.

    Attributes:
        prediction_id: the prediction the file belongs to.
        status_code: 404 or 410.
        age: seconds between the prediction's completion (else its creation) and
            the refused download; None when the prediction carries no timestamp.
    """

    def __init__(
        self, prediction_id: str, *, status_code: int, age: float | None
    ) -> None:
        self.prediction_id = prediction_id
        self.status_code = status_code
        self.age = age
        how_old = "" if age is None else f", output {age:.0f} s old"
        super().__init__(
            f"an output of prediction {prediction_id} is gone "
            f"(HTTP {status_code}{how_old}); output files expire: download them "
            "as soon as the prediction succeeds"
        )


class PredictionError(CometReplicateError):
    """The prediction ended without succeeding.

    `prediction` is its last known state: always set for `PredictionFailed` and
    `PredictionCanceled`; None for a `PredictionTimeout` whose create never answered.
    """

    def __init__(self, message: str, prediction: Prediction | None) -> None:
        self.prediction = prediction
        super().__init__(message)


class PredictionFailed(PredictionError):
    """The prediction's status is `failed`; its `error` says why."""


class PredictionCanceled(PredictionError):
    """The prediction's status is `canceled` or `aborted`."""


class _TrackingStopped(PredictionError):
    """Only local tracking stopped: `prediction_id` and `last_status` say where the
    prediction stood (both None when nothing was created)."""

    def __init__(self, message: str, prediction: Prediction | None) -> None:
        super().__init__(message, prediction)
        self.prediction_id: str | None = prediction.id if prediction else None
        self.last_status: Status | None = prediction.status if prediction else None


class PredictionTimeout(_TrackingStopped):
    """The local deadline passed before the prediction finished.

    The remote prediction carries on and is billed; only local tracking stopped.
    `prediction_id` and `last_status` say where it stood.
    """


class PredictionAbandoned(_TrackingStopped):
    """Local tracking stopped before the prediction finished: the session closed
    on an error, or the batch it belonged to was stopped.

    The remote prediction, if it was created, carries on and is billed:
    `prediction_id` (None when nothing was created) and `last_status` say where it
    stood; another session's `wait(prediction_id)` picks it up again.
    """


def error_for_status(prediction: Prediction) -> PredictionError | None:
    """The error a finished prediction's status stands for; None if it succeeded."""
    status = prediction.status
    if status == Status.SUCCEEDED:
        return None
    if status == Status.FAILED:
        return PredictionFailed(
            f"prediction {prediction.id} failed: {prediction.error or 'no reason given'}",
            prediction,
        )
    return PredictionCanceled(f"prediction {prediction.id} was {status}", prediction)


def deadline_passed(prediction: Prediction) -> PredictionTimeout:
    """The error for a prediction still running when its local deadline passed."""
    return PredictionTimeout(
        f"prediction {prediction.id} did not finish before its deadline "
        f"(last status: {prediction.status}); it may still run and be billed",
        prediction,
    )
