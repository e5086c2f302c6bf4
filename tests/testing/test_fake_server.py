"""Tests of the fake CometAPI itself, over real loopback HTTP."""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import attrs
import pytest
from multidict import CIMultiDict

from comet_replicate_async._inputs.flux import FLUX_INPUTS
from comet_replicate_async.testing import FakeCometAPI, Fault, Latency
from comet_replicate_async.testing._pytest_plugin import fake_comet as fake_comet

from helpers import FakeClock

pytestmark = pytest.mark.anyio

TERMINAL = {"succeeded", "failed", "canceled", "aborted"}
ISO_MILLIS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
ISO_NANOS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6,9}Z")
REQUEST_ID = re.compile(r"\(request id: (\w+)\)$")
PROJECT_ROOT = Path(__file__).resolve().parents[2]


@attrs.frozen
class Answer:
    """A finished HTTP exchange, read and closed."""

    status: int
    headers: Mapping[str, str] = attrs.field(hash=False)
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def auth(fake: FakeCometAPI) -> dict[str, str]:
    return {"Authorization": f"Bearer {fake.api_key}"}


async def send(
    session: aiohttp.ClientSession, method: str, url: str, **kwargs: Any
) -> Answer:
    async with session.request(method, url, **kwargs) as response:
        return Answer(
            response.status, CIMultiDict(response.headers), await response.read()
        )


async def create(
    session: aiohttp.ClientSession,
    fake: FakeCometAPI,
    model: str = "black-forest-labs/flux-schnell",
    prompt: str = "a red fox",
    **kwargs: Any,
) -> Answer:
    url = f"{fake.base_url}/replicate/v1/models/{model}/predictions"
    headers = {**auth(fake), **kwargs.pop("headers", {})}
    body = kwargs.pop("json", {"input": {"prompt": prompt}})
    return await send(session, "POST", url, json=body, headers=headers, **kwargs)


async def query(
    session: aiohttp.ClientSession,
    fake: FakeCometAPI,
    prediction_id: str,
    **kwargs: Any,
) -> Answer:
    url = f"{fake.base_url}/replicate/v1/predictions/{prediction_id}"
    headers = {**auth(fake), **kwargs.pop("headers", {})}
    return await send(session, "GET", url, headers=headers, **kwargs)


async def until_terminal(
    session: aiohttp.ClientSession, fake: FakeCometAPI, prediction_id: str
) -> dict[str, Any]:
    with anyio.fail_after(2):
        while True:
            body: dict[str, Any] = (await query(session, fake, prediction_id)).json()
            if body["status"] in TERMINAL:
                return body
            await anyio.sleep(0.005)


def assert_comet_error(answer: Answer, status: int, code: str) -> str:
    """Check CometAPI's envelope and return its message."""
    assert answer.status == status
    error = answer.json()["error"]
    assert error["type"] == "comet_api_error"
    assert error["param"] == ""
    assert error["code"] == code
    match = REQUEST_ID.search(error["message"])
    assert match is not None
    assert answer.headers["X-Request-Id"] == match[1]
    return str(error["message"])


# -- the happy path --------------------------------------------------------


async def test_create_then_query_until_succeeded(
    session: aiohttp.ClientSession, fake_comet: FakeCometAPI
) -> None:
    input = {"prompt": "a red fox", "num_outputs": 2, "output_format": "png"}
    created = await create(session, fake_comet, json={"input": input})

    assert created.status == 201
    body = created.json()
    prediction_id = body["id"]
    assert re.fullmatch(r"[a-z0-9]{26}", prediction_id)
    assert body["model"] == "black-forest-labs/flux-schnell"
    assert body["input"] == input
    assert body["status"] == "starting"
    assert ISO_MILLIS.fullmatch(body["created_at"])
    assert (body["version"], body["source"], body["logs"]) == ("hidden", "api", "")
    assert (body["output"], body["error"], body["data_removed"]) == (None, None, False)
    assert body["urls"] == {
        "cancel": f"https://api.replicate.com/v1/predictions/{prediction_id}/cancel",
        "get": f"https://api.replicate.com/v1/predictions/{prediction_id}",
        "stream": "https://stream.replicate.com/v1/files/example",
        "web": f"https://replicate.com/p/{prediction_id}",
    }

    done = await until_terminal(session, fake_comet, prediction_id)
    assert done["status"] == "succeeded"
    assert done["output"] == [
        f"{fake_comet.files_base_url}/xezq/{prediction_id}/out-{n}.png" for n in (0, 1)
    ]
    assert done["metrics"]["image_count"] == 2
    assert done["metrics"]["predict_time"] > 0
    assert ISO_NANOS.fullmatch(done["started_at"])
    assert ISO_NANOS.fullmatch(done["completed_at"])
    assert done["logs"]


