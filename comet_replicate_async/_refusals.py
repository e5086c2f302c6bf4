"""The gateway's refusals read by their code: one table, pure.

CometAPI answers an error with an envelope, `{"error": {"code", "message",
"type"}}`, and the code says more than the HTTP status: an unknown model is a
503 there, and a user error can be a 500. `REFUSALS` says, for each code the
client knows, what it means, whether it proves that nothing was created, and
what the client does. A reply whose code is not in the table is decided by its
status, as before (`_retry.py`). The docs publish this table
(`docs/failures.md`), and a test keeps the two equal.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Final, Literal

import attrs

__all__ = [
    "MODEL_NOT_FOUND",
    "NOT_SERVED",
    "REFUSALS",
    "Action",
    "Refusal",
    "model_in_message",
    "refusal_for",
]

#: What the client does with a refused request:
#: - "retry": nothing was created; retried as a 429 is, until the deadline.
#: - "stop": nothing was created, and no other create can succeed: the batch
#:   stops creating (as for a 401 or a 404).
#: - "fail": nothing was created; this input fails, never retried (fix it).
#: - "ambiguous": the request may have reached the model: a create is not
#:   retried and ends `AmbiguousSubmitError`; a query is retried.
Action = Literal["retry", "stop", "fail", "ambiguous"]

MODEL_NOT_FOUND: Final = "model_not_found"

# Where each row comes from. `§` are sections of the project's API research
# notes (CometAPI's error page, its update sections); new-api is the open
# gateway whose envelope CometAPI's matches (QuantumNous/new-api, types/error.go).
_COMET_ERRORS = "CometAPI, Error Codes & Handling (§1.4)"
_COMET_MODEL = "CometAPI's real reply to an unknown model (§6, 2026-12-04)"
_NEW_API = "new-api, types/error.go (§5: CometAPI's envelope matches new-api's)"
_NEW_API_QUOTA = "new-api quota codes (§5, 2026-12-01)"
_OPENAI_BILLING = "OpenAI's billing codes, which gateways pass through"
_USER_500 = "a CometAPI user error answered with HTTP 500 (§5, 2026-12-01)"


@attrs.frozen
class Refusal:
    """One row of the table: a code, what it means and what the client does.

    Attributes:
        code: the envelope's `error.code`, or the signal named in `signal`.
        meaning: what the gateway says with it.
        created_nothing: whether the reply proves that nothing was created
            (and nothing billed).
        action: what the client does (see `Action`).
        source: where the row comes from.
        signal: how the row is recognised when not by `code` alone: `"type"`
            (the envelope's `error.type`) or `"message"` (a phrase of it).
    """

    code: str
    meaning: str
    created_nothing: bool
    action: Action
    source: str
    signal: Literal["code", "type", "message"] = "code"


def _rows(*rows: Refusal) -> Mapping[str, Refusal]:
    return MappingProxyType({row.code: row for row in rows})


def _quota(code: str, meaning: str, source: str = _NEW_API_QUOTA) -> Refusal:
    return Refusal(code, meaning, True, "stop", source)


def _user(code: str, meaning: str, source: str = _NEW_API) -> Refusal:
    return Refusal(code, meaning, True, "fail", source)


def _upstream(code: str, meaning: str) -> Refusal:
    return Refusal(code, meaning, False, "ambiguous", _NEW_API)


#: Every code the client reads, by code (signals by type and message too).
REFUSALS: Final[Mapping[str, Refusal]] = _rows(
    Refusal(
        MODEL_NOT_FOUND,
        "the gateway serves no such model (no channel for it); CometAPI answers 503",
        True,
        "stop",
        _COMET_MODEL,
    ),
    Refusal(
        "no available channel",
        "the same, recognised by the message when the code is missing",
        True,
        "stop",
        _COMET_MODEL,
        signal="message",
    ),
    _quota("insufficient_user_quota", "the key's account is out of credit"),
    _quota(
        "pre_consume_token_quota_failed", "the key's quota cannot cover the request"
    ),
    _quota("insufficient_quota", "out of credit", _OPENAI_BILLING),
    _quota("quota_exceeded", "out of quota", _OPENAI_BILLING),
    _quota("insufficient_balance", "out of credit", _OPENAI_BILLING),
    _quota("billing_not_active", "billing is not set up", _OPENAI_BILLING),
    _quota("billing_hard_limit_reached", "the spending limit is hit", _OPENAI_BILLING),
    _quota("account_deactivated", "the account is deactivated", _OPENAI_BILLING),
    _quota("access_denied", "the key may not use this route or model", _NEW_API),
    Refusal(
        "token_concurrency_limit_reached",
        "too many requests of this key at once",
        True,
        "retry",
        _NEW_API,
    ),
    _user(
        "invalid_request",
        "the request is malformed (CometAPI also sends it with 500)",
        _COMET_ERRORS,
    ),
    _user("convert_request_failed", "the gateway could not convert the request"),
    _user("read_request_body_failed", "the gateway could not read the request"),
    _user("bad_request_body", "the request body is not what the route takes"),
    _user("sensitive_words_detected", "the prompt was refused by the gateway"),
    _user("prompt_blocked", "the prompt was refused"),
    _user(
        "invalid_value",
        "an input value the model refuses (a user error, even with 500)",
        _USER_500,
    ),
    Refusal(
        "image_generation_user_error",
        "an image request the model refuses, even with 500",
        True,
        "fail",
        _USER_500,
        signal="type",
    ),
    _upstream("do_request_failed", "the gateway's request to the model failed"),
    _upstream("bad_response_status_code", "the model answered an error status"),
    _upstream("bad_response", "the model's answer could not be used"),
    _upstream("bad_response_body", "the model's answer could not be read"),
    _upstream("read_response_body_failed", "the model's answer was cut short"),
    _upstream("empty_response", "the model answered nothing"),
)

#: The rows that mean "the gateway does not serve this model".
NOT_SERVED: Final = frozenset({MODEL_NOT_FOUND, "no available channel"})
_BY_TYPE: Final = MappingProxyType(
    {row.code: row for row in REFUSALS.values() if row.signal == "type"}
)
_BY_MESSAGE: Final = tuple(row for row in REFUSALS.values() if row.signal == "message")
# CometAPI: "no available channel for group default and model
# black-forest-labs/flux-schnel (distributor) (request id: ...)".
_MODEL_IN_MESSAGE = re.compile(r"\bmodel\s+([\w.-]+/[\w.-]+)")


def refusal_for(
    code: str | None, error_type: str | None, message: str
) -> Refusal | None:
    """The table's row for a refusal, if any: by code, then type, then message."""
    if code:
        row = REFUSALS.get(code)
        if row is not None and row.signal == "code":
            return row
    if error_type and (row := _BY_TYPE.get(error_type)) is not None:
        return row
    lowered = message.lower()
    return next((row for row in _BY_MESSAGE if row.code in lowered), None)


def model_in_message(message: str) -> str | None:
    """The `owner/name` a refusal's message names ("... and model X ..."), if any."""
    match = _MODEL_IN_MESSAGE.search(message)
    return match.group(1) if match else None
