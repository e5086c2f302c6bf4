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
example): reading jobs, JSON bodies, the error → HTTP status mapping, settings
and logging.

Two things make it cost nothing it should not:

- `CancelOnDisconnect` cancels a request whose client hung up (Starlette would run
  it to its end), so a request still waiting for a slot never creates its
  prediction.
- SIGTERM (or Ctrl-C) closes the session with a grace period at once: no new
  create is sent, predictions already created get `IMAGE_SERVICE_GRACE` seconds
  to finish, then their ids are logged. uvicorn runs the lifespan's exit only
  after every connection has closed, and a streamed batch would go on creating
  until then.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import threading
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator
from contextlib import aclosing, asynccontextmanager, contextmanager
from types import FrameType
from typing import Annotated, Any, TypedDict

import anyio
from anyio.abc import TaskStatus
from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from image_service import (
    DEFAULT_MODEL,
    SHUTDOWN_GRACE,
    batch_job,
    configure_logging,
    configure_telemetry,
    error_json,
    error_reply,
    image_job,
    item_json,
    prediction_json,
)
from pydantic import BaseModel, ConfigDict

from comet_replicate_async import (
    BatchItem,
    CancelOnDisconnect,
    CometReplicateError,
    Session,
)

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


def create_app(
    session_factory: SessionFactory = Session, *, grace: float = SHUTDOWN_GRACE
) -> FastAPI:
    """The app, with its session built by `session_factory` when it starts.

    The default reads `COMETAPI_KEY` and `COMETAPI_BASE_URL`. Pass e.g.
    `functools.partial(Session, max_concurrency=8)` to tune it, or a factory
    pointed at `FakeCometAPI` in tests. `grace` is how long a shutdown waits for
    predictions already created.
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[State]:
        # Entered and left by the server's lifespan task: the session's poller
        # runs for as long as the app serves. Log lines get a time, level and
        # logger, unless the server's logging config already gave them one
        # (`python fastapi_app.py` does; `uvicorn fastapi_app:app` does not).
        configure_logging()
        configure_telemetry()  # before the session: it uses the global providers
        stopping = anyio.Event()
        async with anyio.create_task_group() as tasks:
            session: Session = await tasks.start(
                _keep_session, session_factory, stopping, grace
            )
            with _on_shutdown_signal(stopping.set):
                yield {"session": session}
            stopping.set()

    app = FastAPI(title="Images through CometAPI", lifespan=lifespan)
    app.add_middleware(CancelOnDisconnect)
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


async def _keep_session(
    session_factory: SessionFactory,
    stopping: anyio.Event,
    grace: float,
    *,
    task_status: TaskStatus[Session],
) -> None:
    # A session is closed by the task that opened it: this one, which can close it
    # as soon as the shutdown starts, not when the lifespan ends.
    async with session_factory() as session:
        task_status.started(session)
        await stopping.wait()
        await session.aclose(grace=grace)


@contextmanager
def _on_shutdown_signal(callback: Callable[[], None]) -> Iterator[None]:
    """Call `callback` on SIGTERM or SIGINT, then the server's own handler."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signals reach the main thread only; its server handles them
        return
    loop = asyncio.get_running_loop()
    signals = (signal.SIGTERM, signal.SIGINT)
    previous = {number: signal.getsignal(number) for number in signals}

    def handle(number: int, frame: FrameType | None) -> None:
        loop.call_soon_threadsafe(callback)
        server_handler = previous[signal.Signals(number)]
        if callable(server_handler):
            server_handler(number, frame)

    for number in signals:
        signal.signal(number, handle)
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


async def _ndjson_lines(batch: AsyncGenerator[BatchItem, None]) -> AsyncIterator[str]:
    # aclosing: when the client hangs up, the batch stops pulling inputs and its
    # unfinished items are abandoned instead of running on for nobody.
    async with aclosing(batch) as items:
        try:
            async for item in items:
                yield json.dumps(item_json(item)) + "\n"
        except CometReplicateError as error:
            # The batch ended early (the session is shutting down): say so last.
            yield json.dumps(error_json(error)) + "\n"


async def _error_response(request: Request, error: Exception) -> JSONResponse:
    # Registered for CometReplicateError only: anything else is a bug, and
    # Starlette's default 500 (with the traceback in the server log) fits it.
    reply = error_reply(error)
    return JSONResponse(reply.body, status_code=reply.status, headers=reply.headers)


app = create_app()

if __name__ == "__main__":
    import uvicorn

    configure_logging()
    uvicorn.run(
        app,
        host=os.environ.get("HOST", "127.0.0.1"),
        port=int(os.environ.get("PORT", "8000")),
        # Keep the logging configured above, with its timestamps.
        log_config=None,
    )
