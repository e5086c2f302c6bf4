"""A FastAPI service that makes images through one shared `Session`.

    COMETAPI_KEY=... uvicorn fastapi_app:app --app-dir docs/examples

`POST /images` runs one prediction and answers with its output URLs:

    curl -d '{"prompt": "a paper boat"}' -H 'Content-Type: application/json' \\
        localhost:8000/images

`POST /batches` runs many and streams one NDJSON line per prediction as each
finishes (`{"prompts": [...]}`, or `{"model": ..., "inputs": [...]}`).

One `Session` lives as long as the app: opened in the lifespan, handed to each
request by a dependency. Its concurrency limit, create pacing and 429 pauses
therefore hold for the whole service, not per request. `image_service.py`, beside
this file, holds what does not depend on FastAPI (and is shared with the aiohttp
example): reading jobs, JSON bodies, and the error → HTTP status mapping.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from contextlib import aclosing, asynccontextmanager
from typing import Annotated, Any, TypedDict

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from image_service import (
    DEFAULT_MODEL,
    batch_job,
    error_reply,
    image_job,
    item_json,
    prediction_json,
)
from pydantic import BaseModel, ConfigDict

from comet_replicate_async import BatchItem, CometReplicateError, Session

SessionFactory = Callable[[], Session]


class ImageRequest(BaseModel):
    """`{"prompt": ...}` for flux-schnell, or a model and its whole input."""

    model_config = ConfigDict(extra="forbid")

    model: str = DEFAULT_MODEL
    prompt: str | None = None
    input: dict[str, Any] | None = None
    timeout: float | None = None


class BatchRequest(BaseModel):
    """`{"prompts": [...]}` for flux-schnell, or a model and one input per item."""

    model_config = ConfigDict(extra="forbid")

    model: str = DEFAULT_MODEL
    prompts: list[str] | None = None
    inputs: list[dict[str, Any]] | None = None
    timeout: float | None = None


class ImageResult(BaseModel):
    """A succeeded prediction."""

    id: str
    model: str
    status: str
    output: list[str]
    predict_time: float | None


class State(TypedDict):
    """What the lifespan shares with every request (`request.state`)."""

    session: Session


def get_session(request: Request) -> Session:
    """The app's one session: a dependency, so tests and routes never build one."""
    session: Session = request.state.session
    return session


SharedSession = Annotated[Session, Depends(get_session)]


def create_app(session_factory: SessionFactory = Session) -> FastAPI:
    """The app, with its session built by `session_factory` when it starts.

    The default reads `COMETAPI_KEY` and `COMETAPI_BASE_URL`. Pass e.g.
    `functools.partial(Session, max_concurrency=8)` to tune it, or a factory
    pointed at `FakeCometAPI` in tests.
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[State]:
        # Entered and left by the server's lifespan task: the session's poller
        # runs for as long as the app serves.
        async with session_factory() as session:
            yield {"session": session}

    app = FastAPI(title="Images through CometAPI", lifespan=lifespan)
    app.add_exception_handler(CometReplicateError, _error_response)

    @app.post("/images")
    async def make_image(body: ImageRequest, session: SharedSession) -> ImageResult:
        """Run one prediction and answer with its output URLs."""
        job = image_job(
            model=body.model, input=body.input, prompt=body.prompt, timeout=body.timeout
        )
        prediction = await session.run(job.model, job.input, timeout=job.timeout)
        return ImageResult(**prediction_json(prediction))

    @app.post("/batches")
    async def make_batch(
        body: BatchRequest, session: SharedSession
    ) -> StreamingResponse:
        """Run one prediction per item; stream each outcome as it finishes."""
        job = batch_job(
            model=body.model,
            inputs=body.inputs,
            prompts=body.prompts,
            timeout=body.timeout,
        )
        # Called here, before the reply starts, so a bad model id is still a 422.
        batch = session.as_completed(job.model, job.inputs, timeout=job.timeout)
        return StreamingResponse(
            _ndjson_lines(batch), media_type="application/x-ndjson"
        )

    return app


async def _ndjson_lines(batch: AsyncGenerator[BatchItem, None]) -> AsyncIterator[str]:
    # aclosing: when the client hangs up, the batch stops pulling inputs and its
    # unfinished items are abandoned instead of running on for nobody.
    async with aclosing(batch) as items:
        async for item in items:
            yield json.dumps(item_json(item)) + "\n"


async def _error_response(request: Request, error: Exception) -> JSONResponse:
    # Registered for CometReplicateError only: anything else is a bug, and
    # Starlette's default 500 (with the traceback in the server log) fits it.
    reply = error_reply(error)
    return JSONResponse(reply.body, status_code=reply.status, headers=reply.headers)


app = create_app()
