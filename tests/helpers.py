"""Shared test helpers (plain functions, no fixtures)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio

from comet_replicate_async import RetryPolicy, Session
from comet_replicate_async.testing import FakeCometAPI

SCHNELL = "black-forest-labs/flux-schnell"
PRO = "black-forest-labs/flux-pro"

# Retries in tests: quick, but the same decisions as the defaults.
FAST_RETRY = RetryPolicy(initial_backoff=0.01, max_backoff=0.05)


def session_for(fake: FakeCometAPI, **options: Any) -> Session:
    """A session pointed at the fake, with quick retries unless told otherwise."""
    options.setdefault("retry", FAST_RETRY)
    return Session(fake.api_key, base_url=fake.base_url, **options)


async def eventually(condition: Callable[[], bool], *, within: float = 5.0) -> None:
    """Wait until `condition()` holds, failing the test after `within` seconds."""
    with anyio.fail_after(within):
        # The state belongs to other tasks and has no event of its own to await.
        while not condition():  # noqa: ASYNC110
            await anyio.sleep(0.005)