@pytest.mark.parametrize(
    "model", ["black-forest-labs/flux-pro", "black-forest-labs/flux-kontext-max"]
)
async def test_single_output_models_return_one_url_string(
    session: aiohttp.ClientSession, fake_comet: FakeCometAPI, model: str
) -> None:
    prediction_id = (await create(session, fake_comet, model)).json()["id"]

    done = await until_terminal(session, fake_comet, prediction_id)

    assert (
        done["output"] == f"{fake_comet.files_base_url}/xezq/{prediction_id}/out-0.webp"
    )


async def test_status_moves_through_the_lifecycle_with_the_clock(
    session: aiohttp.ClientSession,
) -> None:
    async with FakeCometAPI(latency=Latency.constant(10.0)) as fake:
        prediction_id = (await create(session, fake)).json()["id"]
    record = fake.predictions[prediction_id]

    start = record.created_monotonic
    assert record.status_at(start + 0.5) == "starting"
    assert record.status_at(start + 1.5) == "processing"
    assert record.status_at(start + 10.0) == "succeeded"
    assert record.terminal_wall == pytest.approx(record.created_wall + 10.0)
    assert record.to_json(start + 1.5)["output"] is None


async def test_a_prediction_finishes_when_the_fakes_clock_moves_past_its_latency(
    session: aiohttp.ClientSession,
) -> None:
    clock = FakeClock()
    async with FakeCometAPI(latency=Latency.constant(3600.0), clock=clock) as fake:
        prediction_id = (await create(session, fake)).json()["id"]
        assert fake.predictions[prediction_id].created_monotonic == clock.now()
        assert (await query(session, fake, prediction_id)).json()[
            "status"
        ] == "starting"
        assert fake.stats.in_flight_now == 1

        clock.advance(3600.0)  # an hour's run, in no wall-clock time
        done = (await query(session, fake, prediction_id)).json()
        assert done["status"] == "succeeded"
        assert done["output"] is not None
        assert fake.stats.in_flight_now == 0
        assert fake.stats.requests_log[-1].monotonic == clock.now()


async def test_per_model_latency_is_honoured(session: aiohttp.ClientSession) -> None:
    latency = {
        "flux-schnell": Latency.constant(0.05),
        "black-forest-labs/flux-dev": Latency.constant(30.0),
    }
    async with FakeCometAPI(latency=latency) as fake:
        started = time.monotonic()
        quick = (await create(session, fake)).json()["id"]
        slow = (await create(session, fake, "black-forest-labs/flux-dev")).json()["id"]

        done = await until_terminal(session, fake, quick)
        elapsed = time.monotonic() - started

        assert done["status"] == "succeeded"
        assert 0.05 <= elapsed < 1.0
        assert (await query(session, fake, slow)).json()["status"] == "starting"
        assert fake.predictions[quick].latency == 0.05
        assert fake.predictions[slow].latency == 30.0


async def test_prefer_wait_holds_the_reply_until_terminal(
    session: aiohttp.ClientSession,
) -> None:
    async with FakeCometAPI(latency=Latency.constant(0.1)) as fake:
        answer = await create(session, fake, headers={"Prefer": "wait=5"})

    assert answer.status == 201
    assert answer.json()["status"] == "succeeded"


