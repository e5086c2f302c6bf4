"""An aiohttp.web service that makes images through one shared `Session`.

    COMETAPI_KEY=... python docs/examples/aiohttp_app.py

The same two routes as `fastapi_app.py`: `POST /images` runs one prediction and
answers with its output URLs; `POST /batches` streams one NDJSON line per
prediction as each finishes.

The session is opened by a `cleanup_ctx` generator when the app starts and
stored under an `AppKey`, so handlers get it typed. On shutdown (SIGTERM or
Ctrl-C) `on_shutdown` closes it with a grace period before the server waits for
its handlers: no new create is sent, predictions already created get
`IMAGE_SERVICE_GRACE` seconds to finish, then their ids are logged.

`run_app(handler_cancellation=True)` cancels the handler of a client that hung
up, so a request still waiting for a slot never creates its prediction.
`image_service.py`, beside this file, holds what does not depend on aiohttp.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler
from image_service import (
    SHUTDOWN_GRACE,
    batch_job_from_json,
    configure_logging,
    configure_telemetry,
    error_json,
    error_reply,
    image_job_from_json,
    item_json,
    prediction_json,
)

from comet_replicate_async import CometReplicateError, InputValidationError, Session

SessionFactory = Callable[[], Session]

SESSION = web.AppKey("session", Session)


def create_app(
    session_factory: SessionFactory = Session, *, grace: float = SHUTDOWN_GRACE
) -> web.Application:
    """The app, with its session built by `session_factory` when it starts.

    The default reads `COMETAPI_KEY` and `COMETAPI_BASE_URL`. Pass e.g.
    `functools.partial(Session, max_concurrency=8)` to tune it, or a factory
    pointed at `FakeCometAPI` in tests. `grace` is how long a shutdown waits for
    predictions already created.
    """

    async def session_context(app: web.Application) -> AsyncIterator[None]:
        # Runs to the `yield` on startup and on from it at cleanup, both in the
        # task that starts and stops the app, as the session's task group needs.
        configure_telemetry()  # before the session: it uses the global providers
        async with session_factory() as session:
            app[SESSION] = session
            yield

    async def close_session(app: web.Application) -> None:
        # on_shutdown runs before the server waits for its handlers, and in the
        # task that opened the session: handlers still waiting for a slot end at
        # once, the others within the grace.
        await app[SESSION].aclose(grace=grace)

    app = web.Application(middlewares=[map_errors])
    app.cleanup_ctx.append(session_context)
    app.on_shutdown.append(close_session)
    app.router.add_post("/images", make_image)
    app.router.add_post("/batches", make_batch)
    return app


async def make_image(request: web.Request) -> web.Response:
    """Run one prediction and answer with its output URLs."""
    job = image_job_from_json(await _read_json(request))
    session = request.app[SESSION]
    prediction = await session.run(job.model, job.input, timeout=job.timeout)
    return web.json_response(prediction_json(prediction))


async def make_batch(request: web.Request) -> web.StreamResponse:
    """Run one prediction per item; stream each outcome as it finishes."""
    job = batch_job_from_json(await _read_json(request))
    session = request.app[SESSION]
    # Called before the reply starts, so a bad model id is still a plain 422.
    batch = session.as_completed(job.model, job.inputs, timeout=job.timeout)
    response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
    async with aclosing(batch) as items:
        await response.prepare(request)
        try:
            async for item in items:
                await _write_line(response, item_json(item))
        except ConnectionResetError:
            # The client hung up. Leaving `aclosing` abandons the unfinished
            # items instead of running them on for nobody.
            return response
        except CometReplicateError as error:
            # The batch ended early (the session is shutting down): say so last.
            await _write_line(response, error_json(error))
    await response.write_eof()
    return response


async def _write_line(response: web.StreamResponse, line: dict[str, Any]) -> None:
    await response.write(json.dumps(line).encode() + b"\n")


@web.middleware
async def map_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Answer this client's errors with the statuses `error_reply` gives them."""
    try:
        return await handler(request)
    except CometReplicateError as error:
        reply = error_reply(error)
        return web.json_response(reply.body, status=reply.status, headers=reply.headers)


async def _read_json(request: web.Request) -> object:
    try:
        data: object = await request.json()
    except ValueError:
        raise InputValidationError("the body is not valid JSON") from None
    return data


if __name__ == "__main__":
    configure_logging()
    web.run_app(
        create_app(),
        host=os.environ.get("HOST", "127.0.0.1"),
        port=int(os.environ.get("PORT", "8080")),
        # Cancel the handler of a client that hung up: what it waits for (a slot,
        # a create's turn) is then never paid for.
        handler_cancellation=True,
    )
