"""The framework-neutral half of the web service examples.

`fastapi_app.py` and `aiohttp_app.py` serve the same two routes through one shared
`Session`; what does not depend on the web framework lives here, written once:
reading a request into a job, turning predictions and batch items into JSON, and
mapping this client's errors to HTTP statuses.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from comet_replicate_async import (
    AmbiguousSubmitError,
    APIConnectionError,
    APIError,
    BatchItem,
    CometReplicateError,
    FluxInput,
    FluxSchnell,
    InputValidationError,
    Prediction,
    PredictionCanceled,
    PredictionFailed,
    PredictionTimeout,
    RateLimitError,
    typed_input_class,
)

DEFAULT_MODEL = FluxSchnell.model
MAX_BATCH_SIZE = 500
MAX_TIMEOUT = 600.0
# Sent when the upstream 429 named no wait: long enough for the session's own
# pause to run out before the caller tries again.
DEFAULT_RETRY_AFTER = 10

Model = str | type[FluxInput]


@dataclass(frozen=True)
class ImageJob:
    """One prediction to run: what `POST /images` asks for."""

    model: Model
    input: dict[str, Any]
    timeout: float | None = None


@dataclass(frozen=True)
class BatchJob:
    """Many predictions of one model: what `POST /batches` asks for."""

    model: Model
    inputs: list[dict[str, Any]]
    timeout: float | None = None


@dataclass(frozen=True)
class ErrorReply:
    """An HTTP error reply, not yet written by any framework."""

    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


def model_for(model_id: str) -> Model:
    """The typed input class of a known FLUX model, else the id itself."""
    # The seven FLUX models are checked by their typed class before anything is
    # sent (and billed); any other "owner/name" passes through as a plain dict.
    return typed_input_class(model_id) or model_id


def image_job(
    *,
    model: str = DEFAULT_MODEL,
    input: Mapping[str, Any] | None = None,
    prompt: str | None = None,
    timeout: float | None = None,
) -> ImageJob:
    """A job from `{"prompt": ...}` or `{"model": ..., "input": {...}}`.

    Raises:
        InputValidationError: neither or both of `prompt` and `input` were given,
            or the timeout is out of range.
    """
    problems = _timeout_problems(timeout)
    if (prompt is None) == (input is None):
        problems.append("give either 'prompt' or 'input', not both and not neither")
    if problems:
        raise InputValidationError(problems)
    body = {"prompt": prompt} if input is None else dict(input)
    return ImageJob(model_for(model), body, timeout)


def batch_job(
    *,
    model: str = DEFAULT_MODEL,
    inputs: Sequence[Mapping[str, Any]] | None = None,
    prompts: Sequence[str] | None = None,
    timeout: float | None = None,
) -> BatchJob:
    """A job from `{"prompts": [...]}` or `{"model": ..., "inputs": [...]}`.

    Raises:
        InputValidationError: neither or both lists were given, the list is empty
            or too long, or the timeout is out of range.
    """
    problems = _timeout_problems(timeout)
    if (prompts is None) == (inputs is None):
        problems.append("give either 'prompts' or 'inputs', not both and not neither")
        items: list[dict[str, Any]] = []
    elif inputs is None:
        items = [{"prompt": prompt} for prompt in prompts or ()]
    else:
        items = [dict(input) for input in inputs]
    if not problems and not 1 <= len(items) <= MAX_BATCH_SIZE:
        problems.append(f"a batch holds 1 to {MAX_BATCH_SIZE} items, got {len(items)}")
    if problems:
        raise InputValidationError(problems)
    return BatchJob(model_for(model), items, timeout)


def image_job_from_json(data: object) -> ImageJob:
    """`image_job` from a decoded JSON body, for frameworks that do not validate it.

    Raises:
        InputValidationError: the body is not an object of the expected fields.
    """
    fields = _fields(
        data,
        model=_is(str),
        prompt=_is(str),
        input=_is(dict),
        timeout=_is_number,
    )
    return image_job(**fields)


def batch_job_from_json(data: object) -> BatchJob:
    """`batch_job` from a decoded JSON body, for frameworks that do not validate it.

    Raises:
        InputValidationError: the body is not an object of the expected fields.
    """
    fields = _fields(
        data,
        model=_is(str),
        prompts=_list_of(str),
        inputs=_list_of(dict),
        timeout=_is_number,
    )
    return batch_job(**fields)


def _fields(data: object, **checks: Callable[[object], str | None]) -> dict[str, Any]:
    """The fields of a JSON object, each checked; null stands for "not given"."""
    if not isinstance(data, dict):
        raise InputValidationError("the body must be a JSON object")
    problems = [f"{name!r}: unknown field" for name in data if name not in checks]
    for name, check in checks.items():
        value = data.get(name)
        wrong = None if value is None else check(value)
        if wrong is not None:
            problems.append(f"{name}={value!r}: must be {wrong}")
    if problems:
        raise InputValidationError(problems)
    return {name: value for name, value in data.items() if value is not None}


def _is(kind: type) -> Callable[[object], str | None]:
    noun = _NOUNS[kind][0]
    return lambda value: None if isinstance(value, kind) else noun


def _list_of(kind: type) -> Callable[[object], str | None]:
    def check(value: object) -> str | None:
        if isinstance(value, list) and all(isinstance(v, kind) for v in value):
            return None
        return f"a list of {_NOUNS[kind][1]}"

    return check


def _is_number(value: object) -> str | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return None
    return "a number"


# The JSON name of each Python type a body may hold: (one, many).
_NOUNS: dict[type, tuple[str, str]] = {
    str: ("a string", "strings"),
    dict: ("an object", "objects"),
}


def _timeout_problems(timeout: float | None) -> list[str]:
    if timeout is None or 0 < timeout <= MAX_TIMEOUT:
        return []
    return [f"timeout={timeout!r}: must be more than 0 and at most {MAX_TIMEOUT:g}"]


def prediction_json(prediction: Prediction) -> dict[str, Any]:
    """What a client of the service needs of a succeeded prediction."""
    metrics = prediction.metrics
    return {
        "id": prediction.id,
        "model": prediction.model,
        "status": str(prediction.status),
        "output": list(prediction.output_urls),
        "predict_time": metrics.predict_time if metrics else None,
    }


def item_json(item: BatchItem) -> dict[str, Any]:
    """One NDJSON line of a batch: the prediction, or the error as HTTP would say it."""
    if item.ok and item.prediction is not None:
        return {"index": item.index, "ok": True, **prediction_json(item.prediction)}
    assert item.error is not None, "a BatchItem holds a prediction or an error"
    reply = error_reply(item.error)
    return {"index": item.index, "ok": False, "status": reply.status, **reply.body}


def error_reply(error: BaseException) -> ErrorReply:
    """The HTTP status and JSON body that tell a caller what went wrong.

    Upstream problems are 5xx (the caller's request was fine; our upstream was
    not), except a rejected input, which the caller can fix (422).
    """
    if isinstance(error, InputValidationError):
        return ErrorReply(
            422,
            {
                "error": "invalid_input",
                "detail": "the input was rejected before anything was sent",
                "problems": list(error.problems),
            },
        )
    if isinstance(error, RateLimitError):
        wait = error.retry_after
        seconds = DEFAULT_RETRY_AFTER if wait is None else max(1, math.ceil(wait))
        return ErrorReply(
            503,
            {"error": "upstream_rate_limited", "detail": "the image API is busy"},
            {"Retry-After": str(seconds)},
        )
    if isinstance(error, PredictionFailed | PredictionCanceled):
        prediction = error.prediction
        return ErrorReply(
            502,
            {
                "error": "prediction_failed"
                if isinstance(error, PredictionFailed)
                else "prediction_canceled",
                "prediction_id": prediction.id if prediction else None,
                "reason": _reason(prediction),
            },
        )
    if isinstance(error, PredictionTimeout):
        return ErrorReply(
            504,
            {
                "error": "prediction_timeout",
                "detail": "no result before the deadline; the prediction may still "
                "finish (and be billed) upstream",
                "prediction_id": error.prediction_id,
                "last_status": None
                if error.last_status is None
                else str(error.last_status),
            },
        )
    if isinstance(error, AmbiguousSubmitError):
        return ErrorReply(
            502,
            {
                "error": "ambiguous_submit",
                "detail": "the image API may have created the prediction, which may "
                "be billed but cannot be looked up; sending it again may pay twice",
            },
        )
    if isinstance(error, APIError):
        return ErrorReply(
            502,
            {
                "error": "upstream_error",
                "detail": error.message,
                "upstream_status": error.status_code,
                "request_id": error.request_id,
            },
        )
    if isinstance(error, APIConnectionError):
        return ErrorReply(
            502,
            {"error": "upstream_unreachable", "detail": "the image API is unreachable"},
        )
    if isinstance(error, CometReplicateError):
        return ErrorReply(502, {"error": "upstream_error", "detail": str(error)})
    # A bug, not an upstream problem: say nothing about internals.
    return ErrorReply(500, {"error": "internal_error"})


def _reason(prediction: Prediction | None) -> str:
    if prediction is None:
        return "unknown"
    if prediction.error:
        return prediction.error
    return f"status {prediction.status}"
