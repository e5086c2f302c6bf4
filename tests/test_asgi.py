"""`CancelOnDisconnect`, driven as an ASGI server drives it: `receive` and `send`
calls over memory streams. Served by uvicorn in `test_example_servers.py`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio
import pytest

from comet_replicate_async import CancelOnDisconnect

pytestmark = pytest.mark.anyio

Message = dict[str, Any]
SCOPE = {"type": "http", "method": "POST", "path": "/images"}
BODY = {"type": "http.request", "body": b'{"prompt": "x"}', "more_body": False}
DISCONNECT = {"type": "http.disconnect"}


class Client:
    """The server's side of one request: what the client sends, what the app sent."""

    def __init__(self) -> None:
        self.to_app, self._incoming = anyio.create_memory_object_stream[Message](10)
        self.sent: list[Message] = []
        self.replied = anyio.Event()

    async def receive(self) -> Message:
        return await self._incoming.receive()

    async def send(self, message: Message) -> None:
        self.sent.append(message)
        if message["type"] == "http.response.body":
            self.replied.set()

    def close(self) -> None:
        self.to_app.close()
        self._incoming.close()


async def test_a_client_that_hangs_up_cancels_its_request() -> None:
    client = Client()
    waiting = anyio.Event()
    seen: list[Message] = []
    cancelled = False

    async def app(scope: Any, receive: Any, send: Any) -> None:
        nonlocal cancelled
        seen.append(await receive())
        try:
            waiting.set()
            await anyio.sleep_forever()  # e.g. waiting for a concurrency slot
        except anyio.get_cancelled_exc_class():
            cancelled = True
            raise

    with anyio.fail_after(5):
        async with anyio.create_task_group() as server:
            server.start_soon(
                CancelOnDisconnect(app), SCOPE, client.receive, client.send
            )
            await client.to_app.send(BODY)
            await waiting.wait()
            await client.to_app.send(DISCONNECT)
    client.close()

    assert seen == [BODY]
    assert cancelled
    assert client.sent == []  # nobody is left to read a reply


async def reply_then_hang_up(
    app: Any, client: Client, then: Callable[[], None] = lambda: None
) -> None:
    """Serve one request whose client leaves once the reply is complete; `then`
    runs when everything is blocked after that."""
    with anyio.fail_after(5):
        async with anyio.create_task_group() as server:
            server.start_soon(
                CancelOnDisconnect(app), SCOPE, client.receive, client.send
            )
            await client.to_app.send(BODY)
            await client.replied.wait()
            await client.to_app.send(DISCONNECT)
            await anyio.wait_all_tasks_blocked()
            then()
    client.close()


async def test_a_request_replied_in_full_is_not_cancelled_afterwards() -> None:
    # Servers say "disconnect" once the reply is complete; work the app does
    # after its reply (background tasks) must carry on.
    go_on = anyio.Event()
    finished = False

    async def app(scope: Any, receive: Any, send: Any) -> None:
        nonlocal finished
        await receive()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})
        await go_on.wait()
        finished = True

    await reply_then_hang_up(app, Client(), then=go_on.set)

    assert finished


async def test_the_app_still_reads_the_disconnect_after_its_reply() -> None:
    received: list[Message] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        received.append(await receive())
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})
        received.append(await receive())  # as Starlette's disconnect listener does

    await reply_then_hang_up(app, Client())

    assert received == [BODY, DISCONNECT]


async def test_an_error_of_the_app_propagates_as_itself() -> None:
    client = Client()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        raise LookupError("a bug in the app")

    await client.to_app.send(BODY)
    with anyio.fail_after(5), pytest.raises(LookupError, match="a bug"):
        await CancelOnDisconnect(app)(SCOPE, client.receive, client.send)
    client.close()


async def test_other_scopes_pass_through() -> None:
    client = Client()
    scopes: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        scopes.append(scope["type"])

    with anyio.fail_after(5):
        await CancelOnDisconnect(app)({"type": "lifespan"}, client.receive, client.send)
    client.close()

    assert scopes == ["lifespan"]
