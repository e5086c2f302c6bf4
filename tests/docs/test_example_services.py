"""The example services in docs/examples against FakeCometAPI, one test per framework.

- aiohttp.web (`aiohttp_app.py`): `TestServer` runs the app on a real loopback port
  and starts and stops it (so its `cleanup_ctx`, so its one session) in the test's
  own task, under anyio.
- FastAPI (`fastapi_app.py`): httpx's ASGI transport does not run the lifespan, so
  asgi-lifespan's LifespanManager does: the app opens its one session exactly as
  under a real server.
"""

from __future__ import annotations

import importlib
import json
import logging
import sys
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import anyio
import httpx
import pytest
from aiohttp.test_utils import TestClient, TestServer
from asgi_lifespan import LifespanManager

from comet_replicate_async import PollPolicy, Session
from comet_replicate_async.testing import FakeCometAPI, Fault, Latency

from helpers import SCHNELL, session_for

pytestmark = pytest.mark.anyio

EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples"
QUICK = Latency.constant(0.02)
# Poll as often as the quick fake finishes: each request then takes milliseconds.
QUICK_POLL = PollPolicy(min_interval=0.02, max_interval=0.02)
ULTRA = "black-forest-labs/flux-1.1-pro-ultra"


class Service(Protocol):
    """The app under test: an HTTP client for it, and the sessions it opened."""

    sessions: list[Session]

    async def post(self, path: str, body: dict[str, Any]) -> Any:
        """POST a JSON body; the reply has status_code, headers, text and json()."""

    async def lines(self, path: str, body: dict[str, Any]) -> list[dict[str, Any]]:
        """POST and read the NDJSON reply, line by line."""


#: Start the app with a session pointed at the fake (session options as keywords).
Serve = Callable[..., AbstractAsyncContextManager[Service]]


@dataclass(frozen=True)
class Reply:
    """A whole aiohttp reply, read before its connection went back to the pool."""

    status_code: int
    headers: Mapping[str, str]
    text: str

    def json(self) -> Any:
        return json.loads(self.text)


class AiohttpService:
    def __init__(self, client: TestClient[Any, Any], sessions: list[Session]) -> None:
        self.client = client
        self.sessions = sessions

    async def post(self, path: str, body: dict[str, Any]) -> Reply:
        async with self.client.post(path, json=body) as response:
            return Reply(response.status, response.headers, await response.text())

    async def lines(self, path: str, body: dict[str, Any]) -> list[dict[str, Any]]:
        async with self.client.post(path, json=body) as response:
            assert response.status == 200, await response.text()
            assert response.headers["content-type"] == "application/x-ndjson"
            return [json.loads(line) async for line in response.content if line.strip()]


class FastAPIService:
    def __init__(self, client: httpx.AsyncClient, sessions: list[Session]) -> None:
        self.client = client
        self.sessions = sessions

    async def post(self, path: str, body: dict[str, Any]) -> httpx.Response:
        return await self.client.post(path, json=body)

    async def lines(self, path: str, body: dict[str, Any]) -> list[dict[str, Any]]:
        async with self.client.stream("POST", path, json=body) as response:
            assert response.status_code == 200, await response.aread()
            assert response.headers["content-type"] == "application/x-ndjson"
            return [json.loads(line) async for line in response.aiter_lines() if line]


def _example(module: str) -> Any:
    # The example is a script beside its helper module: import it the same way.
    if str(EXAMPLES) not in sys.path:
        sys.path.append(str(EXAMPLES))
    return importlib.import_module(module)


def _app(
    module: str, fake: FakeCometAPI, options: dict[str, Any]
) -> tuple[Any, list[Session]]:
    """The example's app, with a session factory pointed at `fake`."""
    example = _example(module)
    sessions: list[Session] = []
    options.setdefault("poll", QUICK_POLL)

    def session_factory() -> Session:
        sessions.append(session_for(fake, **options))
        return sessions[-1]

    return example.create_app(session_factory), sessions


@asynccontextmanager
async def serve_aiohttp(fake: FakeCometAPI, **options: Any) -> AsyncIterator[Service]:
    app, sessions = _app("aiohttp_app", fake, options)
    async with TestClient(TestServer(app)) as client:
        yield AiohttpService(client, sessions)


@asynccontextmanager
async def serve_fastapi(fake: FakeCometAPI, **options: Any) -> AsyncIterator[Service]:
    app, sessions = _app("fastapi_app", fake, options)
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(manager.app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://service"
        ) as client:
            yield FastAPIService(client, sessions)


