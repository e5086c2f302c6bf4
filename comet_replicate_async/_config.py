"""Session settings: the API key, the base URL and per-request timeouts."""

from __future__ import annotations

import os
from urllib.parse import urlsplit

import attrs

from ._exceptions import ConfigurationError

__all__ = [
    "DEFAULT_BASE_URL",
    "DEFAULT_TIMEOUT",
    "ApiKey",
    "RequestTimeout",
    "resolve_api_key",
    "resolve_base_url",
    "resolve_request_timeout",
]

DEFAULT_BASE_URL = "https://api.cometapi.com"
# The default per-prediction deadline, in seconds. Replicate ends a prediction
# after 30 minutes; five more cover a queue at the gateway and the last polls. A
# finite default means no wait hangs on a prediction the server never finishes.
DEFAULT_TIMEOUT = 35 * 60.0
# CometAPI's own SDK and CLI set COMETAPI_BASE_URL to the OpenAI-style root.
_API_ROOT_SUFFIXES = ("/v1beta", "/v1")


@attrs.frozen(repr=False)
class ApiKey:
    """The API key, kept out of every repr, str and log line."""

    _value: str = attrs.field(alias="value")

    def reveal(self) -> str:
        """The key itself; only the transport calls this, to build the header."""
        return self._value

    def __repr__(self) -> str:
        return "ApiKey('***')"

    __str__ = __repr__


@attrs.frozen
class RequestTimeout:
    """Timeouts of one HTTP call, in seconds.

    Args:
        connect: to open a connection (a connect timeout means nothing was sent).
        create_read: to wait for the reply of a create.
        query_read: to wait for the reply of a query. Long on purpose: CometAPI's
            query has been seen to take 45 s and more.
    """

    connect: float = 10.0
    create_read: float = 60.0
    query_read: float = 90.0


def resolve_request_timeout(value: RequestTimeout | float | None) -> RequestTimeout:
    """A `RequestTimeout` from one, from seconds (connect and read alike), or None.

    Raises:
        TypeError: for any other type, naming the parameter.
        ValueError: for seconds that are not positive.
    """
    if value is None:
        return RequestTimeout()
    if isinstance(value, RequestTimeout):
        return value
    # bool is an int, but `request_timeout=True` is a mistake, not one second.
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise TypeError(
            "request_timeout must be seconds (a float) or a RequestTimeout, "
            f"got {type(value).__name__}"
        )
    if not value > 0:
        raise ValueError(f"request_timeout must be positive, got {value}")
    seconds = float(value)
    return RequestTimeout(connect=seconds, create_read=seconds, query_read=seconds)


def resolve_api_key(api_key: str | None) -> ApiKey:
    """The key given, else `COMETAPI_KEY`; a missing key is a `ConfigurationError`."""
    value = api_key if api_key is not None else os.environ.get("COMETAPI_KEY", "")
    value = value.strip()
    if not value:
        raise ConfigurationError(
            "no API key: pass Session(api_key=...) or set COMETAPI_KEY"
        )
    return ApiKey(value)


def resolve_base_url(base_url: str | None) -> str:
    """The base given, else `COMETAPI_BASE_URL`, else the default, without `/v1`.

    The API root is accepted with or without a trailing `/v1` or `/v1beta`, since
    CometAPI's own tools set it that way for their OpenAI-style calls.
    """
    value = base_url or os.environ.get("COMETAPI_BASE_URL") or DEFAULT_BASE_URL
    value = value.strip().rstrip("/")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        # The value itself may be a mistyped secret; name only what is wrong.
        raise ConfigurationError(
            "base URL must be an http(s) URL such as https://api.cometapi.com"
        )
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ConfigurationError(
            "base URL must not carry a query, a fragment or credentials"
        )
    for suffix in _API_ROOT_SUFFIXES:
        if value.endswith(suffix):
            value = value[: -len(suffix)]
            break
    return value
