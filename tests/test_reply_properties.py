"""Property tests: whatever a reply holds, every call ends in a result or our error.

Replies are generated from Replicate's documented prediction schema
(`schemas_prediction_response` in its OpenAPI document), then mutated the ways
gateways do: nulls, wrong types, case changes, missing fields, odd and naive
timestamps, changed ids, wrapped envelopes, bodies that are not JSON at all.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import anyio
import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from comet_replicate_async import (
    APIError,
    CometReplicateError,
    PollPolicy,
    Prediction,
    Status,
)
from comet_replicate_async._sansio import RawResponse, decipher_response
from comet_replicate_async.testing import FakeCometAPI, Fault, Latency, PredictionRecord

from helpers import PRO, session_for

pytestmark = pytest.mark.anyio

STATUSES = ["starting", "processing", "succeeded", "failed", "canceled", "aborted"]
TIMESTAMP_FIELDS = ["created_at", "started_at", "completed_at", "deadline"]
# Seconds: an odd prediction's own deadline, and the batch's (whose siblings
# finish in a tenth of a second); no example may take longer than LIMIT.
ODD_DEADLINE = 0.5
BATCH_DEADLINE = 2.0
LIMIT = 20.0

text = st.text(max_size=12)
ids = st.text("abcdefghijklmnopqrstuvwxyz0123456789", min_size=26, max_size=26)
urls = st.builds(
    "https://replicate.delivery/xezq/{}/out-{}.webp".format, ids, st.integers(0, 3)
)
json_scalars = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | text
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3)
    ),
    max_leaves=6,
)


@st.composite
def timestamps(draw: st.DrawFn) -> str:
    """RFC 3339, and what gateways make of it: 0-9 digits, any zone or none."""
    moment = draw(st.datetimes(datetime(2000, 1, 1), datetime(2100, 1, 1)))
    digits = draw(st.integers(0, 9))
    fraction = f"{moment.microsecond:06d}{draw(st.integers(0, 999)):03d}"[:digits]
    zone = draw(st.sampled_from(["Z", "z", "+00:00", "-08:00", "+0530", ""]))
    separator = draw(st.sampled_from(["T", " "]))
    stamp = moment.strftime(f"%Y-%m-%d{separator}%H:%M:%S")
    return stamp + (f".{fraction}" if fraction else "") + zone


outputs = (
    st.none()
    | urls
    | st.lists(urls, max_size=4)
    | st.dictionaries(text, urls | text, max_size=3)
    | text
    | st.lists(text, max_size=4)
)

documented_replies = st.fixed_dictionaries(
    {
        "id": ids,
        "model": st.just(PRO) | text,
        "version": st.just("hidden") | text,
        "input": st.dictionaries(text, json_scalars, max_size=3),
        "output": outputs,
        "data_removed": st.booleans(),
        "error": st.none() | text,
        "status": st.sampled_from(STATUSES),
        "created_at": timestamps(),
        "urls": st.fixed_dictionaries(
            {"web": urls, "get": urls, "cancel": urls}, optional={"stream": urls}
        ),
    },
    optional={
        "logs": text,
        "metrics": st.fixed_dictionaries(
            {}, optional={"total_time": st.floats(0, 1e4), "predict_time": json_scalars}
        ),
        "started_at": timestamps(),
        "completed_at": timestamps(),
        "deadline": timestamps(),
        "source": st.sampled_from(["web", "api"]),
        "deployment": text,
    },
)


@attrs.frozen
class OddReply:
    """A reply to serve for one prediction's polls, from a mutated documented one."""

    payload: dict[str, Any]
    own_id: bool  # the prediction's real id replaces the payload's
    envelopes: int  # times wrapped in {"data": ...}
    raw: bytes | None  # a body that is not the payload at all
    status: int
    content_type: str

    def body(self, normal: Any) -> Any:
        """What to send, given the fake's normal reply (for the real id)."""
        if self.raw is not None:
            return self.raw
        data: Any = dict(self.payload)
        if self.own_id and isinstance(normal, dict):
            data["id"] = normal.get("id")
        for _ in range(self.envelopes):
            data = {"code": "success", "data": data}
        return data

    def read(self, prediction_id: str) -> RawResponse:
        """The reply as the client receives it, for the sans-I/O properties."""
        body = self.body({"id": prediction_id})
        if not isinstance(body, bytes):
            body = json.dumps(body).encode()
        return RawResponse(self.status, {"content-type": self.content_type}, body)


