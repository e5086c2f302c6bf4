from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from comet_replicate_async import (
    APIError,
    AuthenticationError,
    BadRequestError,
    InputValidationError,
    NotFoundError,
    OutputExpiredError,
    PermissionDeniedError,
    Prediction,
    RateLimitError,
    ServerError,
    Status,
    UnexpectedResponseError,
)
from comet_replicate_async._sansio import (
    RawResponse,
    build_create_request,
    build_query_request,
    decipher_response,
    download_error,
)

SCHNELL = "black-forest-labs/flux-schnell"
JSON = {"content-type": "application/json"}


def reply(status: int, body: Any, headers: dict[str, str] | None = None) -> RawResponse:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return RawResponse(status=status, headers=headers or JSON, body=raw)


def comet_error(message: str, code: str = "") -> dict[str, Any]:
    return {
        "error": {
            "message": message,
            "type": "comet_api_error",
            "param": "",
            "code": code,
        }
    }


def test_create_request_puts_parameters_inside_input() -> None:
    spec = build_create_request("black-forest-labs/flux-schnell", {"prompt": "a boat"})

    assert spec.method == "POST"
    assert (
        spec.path == "/replicate/v1/models/black-forest-labs/flux-schnell/predictions"
    )
    assert spec.json_body == {"input": {"prompt": "a boat"}}
    assert "Prefer" not in spec.headers


def test_create_request_with_prefer_wait() -> None:
    spec = build_create_request("a/b", {"prompt": "x"}, prefer_wait=10)

    assert spec.headers["Prefer"] == "wait=10"


def test_request_specs_carry_no_authorization() -> None:
    for spec in (
        build_create_request("a/b", {"prompt": "x"}),
        build_query_request("abc"),
    ):
        assert "Authorization" not in spec.headers


def test_query_request() -> None:
    spec = build_query_request("q4chw5rey9rmt0cww76t4h3ma4")

    assert (spec.method, spec.path) == (
        "GET",
        "/replicate/v1/predictions/q4chw5rey9rmt0cww76t4h3ma4",
    )
    assert spec.json_body is None


@pytest.mark.parametrize(
    "model", ["flux-schnell", "a/b/c", "", "a/", "/b", "a b/c", "a/../b"]
)
def test_bad_model_ids_fail_before_any_request(model: str) -> None:
    with pytest.raises(ValueError, match="owner/name"):
        build_create_request(model, {"prompt": "x"})


@pytest.mark.parametrize("prediction_id", ["", "../x", "a/b", "a?b"])
def test_bad_prediction_ids_fail_before_any_request(prediction_id: str) -> None:
    with pytest.raises(ValueError, match="prediction id"):
        build_query_request(prediction_id)


@pytest.mark.parametrize("status", [200, 201, 202])
def test_any_2xx_prediction_reads(status: int) -> None:
    pred = decipher_response(reply(status, {"id": "abc", "status": "processing"}))

    assert pred.id == "abc"
    assert pred.status is Status.PROCESSING


URL = "https://replicate.delivery/xezq/abc/out-0.webp"
RUNNING = {"id": "abc", "model": "o/m", "status": "processing", "logs": "step 1"}


def test_a_poll_reply_with_nothing_new_for_the_poller_keeps_the_known_state() -> None:
    known = decipher_response(reply(200, RUNNING))

    again = decipher_response(reply(200, {**RUNNING, "logs": "step 2"}), known)

    assert again is known


@pytest.mark.parametrize(
    "change",
    [
        {"status": "succeeded", "output": ["u"]},  # finished
        {"status": "starting"},  # another status
        {"model": "o/other"},  # the known state was a stand-in without the model
    ],
)
def test_a_poll_reply_with_news_is_read_in_full(change: dict[str, Any]) -> None:
    known = decipher_response(reply(200, RUNNING))

    fresh = decipher_response(reply(200, {**RUNNING, **change}), known)

    assert fresh is not known
    assert fresh == decipher_response(reply(200, {**RUNNING, **change}))


def test_data_envelope_is_unwrapped() -> None:
    pred = decipher_response(
        reply(
            200,
            {
                "code": "success",
                "data": {"id": "abc", "status": "succeeded", "output": [URL]},
            },
        )
    )

    assert pred.id == "abc"
    assert pred.output_urls == (URL,)


@pytest.mark.parametrize(
    ("status", "error_class"),
    [
        (400, BadRequestError),
        (401, AuthenticationError),
        (403, PermissionDeniedError),
        (404, NotFoundError),
        (422, BadRequestError),
        (429, RateLimitError),
        (500, ServerError),
        (502, ServerError),
        (503, ServerError),
        (504, ServerError),
        (524, ServerError),
        (418, APIError),
    ],
)
def test_each_error_status_maps_to_its_class_with_the_request_id(
    status: int, error_class: type[APIError]
) -> None:
    body = comet_error("model name is required (request id: 2026031211271825)")

    with pytest.raises(error_class) as caught:
        decipher_response(reply(status, body))

    error = caught.value
    assert type(error) is error_class
    assert error.status_code == status
    assert error.request_id == "2026031211271825"
    assert error.message == "model name is required (request id: 2026031211271825)"
    assert "model name is required" in str(error)


def test_comet_error_code_is_kept() -> None:
    with pytest.raises(ServerError) as caught:
        decipher_response(
            reply(
                500, comet_error("bad input (request id: r1)", code="invalid_request")
            )
        )

    assert caught.value.code == "invalid_request"


def test_replicate_problem_details_are_read() -> None:
    body = {
        "title": "Input validation failed",
        "detail": "prompt is required",
        "status": 422,
    }

    with pytest.raises(BadRequestError) as caught:
        decipher_response(reply(422, body))

    assert caught.value.message == "Input validation failed: prompt is required"


