from __future__ import annotations

from pathlib import Path

import pytest

# The session's PostgreSQL server, for the shared journal's tests.
pytest_plugins = ["postgres_server"]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True)
def _clean_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    # Tests never see the developer's real key or base URL.
    monkeypatch.delenv("COMETAPI_KEY", raising=False)
    monkeypatch.delenv("COMETAPI_BASE_URL", raising=False)


@pytest.fixture(autouse=True)
def _price_cache_in_tmp(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # The price catalogue's cache goes to the test's own directory (subprocesses
    # inherit it), never to the developer's home.
    monkeypatch.setenv("COMET_REPLICATE_CACHE_DIR", str(tmp_path / "price-cache"))
