"""An asyncio-first client for CometAPI's Replicate-format FLUX image predictions.

```python
from comet_replicate_async import Session

async with Session() as session:
    pred = await session.run("black-forest-labs/flux-schnell", {"prompt": "a boat"})
    print(pred.status, pred.output_urls)
```
"""

from __future__ import annotations

from typing import Any

import attrs

from ._asgi import CancelOnDisconnect
from ._batch.tracker import BatchIterator
from ._config import RequestTimeout
from ._exceptions import (
    AmbiguousSubmitError,
    APIConnectionError,
    APIError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    BatchStoppedError,
    BudgetExceededError,
    CometReplicateError,
    ConfigurationError,
    InputValidationError,
    JournalError,
    JournalInputChanged,
    JournalInUse,
    ModelNotFoundError,
    NotFoundError,
    OutputExpiredError,
    PermissionDeniedError,
    PredictionAbandoned,
    PredictionCanceled,
    PredictionError,
    PredictionFailed,
    PredictionTimeout,
    RateLimitError,
    ServerError,
    UnexpectedResponseError,
)
from ._futures import PredictionFuture
from ._html import HtmlGrid, html_grid
from ._inputs.base import FluxInput
from ._inputs.flux import (
    Flux11Pro,
    Flux11ProUltra,
    FluxDev,
    FluxKontextMax,
    FluxKontextPro,
    FluxPro,
    FluxSchnell,
    typed_input_class,
)
from ._journal.base import Journal, JournalRecord
from ._polling.schedule import PollPolicy
from ._retry import RetryPolicy
from ._sansio import RawResponse, RequestSpec
from ._session import Session
from ._stats import Event, SessionStats
from ._transports.base import Transport
from ._values import BatchItem, Metrics, Prediction, Status

__all__ = [
    "APIConnectionError",
    "APIError",
    "APITimeoutError",
    "AmbiguousSubmitError",
    "AuthenticationError",
    "BadRequestError",
    "BatchItem",
    "BatchIterator",
    "BatchStoppedError",
    "BudgetExceededError",
    "CancelOnDisconnect",
    "CometReplicateError",
    "ConfigurationError",
    "Event",
    "Flux11Pro",
    "Flux11ProUltra",
    "FluxDev",
    "FluxInput",
    "FluxKontextMax",
    "FluxKontextPro",
    "FluxPro",
    "FluxSchnell",
    "HtmlGrid",
    "InputValidationError",
    "Journal",
    "JournalError",
    "JournalInUse",
    "JournalInputChanged",
    "JournalRecord",
    "Metrics",
    "ModelNotFoundError",
    "NotFoundError",
    "OutputExpiredError",
    "PermissionDeniedError",
    "PollPolicy",
    "Prediction",
    "PredictionAbandoned",
    "PredictionCanceled",
    "PredictionError",
    "PredictionFailed",
    "PredictionFuture",
    "PredictionTimeout",
    "RateLimitError",
    "RawResponse",
    "RequestSpec",
    "RequestTimeout",
    "RetryPolicy",
    "ServerError",
    "Session",
    "SessionStats",
    "Status",
    "Transport",
    "UnexpectedResponseError",
    "html_grid",
    "typed_input_class",
]

# Public names report this package as their home, not the private module. Type
# hints of attrs classes are resolved first, while every module is still theirs.
for _name in __all__:
    if attrs.has(_obj := globals()[_name]):
        attrs.resolve_types(_obj)
for _name in __all__:
    globals()[_name].__module__ = __name__
del _name, _obj


def __getattr__(name: str) -> Any:
    if name == "__version__":
        from importlib.metadata import version

        return version("comet-replicate-async")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
