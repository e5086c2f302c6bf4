from __future__ import annotations

import pytest

from comet_replicate_async import ConfigurationError, Session
from comet_replicate_async._config import resolve_api_key, resolve_base_url


def test_key_from_the_argument_or_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert resolve_api_key("sk-given").reveal() == "sk-given"
    monkeypatch.setenv("COMETAPI_KEY", "sk-env")
    assert resolve_api_key(None).reveal() == "sk-env"


def test_missing_key_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="COMETAPI_KEY"):
        Session()


def test_key_is_hidden_in_reprs() -> None:
    key = resolve_api_key("sk-secret-123")
    session = Session("sk-secret-123")

    for text in (repr(key), str(key), repr(session), str(session)):
        assert "sk-secret-123" not in text


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (None, "https://api.cometapi.com"),
        ("https://api.cometapi.com/", "https://api.cometapi.com"),
        ("https://api.cometapi.com/v1", "https://api.cometapi.com"),
        ("https://api.cometapi.com/v1/", "https://api.cometapi.com"),
        ("https://api.cometapi.com/v1beta", "https://api.cometapi.com"),
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
        ("https://proxy.example/comet/v1", "https://proxy.example/comet"),
    ],
)
def test_base_url_with_or_without_v1(given: str | None, expected: str) -> None:
    assert resolve_base_url(given) == expected


def test_base_url_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COMETAPI_BASE_URL", "https://api.cometapi.com/v1")

    assert Session("k").base_url == "https://api.cometapi.com"


@pytest.mark.parametrize(
    "given",
    ["api.cometapi.com", "ftp://x", "https://", "https://u:p@h", "https://h/?q=1"],
)
def test_bad_base_urls_are_configuration_errors(given: str) -> None:
    with pytest.raises(ConfigurationError, match="base URL"):
        resolve_base_url(given)


def test_bad_base_url_error_does_not_echo_the_value() -> None:
    with pytest.raises(ConfigurationError) as caught:
        resolve_base_url("sk-pasted-key-by-mistake")

    assert "sk-pasted-key-by-mistake" not in str(caught.value)


def test_prefer_wait_is_bounded() -> None:
    with pytest.raises(ValueError, match="prefer_wait"):
        Session("k", prefer_wait=61)