@pytest.mark.parametrize(
    ("failure_rate", "abort_rate", "status", "error"),
    [
        (1.0, 0.0, "failed", "All generated images contained NSFW content."),
        (0.0, 1.0, "aborted", None),
    ],
)
async def test_outcome_rates(
    session: aiohttp.ClientSession,
    failure_rate: float,
    abort_rate: float,
    status: str,
    error: str | None,
) -> None:
    async with FakeCometAPI(
        default_latency=Latency.constant(0.01),
        failure_rate=failure_rate,
        abort_rate=abort_rate,
    ) as fake:
        prediction_id = (await create(session, fake)).json()["id"]
        done = await until_terminal(session, fake, prediction_id)

    assert done["status"] == status
    assert done["output"] is None
    assert (done["error"] or "").startswith(error or "")
    assert (done["error"] is None) == (error is None)
    assert fake.predictions[prediction_id].final_status == status


# -- request errors --------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "test-key"}],
)
async def test_bad_credentials_get_401(
    session: aiohttp.ClientSession, fake_comet: FakeCometAPI, headers: dict[str, str]
) -> None:
    url = f"{fake_comet.base_url}/replicate/v1/models/black-forest-labs/flux-dev/predictions"
    created = await send(
        session, "POST", url, json={"input": {"prompt": "x"}}, headers=headers
    )
    queried = await send(
        session,
        "GET",
        f"{fake_comet.base_url}/replicate/v1/predictions/x",
        headers=headers,
    )

    for answer in (created, queried):
        assert assert_comet_error(answer, 401, "").startswith(
            "invalid token (request id:"
        )
    assert fake_comet.stats.created == 0
    assert fake_comet.stats.count("create", 401) == 1


@pytest.mark.parametrize(
    "body",
    [
        {},
        [],
        {"input": "a fox"},
        {"input": {}},
        {"input": {"prompt": ""}},
        {"prompt": "x"},
    ],
)
async def test_missing_prompt_gets_400(
    session: aiohttp.ClientSession, fake_comet: FakeCometAPI, body: Any
) -> None:
    answer = await create(session, fake_comet, json=body)

    assert_comet_error(answer, 400, "invalid_request")
    assert fake_comet.stats.created == 0


async def test_unknown_prediction_gets_404(
    session: aiohttp.ClientSession, fake_comet: FakeCometAPI
) -> None:
    answer = await query(session, fake_comet, "nosuchprediction")

    assert_comet_error(answer, 404, "")
    assert fake_comet.stats.count("query", 404) == 1


@pytest.mark.parametrize("model", sorted(cls.model for cls in FLUX_INPUTS))
async def test_every_flux_model_is_served(
    session: aiohttp.ClientSession, fake_comet: FakeCometAPI, model: str
) -> None:
    answer = await create(session, fake_comet, model)

    assert answer.status == 201
    assert answer.json()["model"] == model


async def test_a_model_it_does_not_serve_is_refused_as_cometapi_refuses_it(
    session: aiohttp.ClientSession, fake_comet: FakeCometAPI
) -> None:
    answer = await create(session, fake_comet, "black-forest-labs/flux-schnel")

    message = assert_comet_error(answer, 503, "model_not_found")
    assert message.startswith(
        "no available channel for group default and model "
        "black-forest-labs/flux-schnel (distributor) (request id: "
    )
    assert fake_comet.stats.created == 0
    assert fake_comet.stats.count("create", 503) == 1
    assert "black-forest-labs/flux-schnel" not in fake_comet.models


async def test_a_test_can_serve_more_models(session: aiohttp.ClientSession) -> None:
    async with FakeCometAPI(extra_models=["acme/sketch"]) as fake:
        fake.serve("acme/paint", "acme/ink")
        fake.reset()  # forgets predictions, not the models served

        answers = [
            await create(session, fake, model)
            for model in ("acme/sketch", "acme/paint", "acme/ink", "acme/other")
        ]

        assert [answer.status for answer in answers] == [201, 201, 201, 503]
        assert fake.models == {
            *(cls.model for cls in FLUX_INPUTS),
            "acme/sketch",
            "acme/paint",
            "acme/ink",
        }


