"""The example services as deployed: real servers in subprocesses, against the fake.

FastAPI runs under uvicorn's command line, aiohttp.web under the example's own
`web.run_app`. Each reads its key and base URL from the environment, pointed at a
`FakeCometAPI` in this process whose predictions take 1 to 3 s, and keeps the
session's default of 32 slots. What is measured is what a service pays for:

- clients that hang up cost at most the predictions that held a slot;
- SIGTERM during a long batch starts no new prediction, the server exits within
  the grace period plus a margin, and every prediction it left running is named
  in its log.

Every wait is on a condition (a log line, the fake's counters, a reply), bounded
in time; every server is killed in a `finally`.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import anyio
import pytest

from comet_replicate_async.testing import FakeCometAPI, Latency

from helpers import eventually

pytestmark = pytest.mark.anyio

EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples"
SLOTS = 32  # the session's default max_concurrency, which the examples keep
GRACE = 0.5  # shorter than any prediction: those running at SIGTERM are abandoned
STARTUP = 30.0  # seconds a server may take to say where it listens
LISTENING = re.compile(r"running on http://127\.0\.0\.1:(\d+)", re.IGNORECASE)


@dataclass
class Server:
    """A server in a subprocess, and every line it has written so far."""

    process: asyncio.subprocess.Process
    lines: list[str] = field(default_factory=list)
    port: int = 0

    @property
    def log(self) -> str:
        return "".join(self.lines)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def read_output(self) -> None:
        assert self.process.stdout is not None
        async for line in self.process.stdout:
            self.lines.append(line.decode(errors="replace"))


def command(framework: str) -> list[str]:
    if framework == "fastapi":
        return [
            *(sys.executable, "-m", "uvicorn", "fastapi_app:app"),
            *("--host", "127.0.0.1", "--port", "0", "--no-access-log"),
        ]
    return [sys.executable, "aiohttp_app.py"]


@asynccontextmanager
async def serving(framework: str, fake: FakeCometAPI) -> AsyncIterator[Server]:
    """Start the example's server on a free loopback port; kill it on the way out."""
    env = {
        **os.environ,
        "COMETAPI_KEY": fake.api_key,
        "COMETAPI_BASE_URL": fake.base_url,
        "IMAGE_SERVICE_GRACE": str(GRACE),
        "HOST": "127.0.0.1",
        "PORT": "0",
        "PYTHONUNBUFFERED": "1",
    }
    process = await asyncio.create_subprocess_exec(
        *command(framework),
        cwd=EXAMPLES,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    server = Server(process)
    reader = asyncio.ensure_future(server.read_output())
    try:
        await eventually(
            lambda: bool(LISTENING.search(server.log)) or reader.done(),
            within=STARTUP,
        )
        found = LISTENING.search(server.log)
        assert found, server.log
        server.port = int(found.group(1))
        yield server
    finally:
        if process.returncode is None:
            process.kill()
        with anyio.fail_after(10):
            await process.wait()
            await reader


@pytest.fixture(params=["aiohttp", "fastapi"])
def framework(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture
async def fake() -> AsyncIterator[FakeCometAPI]:
    async with FakeCometAPI(default_latency=Latency.uniform(1, 3)) as server:
        yield server


def lines_naming(lines: list[str], ids: set[str]) -> dict[str, int]:
    """How many lines name each id."""
    return {
        prediction_id: sum(prediction_id in line for line in lines)
        for prediction_id in ids
    }


# The clients: one process that sends every request, says so, and waits to be
# killed. A SIGKILL closes all its connections at once, as the kernel does for a
# client that goes away: no client is still queued while others have left.
CLIENTS = """
import socket, sys
port, clients = int(sys.argv[1]), int(sys.argv[2])
connections = []
for n in range(clients):
    body = ('{"prompt": "a paper boat, take %d"}' % n).encode()
    connection = socket.create_connection(("127.0.0.1", port))
    connection.sendall(
        b"POST /images HTTP/1.1\\r\\nHost: service\\r\\n"
        b"Content-Type: application/json\\r\\n"
        + b"Content-Length: %d\\r\\n\\r\\n" % len(body) + body
    )
    connections.append(connection)
print("sent", flush=True)
sys.stdin.read()
"""


@pytest.mark.slow
async def test_clients_that_hang_up_cost_only_the_predictions_holding_a_slot(
    framework: str, fake: FakeCometAPI
) -> None:
    clients = 3 * SLOTS

    async with serving(framework, fake) as server:
        started = time.monotonic()
        leavers = await asyncio.create_subprocess_exec(
            *(sys.executable, "-c", CLIENTS, str(server.port), str(clients)),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        try:
            assert leavers.stdout is not None
            with anyio.fail_after(30):
                assert await leavers.stdout.readline() == b"sent\n"
                await anyio.sleep(0.3)  # the scenario: they leave 0.3 s after sending
                leavers.kill()
                await leavers.wait()
                # A request that stays: were any leaver still queued for a slot,
                # it would be created before this one is.
                async with aiohttp.ClientSession() as client:
                    async with client.post(
                        f"{server.url}/images", json={"prompt": "stays"}
                    ) as response:
                        assert response.status == 200, await response.text()
                        stayed = (await response.json())["id"]
                created_for_leavers = set(fake.predictions) - {stayed}
                # Each prediction created for a client that left is logged.
                await eventually(
                    lambda: all(
                        lines_naming(server.lines, created_for_leavers).values()
                    ),
                    within=10,
                )
        finally:
            if leavers.returncode is None:
                leavers.kill()
                await leavers.wait()
        took = time.monotonic() - started

    print(
        f"\n{framework}: {clients} clients left, {len(created_for_leavers)} "
        f"predictions created for them ({SLOTS} slots), {took:.1f} s"
    )
    assert len(created_for_leavers) <= SLOTS
    # ... once.
    assert set(lines_naming(server.lines, created_for_leavers).values()) <= {1}
    assert "Traceback" not in server.log
    assert fake.api_key not in server.log


@pytest.mark.slow
async def test_sigterm_during_a_batch_starts_no_new_prediction(
    framework: str, fake: FakeCometAPI
) -> None:
    prompts = [f"a fox, study {n}" for n in range(200)]
    lines: list[dict[str, object]] = []

    async with serving(framework, fake) as server:
        async with aiohttp.ClientSession() as client:
            async with client.post(
                f"{server.url}/batches", json={"prompts": prompts}
            ) as response:
                assert response.status == 200, await response.text()
                with anyio.fail_after(30):
                    # Signal once some items have finished and their slots were
                    # refilled: the batch is in full flow.
                    while len(lines) < 10:
                        lines.append(json.loads(await response.content.readline()))
                created_at_signal = fake.stats.created
                signalled = time.monotonic()
                server.process.send_signal(signal.SIGTERM)
                with anyio.fail_after(GRACE + 10):
                    lines += [json.loads(line) async for line in response.content]
        with anyio.fail_after(GRACE + 5):
            await server.process.wait()
        exited_after = time.monotonic() - signalled

    created_after_signal = fake.stats.created - created_at_signal
    delivered = {line["id"] for line in lines if line["ok"]}
    abandoned = set(fake.predictions) - delivered
    print(
        f"\n{framework}: {created_at_signal} created before SIGTERM, "
        f"{created_after_signal} after; exited {exited_after:.2f} s after it "
        f"(grace {GRACE} s); {len(abandoned)} abandoned, "
        f"{len(delivered)} delivered of {len(prompts)}"
    )
    assert created_after_signal <= SLOTS
    assert exited_after < GRACE + 5
    # Those left running are named in the log (the rest were delivered).
    assert abandoned
    assert all(lines_naming(server.lines, abandoned).values()), server.log
    # The stream ended with a line that says why, not with a cut connection.
    assert lines[-1]["ok"] is False
    assert lines[-1]["error"] == "abandoned"
    assert "Traceback" not in server.log
    assert fake.api_key not in server.log
