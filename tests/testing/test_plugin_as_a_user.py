"""The `fake_comet` fixture, used exactly as a user's test suite would use it.

Only public names are imported; `docs/testing.md` shows this file as its example.
"""

from __future__ import annotations

import pytest

from comet_replicate_async import FluxSchnell, Session
from comet_replicate_async.testing import FakeCometAPI, Fault

pytestmark = pytest.mark.anyio


# The code under test: an app's own function, which opens its own session.
async def make_thumbnails(
    prompts: list[str], *, max_concurrency: int = 4
) -> dict[str, str | None]:
    """One PNG per prompt: its URL, or None where it could not be made."""
    inputs = [{"prompt": prompt, "output_format": "png"} for prompt in prompts]
    async with Session(max_concurrency=max_concurrency) as session:
        items = await session.gather(FluxSchnell, inputs)
    return {
        prompt: item.prediction.output_urls[0] if item.ok and item.prediction else None
        for prompt, item in zip(prompts, items, strict=True)
    }


@pytest.fixture
def fake(fake_comet: FakeCometAPI, monkeypatch: pytest.MonkeyPatch) -> FakeCometAPI:
    """The fake, with `Session()` pointed at it through the usual variables."""
    monkeypatch.setenv("COMETAPI_KEY", fake_comet.api_key)
    monkeypatch.setenv("COMETAPI_BASE_URL", fake_comet.base_url)
    return fake_comet


async def test_every_prompt_gets_its_image(fake: FakeCometAPI) -> None:
    thumbnails = await make_thumbnails(["a fox", "an owl", "a boat"])

    assert all(url and url.endswith(".png") for url in thumbnails.values())
    assert fake.stats.created == 3
    assert fake.stats.count("create", 201) == 3
    sent = [record.input for record in fake.predictions.values()]
    assert {"prompt": "an owl", "output_format": "png"} in sent


async def test_no_more_in_flight_than_allowed(fake: FakeCometAPI) -> None:
    prompts = [f"study {n}" for n in range(12)]

    thumbnails = await make_thumbnails(prompts, max_concurrency=3)

    assert None not in thumbnails.values()
    assert fake.stats.peak_in_flight <= 3


async def test_a_throttled_create_is_retried_and_paid_once(fake: FakeCometAPI) -> None:
    fake.script("create", Fault.rate_limited(retry_after="0.1"))

    thumbnails = await make_thumbnails(["a fox"])

    assert thumbnails["a fox"] is not None
    assert fake.stats.count("create", 429) == 1
    assert fake.stats.count("create", 201) == 1
    assert fake.stats.duplicates == 0


async def test_a_create_that_may_have_happened_is_not_sent_again(
    fake: FakeCometAPI,
) -> None:
    # The server creates the prediction, then answers 502: the client cannot know.
    fake.script("create", Fault.ghost(502))

    thumbnails = await make_thumbnails(["a fox"])

    assert thumbnails == {"a fox": None}
    assert fake.stats.created == 1
    assert fake.stats.count("create") == 1  # one request: nothing paid twice


async def test_every_api_request_carries_the_key(fake: FakeCometAPI) -> None:
    await make_thumbnails(["a fox"])

    api_requests = [
        r for r in fake.stats.requests_log if r.route in {"create", "query"}
    ]
    assert api_requests
    assert all(
        r.headers["Authorization"] == f"Bearer {fake.api_key}" for r in api_requests
    )