@pytest.mark.parametrize(
    ("models", "error"),
    [("acme/sketch", TypeError), (["sketch"], ValueError), (["acme/"], ValueError)],
)
def test_a_served_model_is_an_owner_name_id(
    models: Any, error: type[Exception]
) -> None:
    with pytest.raises(error, match="owner/name"):
        FakeCometAPI(extra_models=models)


# -- scripted faults -------------------------------------------------------


async def test_scripted_status_creates_nothing_and_is_used_once(
    session: aiohttp.ClientSession, fake_comet: FakeCometAPI
) -> None:
    fake_comet.script("create", Fault.ok(), Fault.status(503))

    first = await create(session, fake_comet)
    second = await create(session, fake_comet)
    third = await create(session, fake_comet)

    assert first.status == 201
    assert_comet_error(second, 503, "")
    assert third.status == 201
    assert fake_comet.stats.created == 2


async def test_scripted_status_with_custom_body_and_headers(
    session: aiohttp.ClientSession, fake_comet: FakeCometAPI
) -> None:
    fake_comet.script(
        "query", Fault.status(500, body={"oops": 1}, headers={"X-A": "b"})
    )

    answer = await query(session, fake_comet, "whatever")

    assert (answer.status, answer.json(), answer.headers["X-A"]) == (
        500,
        {"oops": 1},
        "b",
    )


async def test_scripted_rate_limited(
    session: aiohttp.ClientSession, fake_comet: FakeCometAPI
) -> None:
    fake_comet.script("create", Fault.rate_limited("1.5"), Fault.rate_limited(None))

    with_header = await create(session, fake_comet)
    without_header = await create(session, fake_comet)

    assert with_header.status == 429
    assert with_header.headers["Retry-After"] == "1.5"
    assert with_header.json() == {
        "detail": "Request was throttled. Your rate limit resets in ~2s."
    }
    assert without_header.status == 429
    assert "Retry-After" not in without_header.headers
    assert fake_comet.stats.created == 0


async def test_scripted_ghost_creates_one_prediction(
    session: aiohttp.ClientSession, fake_comet: FakeCometAPI
) -> None:
    fake_comet.script("create", Fault.ghost())

    answer = await create(session, fake_comet, prompt="ghost")

    assert_comet_error(answer, 502, "")
    assert fake_comet.stats.created == 1
    (record,) = fake_comet.predictions.values()
    assert record.input == {"prompt": "ghost"}
    assert fake_comet.stats.requests_log[-1].prediction_id == record.id


@pytest.mark.parametrize("after_create", [False, True])
async def test_scripted_reset_drops_the_connection(
    session: aiohttp.ClientSession, fake_comet: FakeCometAPI, after_create: bool
) -> None:
    fake_comet.script("create", Fault.reset(after_create=after_create))

    with pytest.raises((aiohttp.ServerDisconnectedError, aiohttp.ClientOSError)):
        await create(session, fake_comet)

    assert fake_comet.stats.created == int(after_create)
    assert fake_comet.stats.count("create", 0) == 1
    assert (await create(session, fake_comet)).status == 201


async def test_scripted_delay_trips_a_read_timeout_after_creating(
    session: aiohttp.ClientSession, fake_comet: FakeCometAPI
) -> None:
    fake_comet.script("create", Fault.delay(0.2), Fault.delay(0.05))
    impatient = aiohttp.ClientTimeout(sock_read=0.02)

    with pytest.raises(TimeoutError):
        await create(session, fake_comet, timeout=impatient)
    started = time.monotonic()
    patient = await create(session, fake_comet)

    assert patient.status == 201
    assert time.monotonic() - started >= 0.05
    assert fake_comet.stats.created == 2


@pytest.mark.parametrize(
    ("fault", "status", "content_type"),
    [
        (Fault.html(), 200, "text/html"),
        (Fault.html(502), 502, "text/html"),
        (Fault.truncated(), 201, "application/json"),
    ],
)
async def test_scripted_malformed_replies_come_after_creating(
    session: aiohttp.ClientSession,
    fake_comet: FakeCometAPI,
    fault: Fault,
    status: int,
    content_type: str,
) -> None:
    fake_comet.script("create", fault)

    answer = await create(session, fake_comet)

    assert answer.status == status
    assert answer.headers["Content-Type"].startswith(content_type)
    with pytest.raises(ValueError):
        answer.json()
    assert fake_comet.stats.created == 1