@pytest.fixture(params=[serve_aiohttp, serve_fastapi], ids=["aiohttp", "fastapi"])
def serve(request: pytest.FixtureRequest) -> Serve:
    serve_app: Serve = request.param
    return serve_app


@pytest.fixture
async def fake() -> AsyncIterator[FakeCometAPI]:
    async with FakeCometAPI(default_latency=QUICK) as server:
        yield server


async def test_one_prediction_from_a_prompt(serve: Serve, fake: FakeCometAPI) -> None:
    async with serve(fake) as service:
        response = await service.post("/images", {"prompt": "a paper boat"})

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "succeeded"
    assert body["model"] == SCHNELL
    assert len(body["output"]) == 1
    assert fake.predictions[body["id"]].input == {"prompt": "a paper boat"}


async def test_one_prediction_from_a_model_and_input(
    serve: Serve, fake: FakeCometAPI
) -> None:
    request = {
        "model": "black-forest-labs/flux-dev",
        "input": {"prompt": "an owl", "num_outputs": 2},
    }
    async with serve(fake) as service:
        response = await service.post("/images", request)

    assert response.status_code == 200, response.text
    assert len(response.json()["output"]) == 2


async def test_batch_streams_each_result_as_it_finishes(
    serve: Serve, fake: FakeCometAPI
) -> None:
    # The third create to arrive is held back: its prediction starts (and so
    # finishes) last, whichever item it is. (Not the first: the session's first
    # creates go out one, two, then more at a time, each wave after a reply.)
    fake.script("create", Fault.ok(), Fault.ok(), Fault.delay(0.3, after_create=False))
    prompts = [f"a fox, study {n}" for n in range(5)]

    async with serve(fake, max_concurrency=5) as service:
        lines = await service.lines("/batches", {"prompts": prompts})

    assert sorted(line["index"] for line in lines) == list(range(5))
    assert all(line["ok"] for line in lines)
    created_last = list(fake.predictions)[-1]
    assert lines[-1]["id"] == created_last


async def test_batch_item_errors_are_lines_with_their_http_status(
    serve: Serve, fake: FakeCometAPI
) -> None:
    inputs = [{"prompt": "a fox"}, {"prompt": "an owl", "num_outputs": 9}]

    async with serve(fake) as service:
        lines = await service.lines("/batches", {"model": SCHNELL, "inputs": inputs})

    by_index = {line["index"]: line for line in lines}
    assert by_index[0]["ok"] is True
    assert by_index[1]["ok"] is False
    assert by_index[1]["status"] == 422
    assert any("num_outputs" in problem for problem in by_index[1]["problems"])
    assert fake.stats.created == 1


@pytest.mark.parametrize(
    ("path", "request_body"),
    [
        ("/images", {"input": {"prompt": "x", "num_outputs": 9}}),
        ("/images", {"prompt": "x", "input": {"prompt": "x"}}),
        ("/images", {"model": "not-a-model-id", "prompt": "x"}),
        ("/images", {"prompt": "x", "timeout": -1}),
        ("/images", {"prompt": "x", "timeout": 51}),  # past the service's deadline
        ("/batches", {"model": "not-a-model-id", "prompts": ["x"]}),
        ("/batches", {"prompts": []}),
    ],
)
async def test_invalid_input_is_422_and_sends_nothing(
    serve: Serve, fake: FakeCometAPI, path: str, request_body: dict[str, Any]
) -> None:
    async with serve(fake) as service:
        response = await service.post(path, request_body)

    assert response.status_code == 422, response.text
    assert response.json()["error"] == "invalid_input"
    assert response.json()["problems"]
    assert fake.stats.count("create") == 0


async def test_upstream_rate_limit_is_503_with_retry_after(
    serve: Serve, fake: FakeCometAPI
) -> None:
    fake.script("create", Fault.rate_limited("30"))

    # A refused create is retried until its deadline; a wait that would end past
    # it (30 s against the request's 10) makes the session give up at once.
    async with serve(fake) as service:
        response = await service.post("/images", {"prompt": "x", "timeout": 10})

    assert response.status_code == 503
    assert response.headers["retry-after"] == "30"
    assert response.json()["error"] == "upstream_rate_limited"


async def test_failed_prediction_is_502_with_the_reason(serve: Serve) -> None:
    async with FakeCometAPI(default_latency=QUICK, failure_rate=1.0) as failing:
        async with serve(failing) as service:
            response = await service.post("/images", {"prompt": "x"})

    assert response.status_code == 502
    body = response.json()
    assert body["error"] == "prediction_failed"
    assert "NSFW" in body["reason"]
    assert body["prediction_id"] in failing.predictions


