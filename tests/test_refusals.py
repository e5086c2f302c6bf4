"""Refusals read by their code: the table, the envelope, and an unknown model.

Property tests over CometAPI's envelope (`{"error": {"code", "message",
"type"}}`) with any status, any known or unknown code, missing, null and
wrong-typed fields, and bodies that are not JSON: every reply ends in a typed
error, and whether a create may have happened follows the refusal table.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from comet_replicate_async import (
    AmbiguousSubmitError,
    APIError,
    BatchStoppedError,
    ModelNotFoundError,
    NotFoundError,
    RateLimitError,
    UnexpectedResponseError,
)
from comet_replicate_async._refusals import REFUSALS, refusal_for
from comet_replicate_async._retry import (
    create_may_have_happened,
    refusal_of,
    stops_creates,
)
from comet_replicate_async._sansio import (
    RawResponse,
    decipher_response,
    error_from_response,
)
from comet_replicate_async.testing import FakeCometAPI, Fault

from helpers import SCHNELL, TYPO, session_for

# CometAPI's real reply to an unknown model (the request id shortened).
MODEL_NOT_FOUND_BODY = {
    "error": {
        "code": "model_not_found",
        "message": f"no available channel for group default and model {TYPO} "
        "(distributor) (request id: 20260205132859798638387SIHCnxzJ)",
        "type": "comet_api_error",
    }
}
FAILURES = Path(__file__).resolve().parents[1] / "docs" / "failures.md"

codes = st.sampled_from(sorted(REFUSALS)) | st.text(max_size=20)
odd_values = st.none() | st.integers() | st.booleans() | st.lists(st.integers())
messages = (
    st.sampled_from([
        "no available channel for group default and model acme/x (distributor)",
        "model name is required (request id: 2026)",
        "",
    ])
    | st.text(max_size=60)
)  # fmt: skip
envelopes = st.fixed_dictionaries(
    {},
    optional={
        "code": codes | odd_values,
        "message": messages | odd_values,
        "type": st.sampled_from(["comet_api_error", "image_generation_user_error"])
        | st.text(max_size=20)
        | odd_values,
        "param": st.text(max_size=5),
    },
)
bodies = (
    envelopes.map(lambda error: json.dumps({"error": error}).encode())
    | st.sampled_from([b"", b"<html>502 Bad Gateway</html>", b"{", b"null", b"[]"])
    | st.binary(max_size=40)
)
error_statuses = st.sampled_from([400, 401, 402, 403, 404, 409, 413, 422, 429])
error_statuses |= st.integers(500, 599) | st.integers(400, 499)


@given(status=error_statuses, body=bodies)
def test_every_refusal_is_a_typed_error_decided_by_the_table(
    status: int, body: bytes
) -> None:
    error = error_from_response(RawResponse(status, {}, body))

    assert isinstance(error, APIError)
    assert error.status_code == status
    row = refusal_of(error)
    if row is not None and row.created_nothing:
        assert not create_may_have_happened(error)
    if row is not None and row.action == "stop":
        assert stops_creates(error)
    if row is not None and row.action == "retry":
        assert isinstance(error, RateLimitError)
    if row is None:
        # No row: the status decides, as it always did.
        assert create_may_have_happened(error) == (status >= 500)


@given(status=st.sampled_from([200, 201, 202]), body=bodies)
def test_an_envelope_sent_with_a_2xx_is_an_error_too(status: int, body: bytes) -> None:
    with pytest.raises(APIError) as raised:
        decipher_response(RawResponse(status, {}, body))

    error = raised.value
    row = refusal_of(error)
    if row is not None and row.created_nothing:
        assert not create_may_have_happened(error)
    else:
        # Not a prediction, and nothing proves it created none: ambiguous.
        assert isinstance(error, UnexpectedResponseError)
        assert create_may_have_happened(error)


@given(code=st.sampled_from(sorted(REFUSALS)), status=error_statuses)
def test_each_code_of_the_table_is_read_whatever_the_status(
    code: str, status: int
) -> None:
    row = REFUSALS[code]
    body = {"error": {"message": "refused", "type": "comet_api_error", "code": code}}
    if row.signal == "type":
        body = {"error": {"message": "refused", "type": code, "code": ""}}
    elif row.signal == "message":
        body = {"error": {"message": f"{code} for model acme/x", "code": None}}

    error = error_from_response(RawResponse(status, {}, json.dumps(body).encode()))

    assert refusal_of(error) == row
    assert create_may_have_happened(error) is (
        not row.created_nothing and status >= 500
    )


def test_cometapis_reply_to_an_unknown_model_is_a_model_not_found_error() -> None:
    body = json.dumps(MODEL_NOT_FOUND_BODY).encode()
    error = error_from_response(RawResponse(503, {}, body))

    assert isinstance(error, ModelNotFoundError)
    assert isinstance(error, NotFoundError)
    assert error.model == TYPO
    assert error.request_id == "20260205132859798638387SIHCnxzJ"
    assert not create_may_have_happened(error)
    assert stops_creates(error)
    assert TYPO in str(error)


def test_the_message_alone_says_no_channel_when_the_code_is_missing() -> None:
    body = {"error": {"message": "No available channel for model acme/x", "code": ""}}
    error = error_from_response(RawResponse(500, {}, json.dumps(body).encode()))

    assert isinstance(error, ModelNotFoundError)
    assert error.model == "acme/x"


def test_a_user_error_sent_as_500_created_nothing() -> None:
    body = {
        "error": {
            "message": "invalid aspect ratio",
            "type": "image_generation_user_error",
            "code": "invalid_value",
        }
    }
    error = error_from_response(RawResponse(500, {}, json.dumps(body).encode()))

    assert not create_may_have_happened(error)
    assert not stops_creates(error)


def test_a_502_page_with_no_envelope_may_have_created() -> None:
    error = error_from_response(RawResponse(502, {}, b"<html>502 Bad Gateway</html>"))

    assert refusal_of(error) is None
    assert create_may_have_happened(error)


def test_no_row_is_found_by_accident() -> None:
    assert refusal_for(None, None, "bad gateway") is None
    assert refusal_for("", "comet_api_error", "upstream error") is None
    assert refusal_for("something_new", None, "") is None


def test_the_failures_page_publishes_the_table_as_the_code_has_it() -> None:
    page = FAILURES.read_text(encoding="utf-8")
    rows = {
        match.group(1): [cell.strip() for cell in match.group(2).split("|")]
        for match in re.finditer(r"^\| `([^`]+)` \|(.*)\|$", page, re.MULTILINE)
    }
    for code, refusal in REFUSALS.items():
        assert code in rows, f"{code} is not on {FAILURES.name}"
        _signal, _meaning, nothing, action, _source = rows[code]
        assert nothing == ("yes" if refusal.created_nothing else "no"), code
        assert action == refusal.action, code


# -- an unknown model, against the fake --------------------------------------


@pytest.mark.anyio
async def test_a_batch_for_an_unknown_model_stops_at_the_first_refusal() -> None:
    refusal = Fault.status(503, body=MODEL_NOT_FOUND_BODY)
    inputs = [{"prompt": f"p{n}"} for n in range(200)]
    async with FakeCometAPI() as fake:
        fake.script("create", *[refusal] * 200)
        async with session_for(fake, max_concurrency=8) as session:
            items = await session.gather(TYPO, inputs, timeout=30)

    assert fake.stats.count("create") <= 8
    assert not any(isinstance(item.error, AmbiguousSubmitError) for item in items)
    first = [item.error for item in items if isinstance(item.error, ModelNotFoundError)]
    assert first
    assert first[0].model == TYPO
    assert first[0].suggestion == SCHNELL
    assert "did you mean black-forest-labs/flux-schnell?" in str(first[0])
    others = [item for item in items if not isinstance(item.error, ModelNotFoundError)]
    assert all(isinstance(item.error, BatchStoppedError) for item in others)


@pytest.mark.anyio
async def test_create_names_the_model_asked_for_and_a_near_miss() -> None:
    body: dict[str, Any] = {"error": {"code": "model_not_found", "message": "no"}}
    async with FakeCometAPI() as fake:
        fake.script("create", Fault.status(503, body=body))
        async with session_for(fake) as session:
            with pytest.raises(ModelNotFoundError) as raised:
                await session.create(
                    "black-forest-labs/flux-kontext-mx", {"prompt": "a"}
                )

    assert raised.value.model == "black-forest-labs/flux-kontext-mx"
    assert raised.value.suggestion == "black-forest-labs/flux-kontext-max"
