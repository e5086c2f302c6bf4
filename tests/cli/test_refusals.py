"""The command line and the gateway's refusals: an unknown model ends a batch in
one line that names it, an outage prints one line when creates stop and one
when they go on, and `doctor` only warns about an unreadable price catalogue."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from anyio.from_thread import start_blocking_portal
from cli_support import API_KEY

from comet_replicate_async._cli import main
from comet_replicate_async._cli._doctor import render, run_checks
from comet_replicate_async.testing import FakeCometAPI, Fault, Latency

from helpers import SCHNELL, TYPO


@pytest.fixture
def threaded_fake() -> Iterator[FakeCometAPI]:
    """A fake in a thread of its own, for `main()` in the test's thread."""
    with start_blocking_portal() as portal:
        server = FakeCometAPI(api_key=API_KEY, default_latency=Latency.constant(0.02))
        portal.call(server.start)
        try:
            yield server
        finally:
            portal.call(server.close)


def batch_command(fake: FakeCometAPI, tmp_path: Path, model: str) -> list[str]:
    prompts = tmp_path / "p.txt"
    prompts.write_text("".join(f"prompt {n}\n" for n in range(40)))
    return ["--api-key", API_KEY, "--base-url", fake.base_url, "batch",
            str(prompts), "-m", model, "-o", str(tmp_path / "out"), "-c", "8"]  # fmt: skip


@pytest.mark.timeout(60)
def test_a_batch_for_a_model_not_served_ends_in_one_line_naming_it(
    threaded_fake: FakeCometAPI, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The fake refuses a model it does not serve as CometAPI does (503,
    # model_not_found): no script needed.
    code = main(batch_command(threaded_fake, tmp_path, TYPO))

    err = capsys.readouterr().err
    assert code == 3, err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert errors == [
        f"error: the gateway does not serve the model {TYPO} (did you mean "
        f"{SCHNELL}?); nothing was created for it, 39 input(s) were not sent. "
        "Check --model and rerun the same command."
    ]
    assert "Traceback" not in err
    assert threaded_fake.stats.count("create") <= 8
    assert len(threaded_fake.predictions) == 0


def test_run_for_a_model_not_served_names_it_and_its_near_miss(
    threaded_fake: FakeCometAPI, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["--api-key", API_KEY, "--base-url", threaded_fake.base_url,
                 "run", TYPO, "-i", "prompt=a boat"])  # fmt: skip

    err = capsys.readouterr().err
    assert code == 1, err
    [line] = [line for line in err.splitlines() if line.startswith("error:")]
    assert line.startswith(f"error: the gateway does not serve the model {TYPO} ")
    assert f"(did you mean {SCHNELL}?); nothing was created" in line
    assert line.endswith("; check the model id")


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_an_outage_prints_one_line_when_creates_stop_and_one_when_they_go_on(
    threaded_fake: FakeCometAPI, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    threaded_fake.script_outage(1.0, from_first_create=True)

    code = main(batch_command(threaded_fake, tmp_path, SCHNELL))

    err = capsys.readouterr().err
    stopped = [line for line in err.splitlines() if "creates stopped" in line]
    resumed = [line for line in err.splitlines() if "creates resumed" in line]
    assert len(stopped) == 1, err
    assert "(last: HTTP 502)" in stopped[0]
    assert "probes it in" in stopped[0]
    assert resumed == ["creates resumed: the gateway accepted a create"]
    # The three creates that opened the breaker are ambiguous; the rest succeeded.
    assert code == 1
    assert len(threaded_fake.predictions) == 37


@pytest.mark.anyio
async def test_doctor_warns_when_the_price_catalogue_cannot_be_read() -> None:
    async with FakeCometAPI(api_key=API_KEY) as fake:
        fake.script("catalogue", Fault.status(503))
        checks = await run_checks(API_KEY, fake.base_url)

    lines, passed = render(checks)

    assert passed
    [catalogue] = [line for line in lines if "price catalogue" in line]
    assert catalogue.startswith("warn price catalogue: cannot be read (HTTP 503")
    assert catalogue.endswith("the bundled estimates stand in")
    assert [line[:4] for line in lines].count("FAIL") == 0
