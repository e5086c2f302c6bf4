"""Pure request building and response reading: no I/O, no aiohttp.

`build_create_request` and `build_query_request` say what to send;
`decipher_response` turns what came back into a `Prediction` or raises the
matching `APIError`. The API key is not part of a `RequestSpec`: the transport adds
the Authorization header at the last moment, so a spec can be logged or shown.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import attrs
import cattrs

from ._converters import structure_prediction
from ._exceptions import (
    APIError,
    AuthenticationError,
    BadRequestError,
    CometReplicateError,
    InputValidationError,
    ModelNotFoundError,
    NotFoundError,
    OutputExpiredError,
    PermissionDeniedError,
    RateLimitError,
    ServerError,
    UnexpectedResponseError,
)
from ._refusals import NOT_SERVED, model_in_message, refusal_for
from ._retry import retry_after_from_response
from ._values import Prediction

__all__ = [
    "RawResponse",
    "RequestSpec",
    "build_create_request",
    "build_query_request",
    "cancel_after_header",
    "decipher_response",
    "download_error",
    "error_from_response",
    "excerpt",
    "validate_model_id",
]

logger = logging.getLogger("comet_replicate_async")

_MODEL_ID = re.compile(r"^[a-z0-9][a-z0-9._-]*/[a-z0-9][a-z0-9._-]*$", re.IGNORECASE)
# URL-safe (base64url's alphabet): the id goes into a query path as it is.
_PREDICTION_ID = re.compile(r"[A-Za-z0-9_-]+")
_REQUEST_ID = re.compile(r"\(request id: ([^)\s]+)\)")
_EXCERPT_CHARS = 300
#: Replicate refuses a `Cancel-After` under 5 seconds.
_MIN_CANCEL_AFTER = 5


@attrs.frozen
class RequestSpec:
    """What to send. `kind` is `"create"` or `"query"`; `path` starts with `/`.

    `authenticated` is False for a public route (the price catalogue): the
    transport then sends no Authorization header.
    """

    kind: str
    method: str
    path: str
    headers: Mapping[str, str] = attrs.field(factory=dict)
    json_body: Mapping[str, Any] | None = None
    authenticated: bool = True


@attrs.frozen
class RawResponse:
    """What came back: status, headers (lower-cased names) and the raw body."""

    status: int
    headers: Mapping[str, str]
    body: bytes


def validate_model_id(model: str) -> tuple[str, str]:
    """Split `"owner/name"`, or raise `InputValidationError` naming what is wrong."""
    if not isinstance(model, str) or not _MODEL_ID.match(model):
        raise InputValidationError(
            f"model must be 'owner/name' (e.g. 'black-forest-labs/flux-schnell'), "
            f"got {model!r}"
        )
    owner, name = model.split("/")
    return owner, name


def build_create_request(
    model: str,
    input: Mapping[str, Any],
    *,
    prefer_wait: int | None = None,
    cancel_after: float | None = None,
) -> RequestSpec:
    """The create call: `POST /replicate/v1/models/{owner}/{name}/predictions`.

    `cancel_after` (seconds) asks the server to stop the prediction that long after
    its creation, with Replicate's `Cancel-After` header (see `cancel_after_header`).
    """
    owner, name = validate_model_id(model)
    if not isinstance(input, Mapping):
        raise InputValidationError(
            f"input must be a mapping of parameters, got {type(input).__name__}"
        )
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if prefer_wait is not None:
        headers["Prefer"] = f"wait={prefer_wait}"
    if cancel_after is not None:
        headers["Cancel-After"] = cancel_after_header(cancel_after)
    return RequestSpec(
        kind="create",
        method="POST",
        path=f"/replicate/v1/models/{owner}/{name}/predictions",
        headers=headers,
        json_body={"input": dict(input)},
    )


def cancel_after_header(seconds: float) -> str:
    """Replicate's `Cancel-After` duration for a deadline `seconds` from now.

    The format is whole units with suffixes (`45s`, `5m`, `1h2m5s`). Fractions are
    rounded up and anything under Replicate's minimum of 5 s is raised to it: the
    server must never stop a prediction before the local deadline gives it up.
    """
    if not math.isfinite(seconds) or seconds <= 0:
        raise InputValidationError(
            f"cancel_after must be a positive number of seconds, got {seconds!r}"
        )
    rest = max(_MIN_CANCEL_AFTER, math.ceil(seconds))
    hours, rest = divmod(rest, 3600)
    minutes, rest = divmod(rest, 60)
    parts = [(hours, "h"), (minutes, "m"), (rest, "s")]
    return "".join(f"{amount}{unit}" for amount, unit in parts if amount)


def build_query_request(prediction_id: str) -> RequestSpec:
    """The query call: `GET /replicate/v1/predictions/{id}`."""
    if not _is_prediction_id(prediction_id):
        raise InputValidationError(f"not a prediction id: {prediction_id!r}")
    return RequestSpec(
        kind="query",
        method="GET",
        path=f"/replicate/v1/predictions/{prediction_id}",
        headers={"Accept": "application/json"},
    )


def excerpt(body: bytes) -> str:
    """A short, printable start of a body for error messages."""
    text = body[: _EXCERPT_CHARS * 4].decode("utf-8", errors="replace")
    text = " ".join(text.split())
    if len(text) > _EXCERPT_CHARS:
        return text[:_EXCERPT_CHARS] + "…"
    return text


def decipher_response(
    response: RawResponse,
    previous: Prediction | None = None,
    *,
    asked_id: str | None = None,
) -> Prediction:
    """Read a create or query reply into a `Prediction`, or raise its error.

    A create reply (no `previous`, no `asked_id`) must carry a usable id: a
    non-empty string of URL-safe characters, which a later query can ask for. A
    query reply is about the id asked for (`asked_id`, else `previous.id`): one
    that names another id, or none, is read as the prediction asked for, with a
    WARNING naming both, so that polling it never stops.

    `previous` is the state already known of a prediction being polled. A reply
    that reports it unfinished, in the same status, is answered with `previous`
    itself: nothing a waiter or the poll schedule uses has changed, and building a
    new value for every such poll was a tenth of the poller's work.

    Raises:
        APIError: a subclass chosen by status; `UnexpectedResponseError` for a
            redirect, a success reply that is not a prediction object, or a create
            reply without a usable id.
    """
    if not 200 <= response.status < 300:
        raise error_from_response(response)
    asked_id = asked_id or (previous.id if previous is not None else None)
    data = _decode_json(response, asked_id)
    if not isinstance(data, Mapping):
        raise _unexpected(response, "the reply is not a JSON object", asked_id)
    data = _unwrap_envelope(data)
    if "id" not in data and isinstance(data.get("error"), Mapping):
        _raise_refusal(response)
    if previous is not None and _still_unfinished_as(data, previous):
        return previous
    if asked_id is None:
        if not _is_prediction_id(data.get("id")):
            raise _unexpected(response, "the reply has no usable prediction id")
    elif data.get("id") != asked_id:
        if data.get("id") is not None:
            logger.warning(
                "asked for prediction %s, the reply names %r: read as %s",
                asked_id,
                data.get("id"),
                asked_id,
                extra={"prediction_id": asked_id},
            )
        data = {**data, "id": asked_id}
    try:
        return structure_prediction(data)
    except Exception as exc:  # whatever the reply holds, it is this reply's error
        reason = "; ".join(_describe_structure_error(exc))
        raise _unexpected(
            response, f"the reply is not a prediction ({reason})", asked_id
        ) from exc


def _raise_refusal(response: RawResponse) -> None:
    """Raise the refusal an error envelope sent with a 2xx stands for, when its
    row proves that nothing was created; otherwise the reply stays unreadable
    (and a create ambiguous)."""
    error = error_from_response(response)
    refusal = refusal_for(error.code, error.error_type, error.message)
    if refusal is not None and refusal.created_nothing:
        raise error


def _is_prediction_id(value: object) -> bool:
    return isinstance(value, str) and _PREDICTION_ID.fullmatch(value) is not None


def error_from_response(response: RawResponse) -> APIError:
    """The `APIError` that an error status (or a redirect) stands for."""
    status = response.status
    if 300 <= status < 400:
        location = response.headers.get("location", "")
        return _unexpected(
            response,
            f"redirect to {location or 'an unnamed location'} not followed; "
            "check the base URL",
        )
    message, code, error_type = _error_message(response)
    details: dict[str, Any] = {
        "status_code": status,
        "code": code,
        "request_id": _request_id(message) or response.headers.get("x-request-id"),
        "body": excerpt(response.body),
        "retry_after": retry_after_from_response(response.headers, message),
        "error_type": error_type,
    }
    # The envelope's code decides before the status does (`_refusals.py`).
    refusal = refusal_for(code, error_type, message)
    if refusal is not None and refusal.code in NOT_SERVED:
        return ModelNotFoundError(message, model=model_in_message(message), **details)
    if refusal is not None and refusal.action == "retry":
        return RateLimitError(message, **details)
    return _class_for_status(status)(message, **details)


def download_error(
    response: RawResponse, prediction: Prediction, *, now: datetime | None = None
) -> CometReplicateError:
    """The error for a refused download of one of `prediction`'s output files.

    404 and 410 mean the file is gone (output files expire): `OutputExpiredError`,
    with the output's age counted from the prediction's completion, else its
    creation, to `now`. Any other status is read as `error_from_response` does.
    """
    if response.status not in (404, 410):
        return error_from_response(response)
    born = prediction.completed_at or prediction.created_at
    age = None
    if born is not None:
        now = now or datetime.now(UTC)
        if born.tzinfo is None:  # replies without a zone are read as UTC
            born = born.replace(tzinfo=UTC)
        age = max(0.0, (now - born).total_seconds())
    return OutputExpiredError(prediction.id, status_code=response.status, age=age)


def _class_for_status(status: int) -> type[APIError]:
    by_status: dict[int, type[APIError]] = {
        400: BadRequestError,
        401: AuthenticationError,
        403: PermissionDeniedError,
        404: NotFoundError,
        422: BadRequestError,
        429: RateLimitError,
    }
    if status in by_status:
        return by_status[status]
    if status >= 500:
        return ServerError
    return APIError


def _error_message(response: RawResponse) -> tuple[str, str | None, str | None]:
    """The message, code and type of an error reply.

    CometAPI's `{"error": {...}}` first, then Replicate's `{"detail", "title"}`,
    then the text. Any field may be missing, null or of another type: a code
    that is a number is read as its text, anything else unusable as absent.
    """
    try:
        data = json.loads(response.body)
    except (ValueError, RecursionError):
        data = None
    if isinstance(data, Mapping):
        error = data.get("error")
        if isinstance(error, Mapping):
            code, kind = _text(error.get("code")), _text(error.get("type"))
            message = error.get("message")
            if isinstance(message, str) and message:
                return message, code, kind
            if code or kind:
                fallback = excerpt(response.body) or f"status {response.status}"
                return fallback, code, kind
        if isinstance(error, str) and error:
            return error, None, None
        detail, title = data.get("detail"), data.get("title")
        if isinstance(detail, str) and detail:
            text = f"{title}: {detail}" if isinstance(title, str) else detail
            return text, None, None
        if isinstance(title, str) and title:
            return title, None, None
        if isinstance(data.get("message"), str):
            return data["message"], None, None
    text = excerpt(response.body) or f"empty reply with status {response.status}"
    return text, None, None


def _text(value: object) -> str | None:
    """An envelope field as text: a non-empty string, or a number's digits."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | str) and str(value):
        return str(value)
    return None


