"""An ASGI middleware that cancels a request whose client hung up.

Starlette (so FastAPI) runs an endpoint to its end even when its client has gone:
a `session.run` waiting for a concurrency slot would still create, and pay for, a
prediction nobody reads. Cancelling the request's task instead lets the session do
what it does for any cancelled caller: a create not sent yet is never sent, and a
prediction already created stops being tracked, its id logged once.

Plain ASGI: no web framework is imported.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import anyio

__all__ = ["CancelOnDisconnect"]

logger = logging.getLogger("comet_replicate_async")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class CancelOnDisconnect:
    """ASGI middleware: an HTTP request whose client disconnects is cancelled.

    ```python
    app = FastAPI(lifespan=lifespan)
    app.add_middleware(CancelOnDisconnect)
    ```

    A request cancelled this way sends no reply (nobody is left to read it). One
    whose reply was sent in full is never cancelled, so background tasks that run
    after the reply carry on. The request body still reaches the app one message
    at a time, with the server's flow control; the app's own `receive()` calls
    see `http.disconnect` as usual.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # This middleware is the only reader of the server's `receive`: the app
        # reads through a one-message buffer, so it never races the watcher.
        to_app, from_client = anyio.create_memory_object_stream[Message](1)
        replied = False

        async def app_receive() -> Message:
            try:
                return await from_client.receive()
            except anyio.EndOfStream:
                return {"type": "http.disconnect"}

        async def app_send(message: Message) -> None:
            nonlocal replied
            await send(message)
            if message["type"] == "http.response.body" and not message.get(
                "more_body", False
            ):
                replied = True

        async def watch(app_scope: anyio.CancelScope) -> None:
            async with to_app:
                while (message := await receive())["type"] != "http.disconnect":
                    await to_app.send(message)
            # A server also says "disconnect" once the reply is complete.
            if not replied:
                logger.info(
                    "client disconnected: cancelling %s %s",
                    scope.get("method"),
                    scope.get("path"),
                )
                app_scope.cancel()

        error: Exception | None = None
        with from_client:
            async with anyio.create_task_group() as watcher:
                app_scope = anyio.CancelScope()
                watcher.start_soon(watch, app_scope)
                try:
                    with app_scope:
                        await self.app(scope, app_receive, app_send)
                except Exception as failure:
                    # Raised below as itself, not inside an ExceptionGroup.
                    error = failure
                finally:
                    watcher.cancel_scope.cancel()
        if error is not None:
            raise error