def test_replicate_throttle_body_gives_retry_after() -> None:
    body = {"detail": "Request was throttled. Your rate limit resets in ~30s."}

    with pytest.raises(RateLimitError) as caught:
        decipher_response(reply(429, body))

    assert caught.value.retry_after == 30.0


def test_retry_after_header_wins_over_the_body() -> None:
    body = {"detail": "Request was throttled. Your rate limit resets in ~30s."}

    with pytest.raises(RateLimitError) as caught:
        decipher_response(reply(429, body, {**JSON, "retry-after": "2"}))

    assert caught.value.retry_after == 2.0


def test_request_id_header_is_the_fallback() -> None:
    with pytest.raises(NotFoundError) as caught:
        decipher_response(
            reply(404, {"detail": "Not found."}, {**JSON, "x-request-id": "hdr-1"})
        )

    assert caught.value.request_id == "hdr-1"


def test_plain_text_error_body_falls_back_to_an_excerpt() -> None:
    with pytest.raises(ServerError) as caught:
        decipher_response(
            RawResponse(
                status=502,
                headers={"content-type": "text/plain"},
                body=b"upstream  broke\n",
            )
        )

    assert caught.value.message == "upstream broke"


def test_html_success_reply_is_unexpected() -> None:
    html = b"<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>"

    with pytest.raises(UnexpectedResponseError, match="HTML") as caught:
        decipher_response(
            RawResponse(status=200, headers={"content-type": "text/html"}, body=html)
        )

    assert "502 Bad Gateway" in caught.value.body


def test_truncated_json_is_unexpected() -> None:
    with pytest.raises(UnexpectedResponseError, match="not valid JSON"):
        decipher_response(reply(200, b'{"id": "abc", "status": "succ'))


@pytest.mark.parametrize("body", [[1, 2], "text", {"status": "succeeded"}, {"id": "a"}])
def test_wrong_shape_is_unexpected(body: Any) -> None:
    with pytest.raises(UnexpectedResponseError):
        decipher_response(reply(200, body))


def test_redirect_is_unexpected_and_names_the_location() -> None:
    response = RawResponse(
        status=301, headers={"location": "https://www.cometapi.com/"}, body=b""
    )

    with pytest.raises(UnexpectedResponseError, match="not followed") as caught:
        decipher_response(response)

    assert "https://www.cometapi.com/" in str(caught.value)
    assert caught.value.status_code == 301


def test_long_bodies_are_cut_to_a_short_excerpt() -> None:
    with pytest.raises(UnexpectedResponseError) as caught:
        decipher_response(
            RawResponse(
                status=200,
                headers={"content-type": "text/html"},
                body=b"<p>x</p>" * 10_000,
            )
        )

    assert len(caught.value.body) < 400


@pytest.mark.parametrize(
    ("seconds", "header"),
    [
        (45, "45s"),
        (60, "1m"),
        (300, "5m"),
        (3600, "1h"),
        (3725, "1h2m5s"),
        (2100, "35m"),
        (90.2, "1m31s"),  # rounded up: never before the local deadline
        (1, "5s"),  # Replicate's minimum
    ],
)
def test_create_request_with_cancel_after(seconds: float, header: str) -> None:
    spec = build_create_request(SCHNELL, {"prompt": "x"}, cancel_after=seconds)

    assert spec.headers["Cancel-After"] == header


def test_create_request_without_cancel_after_sends_no_header() -> None:
    assert "Cancel-After" not in build_create_request(SCHNELL, {"prompt": "x"}).headers


@pytest.mark.parametrize("seconds", [0, -3, float("nan"), float("inf")])
def test_cancel_after_must_be_a_positive_finite_duration(seconds: float) -> None:
    with pytest.raises(InputValidationError, match="cancel_after"):
        build_create_request(SCHNELL, {"prompt": "x"}, cancel_after=seconds)


def finished(
    created_at: datetime | None = None, completed_at: datetime | None = None
) -> Prediction:
    return Prediction(
        id="abc123",
        status=Status.SUCCEEDED,
        model=SCHNELL,
        created_at=created_at,
        completed_at=completed_at,
    )


@pytest.mark.parametrize("status", [404, 410])
def test_a_gone_output_file_is_output_expired_with_its_age(status: int) -> None:
    done = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    prediction = finished(created_at=done - timedelta(minutes=1), completed_at=done)

    error = download_error(
        reply(status, b"Not Found"), prediction, now=done + timedelta(minutes=61)
    )

    assert isinstance(error, OutputExpiredError)
    assert (error.prediction_id, error.status_code) == ("abc123", status)
    assert error.age == 61 * 60
    assert "abc123" in str(error)
    assert "3660 s old" in str(error)


def test_output_age_counts_from_creation_without_a_completion_time() -> None:
    created = datetime(2026, 12, 1, 12, 0)  # no zone: read as UTC
    now = datetime(2026, 12, 1, 12, 10, tzinfo=UTC)

    error = download_error(reply(404, b""), finished(created_at=created), now=now)

    assert isinstance(error, OutputExpiredError)
    assert error.age == 600


def test_output_age_is_unknown_without_timestamps() -> None:
    error = download_error(reply(410, b""), finished())

    assert isinstance(error, OutputExpiredError)
    assert error.age is None
    assert "s old" not in str(error)


@pytest.mark.parametrize(("status", "error_class"), [(403, PermissionDeniedError),
                                                      (503, ServerError)])  # fmt: skip
def test_other_download_refusals_keep_their_status_error(
    status: int, error_class: type[APIError]
) -> None:
    assert isinstance(download_error(reply(status, b"no"), finished()), error_class)