def _request_id(message: str) -> str | None:
    match = _REQUEST_ID.search(message)
    return match.group(1) if match else None


def _decode_json(response: RawResponse, asked_id: str | None) -> Any:
    content_type = response.headers.get("content-type", "")
    if "html" in content_type:
        raise _unexpected(response, "got HTML instead of JSON", asked_id)
    try:
        return json.loads(response.body)
    except (ValueError, RecursionError):  # RecursionError: absurdly deep nesting
        raise _unexpected(response, "the reply is not valid JSON", asked_id) from None


def _still_unfinished_as(data: Mapping[str, Any], previous: Prediction) -> bool:
    # A Status compares equal to its text. The model is compared too, so that a
    # stand-in made from a bare id (which has none) is replaced by the real state.
    return (
        not previous.done
        and data.get("status") == previous.status
        and data.get("id") == previous.id
        and data.get("model") == previous.model
    )


def _unwrap_envelope(data: Mapping[str, Any]) -> Mapping[str, Any]:
    # Some gateways wrap the prediction as {"data": {...}}, sometimes twice.
    while "id" not in data and isinstance(data.get("data"), Mapping):
        data = data["data"]
    return data


def _unexpected(
    response: RawResponse, reason: str, prediction_id: str | None = None
) -> UnexpectedResponseError:
    if prediction_id is not None:
        reason = f"prediction {prediction_id}: {reason}"
    body = excerpt(response.body)
    message = f"{reason}: {body}" if body else reason
    return UnexpectedResponseError(
        message,
        status_code=response.status,
        request_id=response.headers.get("x-request-id"),
        body=body,
    )


def _describe_structure_error(exc: Exception) -> list[str]:
    if isinstance(exc, cattrs.BaseValidationError):
        return cattrs.transform_error(exc)
    return [str(exc)]
