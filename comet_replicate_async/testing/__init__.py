"""Test utilities: a fake CometAPI server speaking the Replicate routes.

`FakeCometAPI` runs a real aiohttp server on loopback that creates and
serves FLUX predictions through their whole lifecycle, injects faults (random
or scripted with `Fault`), throttles creates, serves output images, and
records every request in `FakeStats`. The pytest plugin offers it as the
`fake_comet` fixture; `python -m comet_replicate_async.testing` runs it as
a separate process. `MockTransport` answers a session's requests from a function
instead, with no server at all.
"""

from __future__ import annotations

from ._faults import Fault
from ._mock_transport import MockTransport, mock_reply
from ._predictions import Latency, PredictionRecord
from ._server import FakeCometAPI
from ._stats import FakeStats, RequestRecord

__all__ = [
    "FakeCometAPI",
    "FakeStats",
    "Fault",
    "Latency",
    "MockTransport",
    "PredictionRecord",
    "RequestRecord",
    "mock_reply",
]