@st.composite
def mutated(draw: st.DrawFn, reply: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """Apply a few mutations; say whether the id is still the prediction's own."""
    own_id = True
    for _ in range(draw(st.integers(0, 3))):
        kind = draw(
            st.sampled_from(
                ["null", "wrong type", "case", "missing", "timestamp", "id"]
            )
        )
        field = draw(st.sampled_from(sorted(reply) or ["status"]))
        if kind == "null":
            reply[field] = None
        elif kind == "wrong type":
            reply[field] = draw(json_values)
        elif kind == "case" and isinstance(reply.get("status"), str):
            change = draw(st.sampled_from([str.upper, str.title, " {} ".format]))
            reply["status"] = change(reply["status"])
        elif kind == "missing":
            reply.pop(field, None)
        elif kind == "timestamp":
            odd = st.sampled_from(["84 seconds", "", "2026-13-45T99:99:99Z", "now"])
            reply[draw(st.sampled_from(TIMESTAMP_FIELDS))] = draw(odd | json_scalars)
        elif kind == "id":
            own_id = False
            reply["id"] = draw(ids | json_scalars)
    return reply, own_id


@st.composite
def odd_replies(draw: st.DrawFn) -> OddReply:
    payload, own_id = draw(mutated(draw(documented_replies)))
    raw = draw(
        st.none()
        | st.sampled_from(
            [b"", b"null", b"[]", b"{", b"<html>502 Bad Gateway</html>", b"\xff\xfe"]
        )
    )
    return OddReply(
        payload=payload,
        own_id=own_id,
        envelopes=draw(st.integers(0, 2)),
        raw=raw,
        status=draw(st.sampled_from([200, 200, 200, 201, 202])),
        content_type=draw(st.sampled_from(["application/json", "text/html"])),
    )


# Pure: the sans-I/O reader, many examples.


@pytest.mark.slow
@settings(max_examples=200, deadline=None)
@given(reply=odd_replies(), asked_id=st.none() | ids)
def test_reading_any_reply_gives_a_prediction_or_an_api_error(
    reply: OddReply, asked_id: str | None
) -> None:
    response = reply.read(asked_id or "q4chw5rey9rmt0cww76t4h3ma4")
    try:
        prediction = decipher_response(response, asked_id=asked_id)
    except APIError as error:
        failed_with = error.status_code
    else:
        failed_with = None
    if failed_with is not None:
        assert failed_with == reply.status
        return
    if asked_id is not None:
        assert prediction.id == asked_id
    assert all(
        url[:8].lower().startswith(("https://", "http://", "data:"))
        for url in prediction.output_urls
    )


@settings(max_examples=200, deadline=None)
@given(reply=documented_replies, field=st.sampled_from(TIMESTAMP_FIELDS))
def test_an_odd_timestamp_never_changes_the_status_or_drops_the_output(
    reply: dict[str, Any], field: str
) -> None:
    body = json.dumps({**reply, field: "84 seconds"}).encode()

    prediction = decipher_response(RawResponse(200, {}, body), asked_id=reply["id"])

    assert prediction.status == reply["status"]
    assert prediction.output == reply["output"]


# Over HTTP: every kind of call, with siblings, against FakeCometAPI.

Outcome = Prediction | CometReplicateError


async def outcome_of(call: Callable[[], Awaitable[Prediction]]) -> Outcome:
    """The call's prediction, or our error; anything else propagates and fails."""
    try:
        return await call()
    except CometReplicateError as error:
        return error


def _odd(record: PredictionRecord) -> bool:
    return str(record.input["prompt"]).startswith("odd")


@pytest.mark.slow
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(reply=odd_replies())
async def test_every_call_ends_in_a_prediction_or_our_error_and_siblings_finish(
    reply: OddReply,
) -> None:
    poll = PollPolicy(min_interval=0.01, max_interval=0.05)
    async with FakeCometAPI(default_latency=Latency.constant(0.02)) as fake:
        fake.script_polls(
            _odd,
            Fault.raw(reply.body, status=reply.status, content_type=reply.content_type),
            repeat_last=True,
        )
        outcomes: dict[str, Outcome] = {}
        items = []
        with anyio.fail_after(LIMIT):
            async with session_for(fake, poll=poll) as session:

                async def run(prompt: str, timeout: float) -> None:
                    outcomes[prompt] = await outcome_of(
                        lambda: session.run(PRO, {"prompt": prompt}, timeout=timeout)
                    )

                async def create_get_and_wait() -> None:
                    created = await session.create(PRO, {"prompt": "odd wait"})
                    outcomes["get"] = await outcome_of(lambda: session.get(created.id))
                    outcomes["wait"] = await outcome_of(
                        lambda: session.wait(created, timeout=ODD_DEADLINE)
                    )

                async def batch() -> None:
                    inputs = [{"prompt": p} for p in ("fine 0", "odd batch", "fine 1")]
                    items.extend(
                        await session.gather(PRO, inputs, timeout=BATCH_DEADLINE)
                    )

                async with anyio.create_task_group() as group:
                    group.start_soon(run, "odd run", ODD_DEADLINE)
                    group.start_soon(run, "fine run", LIMIT)
                    group.start_soon(create_get_and_wait)
                    group.start_soon(batch)

    for name in ("odd run", "get", "wait"):
        assert isinstance(outcomes[name], Prediction | CometReplicateError), name
    for item in items:
        assert item.error is None or isinstance(item.error, CometReplicateError)
        assert item.ok or item.error is not None
    fine = [outcomes["fine run"], items[0].prediction, items[2].prediction]
    assert [getattr(p, "status", p) for p in fine] == [Status.SUCCEEDED] * 3
