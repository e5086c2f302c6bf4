"""`batch` with OpenTelemetry from the `OTEL_*` variables, and `--log-format json`."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_support import API_KEY, FakeProcess, cli_environment, fake_process

from comet_replicate_async._cli._errors import CliError
from comet_replicate_async._cli._telemetry import telemetry_from_environment

SCHNELL = "black-forest-labs/flux-schnell"


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeProcess]:
    with fake_process("--latency", "flux-schnell=uniform:0.05:0.2") as server:
        yield server


def run_batch(
    fake: FakeProcess, tmp_path: Path, *options: str, env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    prompts = tmp_path / "p.txt"
    prompts.write_text("a boat\nan owl\n")
    out = str(tmp_path / "out")
    command = ["batch", str(prompts), "-m", SCHNELL, "-o", out, *options]
    return subprocess.run(
        [sys.executable, "-m", "comet_replicate_async", *command],
        env={**cli_environment(fake), **env},
        capture_output=True,
        stdin=subprocess.DEVNULL,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.timeout(90)
def test_otel_variables_export_the_batchs_spans_and_metrics(
    fake: FakeProcess, tmp_path: Path
) -> None:
    env = {
        "OTEL_TRACES_EXPORTER": "console",
        "OTEL_METRICS_EXPORTER": "console",
        "OTEL_SERVICE_NAME": "images-nightly",
    }
    done = run_batch(fake, tmp_path, "--json", env=env)

    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert out.count(f'"name": "generate_content {SCHNELL}"') == 2
    assert f'"name": "batch {SCHNELL}"' in out
    assert '"service.name": "images-nightly"' in out
    assert '"comet_replicate.outcome": "succeeded"' in out
    assert '"name": "gen_ai.client.operation.duration"' in out
    assert API_KEY not in out + done.stderr


@pytest.mark.timeout(90)
def test_without_otel_variables_nothing_is_exported(
    fake: FakeProcess, tmp_path: Path
) -> None:
    done = run_batch(fake, tmp_path, env={})

    assert done.returncode == 0, done.stderr
    assert "generate_content" not in done.stdout + done.stderr


@pytest.mark.timeout(90)
def test_log_format_json_writes_one_object_a_line_with_the_batch(
    fake: FakeProcess, tmp_path: Path
) -> None:
    env = {"COMETAPI_KEY": "wrong-key"}
    done = run_batch(fake, tmp_path, "--log-format", "json", env=env)

    assert done.returncode == 3
    records = [
        json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")
    ]
    [stopped] = [r for r in records if r["message"].startswith("batch stopped")]
    assert stopped["level"] == "ERROR"
    assert stopped["logger"] == "comet_replicate_async"
    assert stopped["batch"]
    assert "wrong-key" not in done.stderr + done.stdout


def test_the_environment_turns_telemetry_on_only_when_asked() -> None:
    assert telemetry_from_environment({}).tracer_provider is None
    assert telemetry_from_environment(
        {"OTEL_TRACES_EXPORTER": "none"}
    ).session_options() == {
        "tracer_provider": None,
        "meter_provider": None,
    }
    on = telemetry_from_environment({"OTEL_TRACES_EXPORTER": "console"})
    assert on.tracer_provider is not None
    assert on.meter_provider is None
    on.shutdown()
    disabled = {"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "console"}
    assert telemetry_from_environment(disabled).tracer_provider is None
    with pytest.raises(CliError, match="opentelemetry-exporter-otlp"):
        telemetry_from_environment(
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317"}
        )