async def test_scripted_polls_answer_one_prediction_only_then_normally(
    session: aiohttp.ClientSession, fake_comet: FakeCometAPI
) -> None:
    odd = (await create(session, fake_comet, prompt="odd")).json()["id"]
    fine = (await create(session, fake_comet, prompt="fine")).json()["id"]
    fake_comet.script_polls(
        odd,
        Fault.raw(b"<html>hiccup</html>", status=202, content_type="text/html"),
        Fault.raw(lambda normal: {**normal, "status": "SUCCEEDED", "id": "other"}),
    )

    sibling = await query(session, fake_comet, fine)
    first = await query(session, fake_comet, odd)
    second = await query(session, fake_comet, odd)
    third = await query(session, fake_comet, odd)

    assert sibling.json()["id"] == fine
    assert (first.status, first.body) == (202, b"<html>hiccup</html>")
    assert first.headers["Content-Type"].startswith("text/html")
    assert second.json()["status"] == "SUCCEEDED"
    assert second.json()["id"] == "other"
    assert second.json()["input"] == {"prompt": "odd"}  # rewritten from the normal
    assert third.json()["id"] == odd  # the script is used up


async def test_scripted_polls_by_a_test_on_the_record_repeat_the_last(
    session: aiohttp.ClientSession, fake_comet: FakeCometAPI
) -> None:
    fake_comet.script_polls(
        lambda record: record.input["prompt"].startswith("odd"),
        Fault.raw({"not": "a prediction"}),
        repeat_last=True,
    )
    odd = [
        (await create(session, fake_comet, prompt=f"odd {n}")).json() for n in (1, 2)
    ]
    fine = (await create(session, fake_comet, prompt="fine")).json()

    answers = [await query(session, fake_comet, p["id"]) for p in odd * 2]

    assert [answer.json() for answer in answers] == [{"not": "a prediction"}] * 4
    assert odd[0]["status"] == "starting"  # the create itself is not scripted
    assert (await query(session, fake_comet, fine["id"])).json()["id"] == fine["id"]


async def test_scripted_raw_create_creates_first(
    session: aiohttp.ClientSession, fake_comet: FakeCometAPI
) -> None:
    fake_comet.script("create", Fault.raw({"id": "abc def"}, status=201))

    answer = await create(session, fake_comet)

    assert (answer.status, answer.json()) == (201, {"id": "abc def"})
    assert fake_comet.stats.created == 1


async def test_scripted_redirect_is_not_followed_by_a_careful_client(
    session: aiohttp.ClientSession, fake_comet: FakeCometAPI
) -> None:
    fake_comet.script("create", Fault.redirect())
    fake_comet.script("query", Fault.redirect())
    path = "/replicate/v1/models/black-forest-labs/flux-schnell/predictions"

    answer = await create(session, fake_comet, allow_redirects=False)

    assert answer.status == 301
    assert answer.headers["Location"] == f"{fake_comet.base_url}/moved{path}"
    assert fake_comet.stats.count("other") == 0
    assert fake_comet.stats.created == 0
    # A client that follows redirects lands on a 200 that is no prediction.
    followed = await query(session, fake_comet, "abc")
    assert (followed.status, fake_comet.stats.count("other", 200)) == (200, 1)


async def test_scripted_file_fault(
    session: aiohttp.ClientSession, fake_comet: FakeCometAPI
) -> None:
    prediction_id = (await create(session, fake_comet)).json()["id"]
    (url,) = (await until_terminal(session, fake_comet, prediction_id))["output"]
    fake_comet.script("file", Fault.status(503))

    assert (await send(session, "GET", url)).status == 503
    assert (await send(session, "GET", url)).status == 200


# -- random faults and throttling ------------------------------------------


