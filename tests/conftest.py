from __future__ import annotations

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
