"""Pytest plugin (entry point `pytest11`): the `fake_comet` fixture."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from . import FakeCometAPI

__all__ = ["fake_comet"]


@pytest.fixture
async def fake_comet() -> AsyncIterator[FakeCometAPI]:
    """A started `FakeCometAPI` with default settings, closed after the test.

    Async fixtures run under anyio's pytest plugin: mark the test
    `pytest.mark.anyio` and provide an `anyio_backend` fixture.
    """
    async with FakeCometAPI() as fake:
        yield fake