async def test_aborted_prediction_is_502_with_the_reason(serve: Serve) -> None:
    async with FakeCometAPI(default_latency=QUICK, abort_rate=1.0) as aborting:
        async with serve(aborting) as service:
            response = await service.post("/images", {"prompt": "x"})

    assert response.status_code == 502
    body = response.json()
    assert body["error"] == "prediction_canceled"
    assert body["reason"] == "status aborted"
    assert body["prediction_id"] in aborting.predictions


async def test_deadline_is_504_with_the_prediction_id(serve: Serve) -> None:
    latency = {"flux-1.1-pro-ultra": Latency.constant(5.0)}
    async with FakeCometAPI(default_latency=QUICK, latency=latency) as slow:
        async with serve(slow) as service:
            response = await service.post(
                "/images", {"model": ULTRA, "input": {"prompt": "x"}, "timeout": 0.1}
            )

    assert response.status_code == 504
    body = response.json()
    assert body["error"] == "prediction_timeout"
    assert body["prediction_id"] in slow.predictions
    assert body["last_status"] in {"starting", "processing"}


async def test_an_image_request_has_the_service_deadline_by_default(
    serve: Serve, monkeypatch: pytest.MonkeyPatch
) -> None:
    # IMAGE_SERVICE_DEADLINE (50 s by default, read at import) made short.
    monkeypatch.setattr(_example("image_service"), "REQUEST_DEADLINE", 0.2)
    latency = {"flux-1.1-pro-ultra": Latency.constant(5.0)}
    async with FakeCometAPI(default_latency=QUICK, latency=latency) as slow:
        async with serve(slow) as service:
            response = await service.post(
                "/images", {"model": ULTRA, "input": {"prompt": "x"}}
            )

    assert response.status_code == 504
    assert response.json()["prediction_id"] in slow.predictions


async def test_ambiguous_create_is_502_saying_it_may_be_billed(
    serve: Serve, fake: FakeCometAPI, caplog: pytest.LogCaptureFixture
) -> None:
    fake.script("create", Fault.ghost(502))

    async with serve(fake) as service:
        response = await service.post("/images", {"prompt": "x"})

    assert response.status_code == 502
    body = response.json()
    assert body["error"] == "ambiguous_submit"
    assert "billed" in body["detail"]
    assert fake.stats.created == 1  # why it says so: the prediction does exist
    assert fake.stats.duplicates == 0
    # What the gateway said, to reconcile with: its status and request id.
    assert body["upstream_status"] == 502
    assert body["request_id"]
    # Logged once at WARNING with the same facts and a digest of the input.
    warnings = [
        record.getMessage()
        for record in caplog.records
        if record.name == "image_service" and record.levelno == logging.WARNING
    ]
    assert len(warnings) == 1
    assert body["request_id"] in warnings[0]
    assert body["input_digest"] in warnings[0]
    assert "502" in warnings[0]
    assert fake.api_key not in caplog.text
    assert fake.api_key not in response.text


@pytest.mark.parametrize("upstream_status", [400, 401, 403])
async def test_other_upstream_errors_are_502(
    serve: Serve, fake: FakeCometAPI, upstream_status: int
) -> None:
    fake.script("create", Fault.status(upstream_status))

    async with serve(fake) as service:
        response = await service.post("/images", {"prompt": "x"})

    assert response.status_code == 502
    body = response.json()
    assert body["error"] == "upstream_error"
    assert body["upstream_status"] == upstream_status
    assert fake.api_key not in response.text


async def test_fifty_concurrent_requests_share_one_session(
    serve: Serve, fake: FakeCometAPI
) -> None:
    statuses: list[int] = []

    async def one_request(service: Service, n: int) -> None:
        response = await service.post("/images", {"prompt": f"request {n}"})
        statuses.append(response.status_code)

    async with serve(fake, max_concurrency=5) as service:
        with anyio.fail_after(20):
            async with anyio.create_task_group() as requests:
                for n in range(50):
                    requests.start_soon(one_request, service, n)

    assert statuses == [200] * 50
    assert len(service.sessions) == 1
    assert service.sessions[0].stats.succeeded == 50
    assert fake.stats.peak_in_flight <= 5
    assert fake.stats.created == 50
    assert fake.stats.duplicates == 0
