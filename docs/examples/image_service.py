"""The framework-neutral half of the web service examples.

`fastapi_app.py` and `aiohttp_app.py` serve the same two routes through one shared
`Session`; what does not depend on the web framework lives here, written once:
reading a request into a job, turning predictions and batch items into JSON,
mapping this client's errors to HTTP statuses, and the settings and logging a
production service needs.

Settings, from the environment:

- `IMAGE_SERVICE_DEADLINE`: seconds a `POST /images` may wait for its prediction
  (default 50, below the 60 s read timeout of a typical proxy).
- `IMAGE_SERVICE_GRACE`: seconds a shutdown waits for predictions already created
  before abandoning them (default 20, below Kubernetes' 30 s kill grace).
- `OTEL_EXPORTER_OTLP_ENDPOINT` (and the other standard `OTEL_*` variables, such
  as `OTEL_SERVICE_NAME`): export every prediction's traces and the session's
  metrics over OTLP; see `configure_telemetry`.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import logging
import math
import os
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
    PredictionAbandoned,
    PredictionCanceled,
    PredictionFailed,
    PredictionTimeout,
    RateLimitError,
    typed_input_class,
)

logger = logging.getLogger("image_service")


def _seconds_from_env(name: str, default: float) -> float:
    value = float(os.environ.get(name, default))
    if not 0 < value <= 3600:
        raise ValueError(f"{name}={value!r}: must be more than 0 and at most 3600")
    return value


DEFAULT_MODEL = FluxSchnell.model
MAX_BATCH_SIZE = 500
# A batch streams a line per finished prediction, so its deadline (per prediction)
# may be long; a single prediction answers at once, and a proxy in front gives up
# on a silent reply after its read timeout (nginx and AWS ALB: 60 s). Past that
# the client sees a gateway error although its prediction goes on and is billed,
# so the service's own deadline comes first, and its 504 names the prediction.
MAX_TIMEOUT = 600.0
REQUEST_DEADLINE = _seconds_from_env("IMAGE_SERVICE_DEADLINE", 50.0)
SHUTDOWN_GRACE = _seconds_from_env("IMAGE_SERVICE_GRACE", 20.0)
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
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


def configure_logging(level: int = logging.INFO) -> None:
    """Log lines with their time, level and logger, e.g. the library's warnings."""
    logging.basicConfig(level=level, format=LOG_FORMAT)


def configure_telemetry() -> None:
    """Export traces and metrics over OTLP when `OTEL_EXPORTER_OTLP_ENDPOINT` is set.

    Needs `comet-replicate-async[otel]`, `opentelemetry-sdk` and
    `opentelemetry-exporter-otlp-proto-http`. It sets the global providers, which
    the session made next uses. Run under `opentelemetry-instrument` instead and
    the SDK is configured already: nothing is done here.
    """
    if not os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        return
    try:
        from opentelemetry import metrics, trace
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        otlp = "opentelemetry.exporter.otlp.proto.http"
        spans = importlib.import_module(f"{otlp}.trace_exporter").OTLPSpanExporter()
        points = importlib.import_module(f"{otlp}.metric_exporter").OTLPMetricExporter()
    except ImportError as error:
        logger.warning(
            "OTEL_EXPORTER_OTLP_ENDPOINT is set, but %s: no telemetry", error
        )
        return
    if isinstance(trace.get_tracer_provider(), TracerProvider):
        return  # configured already
    # The resource (service.name, ...) comes from OTEL_SERVICE_NAME and
    # OTEL_RESOURCE_ATTRIBUTES.
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(BatchSpanProcessor(spans))
    trace.set_tracer_provider(tracer_provider)
    reader = PeriodicExportingMetricReader(points)
    metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))


def input_digest(input: Mapping[str, Any]) -> str:
    """A short fingerprint of an input, to find it in logs without logging it."""
    text = json.dumps(input, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


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
    problems = _timeout_problems(timeout, REQUEST_DEADLINE)
    if (prompt is None) == (input is None):
        problems.append("give either 'prompt' or 'input', not both and not neither")
    if problems:
        raise InputValidationError(problems)
    body = {"prompt": prompt} if input is None else dict(input)
    return ImageJob(model_for(model), body, timeout or REQUEST_DEADLINE)


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
    problems = _timeout_problems(timeout, MAX_TIMEOUT)
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


def _timeout_problems(timeout: float | None, longest: float) -> list[str]:
    if timeout is None or 0 < timeout <= longest:
        return []
    return [f"timeout={timeout!r}: must be more than 0 and at most {longest:g}"]


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
    return {"index": item.index, **error_json(item.error)}


def error_json(error: BaseException) -> dict[str, Any]:
    """A failed NDJSON line: the error as HTTP would say it.

    Also the last line of a batch that ended early (the session is shutting down),
    which names no item.
    """
    reply = error_reply(error)
    return {"ok": False, "status": reply.status, **reply.body}


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
        return _ambiguous_reply(error)
    if isinstance(error, PredictionAbandoned):
        return ErrorReply(
            503,
            {
                "error": "abandoned",
                "detail": "the service is shutting down"
                if error.prediction_id is None
                else "the service is shutting down; the prediction may still finish "
                "(and be billed) upstream",
                "prediction_id": error.prediction_id,
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


def _ambiguous_reply(error: AmbiguousSubmitError) -> ErrorReply:
    # What the gateway said (a 5xx with its request id) or nothing (the reply was
    # lost): what CometAPI support needs to find the prediction, and all the
    # caller can reconcile with, since the API cannot list predictions.
    cause = error.__cause__
    upstream = cause if isinstance(cause, APIError) else None
    status = upstream.status_code if upstream else None
    request_id = upstream.request_id if upstream else None
    digest = input_digest(error.input)
    logger.warning(
        "ambiguous create for %s, input %s: upstream status %s, request id %s (%s); "
        "the prediction may exist and be billed",
        error.model,
        digest,
        status,
        request_id,
        type(cause).__name__,
    )
    return ErrorReply(
        502,
        {
            "error": "ambiguous_submit",
            "detail": "the image API may have created the prediction, which may "
            "be billed but cannot be looked up; sending it again may pay twice",
            "upstream_status": status,
            "request_id": request_id,
            "input_digest": digest,
        },
    )


def _reason(prediction: Prediction | None) -> str:
    if prediction is None:
        return "unknown"
    if prediction.error:
        return prediction.error
    return f"status {prediction.status}"