async def test_creates_above_the_rate_get_429_with_retry_after(
    session: aiohttp.ClientSession,
) -> None:
    clock = FakeClock()
    async with FakeCometAPI(creates_per_minute=2, rate_window=0.2, clock=clock) as fake:
        answers = [await create(session, fake) for _ in range(3)]
        assert [a.status for a in answers] == [201, 201, 429]
        assert answers[2].headers["Retry-After"] == "1"
        assert answers[2].json()["detail"].startswith("Request was throttled.")
        assert fake.stats.created == 2

        clock.advance(0.25)  # past the window, on the fake's clock
        assert (await create(session, fake)).status == 201


async def test_random_server_errors_use_retryable_codes(
    session: aiohttp.ClientSession,
) -> None:
    async with FakeCometAPI(server_error_rate=1.0, seed=7) as fake:
        answers = [await create(session, fake) for _ in range(10)]
        queried = await query(session, fake, "any")

    for answer in [*answers, queried]:
        assert answer.status in {500, 502, 503, 504, 524}
        assert_comet_error(answer, answer.status, "")
    assert fake.stats.created == 0


async def test_random_ghosts_create_and_answer_502(
    session: aiohttp.ClientSession,
) -> None:
    async with FakeCometAPI(server_error_rate=1.0, ghost_share=1.0, seed=1) as fake:
        answers = [await create(session, fake) for _ in range(3)]

    assert [a.status for a in answers] == [502] * 3
    assert fake.stats.created == 3


async def test_random_resets_and_malformed_replies(
    session: aiohttp.ClientSession,
) -> None:
    async with FakeCometAPI(reset_rate=0.5, malformed_rate=0.5, seed=3) as fake:
        outcomes = set()
        for _ in range(12):
            try:
                answer = await create(session, fake)
            except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError):
                outcomes.add("reset")
            else:
                outcomes.add(answer.headers["Content-Type"].partition(";")[0])

    assert outcomes == {"reset", "text/html", "application/json"}
    assert 0 < fake.stats.created < 12


def test_invalid_settings_are_refused() -> None:
    with pytest.raises(ValueError):
        FakeCometAPI(failure_rate=0.7, abort_rate=0.7)
    with pytest.raises(ValueError):
        FakeCometAPI(server_error_rate=0.6, slow_rate=0.6)
    with pytest.raises(ValueError):
        Latency.uniform(2.0, 1.0)
    with pytest.raises(attrs.exceptions.FrozenAttributeError):
        FakeCometAPI().failure_rate = 1.0


@pytest.mark.parametrize(
    ("spec", "latency"),
    [
        ("0.5", Latency.constant(0.5)),
        ("constant:2", Latency.constant(2.0)),
        ("uniform:1:3", Latency.uniform(1.0, 3.0)),
    ],
)
def test_latency_specs(spec: str, latency: Latency) -> None:
    assert Latency.parse(spec) == latency


# -- statistics ------------------------------------------------------------


async def test_duplicates_count_identical_creates(
    session: aiohttp.ClientSession, fake_comet: FakeCometAPI
) -> None:
    for prompt in ("same", "same", "other", "same"):
        await create(session, fake_comet, prompt=prompt)
    await create(session, fake_comet, "black-forest-labs/flux-dev", prompt="other")

    assert fake_comet.stats.created == 5
    assert fake_comet.stats.duplicates == 2
    assert sorted(fake_comet.stats.creates_by_input.values()) == [1, 1, 3]


async def test_peak_in_flight_counts_overlapping_predictions(
    session: aiohttp.ClientSession,
) -> None:
    latency = {"flux-dev": Latency.constant(0.2), "flux-schnell": Latency.constant(0.0)}
    async with FakeCometAPI(latency=latency) as fake:
        async with anyio.create_task_group() as tg:
            for n in range(3):
                tg.start_soon(
                    create, session, fake, "black-forest-labs/flux-dev", str(n)
                )
        assert fake.stats.in_flight_now == 3

        for prediction_id in list(fake.predictions):
            await until_terminal(session, fake, prediction_id)
        for _ in range(2):  # one after another, never overlapping
            await create(session, fake)

        assert fake.stats.peak_in_flight == 3
        assert fake.stats.created == 5


async def test_requests_are_logged(
    session: aiohttp.ClientSession, fake_comet: FakeCometAPI
) -> None:
    await create(session, fake_comet)
    await send(session, "GET", f"{fake_comet.base_url}/nowhere")

    create_record, other_record = fake_comet.stats.requests_log
    assert (create_record.route, create_record.method, create_record.status) == (
        "create",
        "POST",
        201,
    )
    assert create_record.headers["Authorization"] == "Bearer test-key"
    assert create_record.wall == pytest.approx(time.time(), abs=5)
    assert (other_record.route, other_record.path, other_record.status) == (
        "other",
        "/nowhere",
        404,
    )


async def test_stats_and_reset_control_routes(
    session: aiohttp.ClientSession, fake_comet: FakeCometAPI
) -> None:
    prediction_id = (await create(session, fake_comet)).json()["id"]

    stats = (await send(session, "GET", f"{fake_comet.base_url}/_fake/stats")).json()
    assert stats["created"] == 1
    assert stats["requests"]["create"] == {"201": 1}
    assert stats["predictions"][prediction_id]["final_status"] == "succeeded"
    assert stats["duplicates"] == 0
    assert "requests_log" not in stats

    reset = await send(session, "POST", f"{fake_comet.base_url}/_fake/reset")
    assert reset.status == 200
    assert fake_comet.stats.created == 0
    assert not fake_comet.predictions
    assert (await query(session, fake_comet, prediction_id)).status == 404


# -- output files ----------------------------------------------------------


async def test_files_are_pngs_on_their_own_origin_without_auth(
    session: aiohttp.ClientSession, fake_comet: FakeCometAPI
) -> None:
    ids = [(await create(session, fake_comet, prompt=p)).json()["id"] for p in "ab"]
    urls = [(await until_terminal(session, fake_comet, i))["output"][0] for i in ids]

    images = [await send(session, "GET", url) for url in urls]

    assert fake_comet.files_base_url != fake_comet.base_url
    for image in images:
        assert image.status == 200
        assert image.headers["Content-Type"] == "image/png"
        assert image.body.startswith(b"\x89PNG\r\n\x1a\n")
    assert images[0].body != images[1].body
    assert fake_comet.stats.count("file", 200) == 2


@pytest.mark.parametrize("name", ["out-1.webp", "out-0.png", "nonsense"])
async def test_unknown_files_get_404(
    session: aiohttp.ClientSession, fake_comet: FakeCometAPI, name: str
) -> None:
    prediction_id = (await create(session, fake_comet)).json()["id"]
    await until_terminal(session, fake_comet, prediction_id)

    answer = await send(
        session, "GET", f"{fake_comet.files_base_url}/xezq/{prediction_id}/{name}"
    )

    assert answer.status == 404


# -- separate process ------------------------------------------------------


async def test_command_line_server_answers_and_stops_on_sigterm(
    session: aiohttp.ClientSession,
) -> None:
    command = [sys.executable, "-m", "comet_replicate_async.testing", "--port", "0"]
    command += ["--latency", "flux-dev=uniform:0.01:0.02", "--seed", "1"]
    command += ["--extra-model", "acme/sketch"]
    async with await anyio.open_process(command, cwd=PROJECT_ROOT) as process:
        assert process.stdout is not None
        with anyio.fail_after(10):
            line = b""
            async for chunk in process.stdout:
                line += chunk
                if b"\n" in line:
                    break
        match = re.fullmatch(rb"listening on (http://127\.0\.0\.1:\d+)\n", line)
        assert match is not None
        base_url = match[1].decode()

        statuses = []
        for model in ("black-forest-labs/flux-dev", "acme/sketch", "acme/other"):
            answer = await send(
                session,
                "POST",
                f"{base_url}/replicate/v1/models/{model}/predictions",
                json={"input": {"prompt": "x"}},
                headers=auth(FakeCometAPI()),
            )
            statuses.append(answer.status)
        assert statuses == [201, 201, 503]

        process.terminate()
        with anyio.fail_after(10):
            assert await process.wait() == 0
