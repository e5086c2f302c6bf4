"""`batch`'s OpenTelemetry, turned on by the standard `OTEL_*` variables.

With the `otel` extra, `opentelemetry-sdk` and an exporter installed (the user's
choice, e.g. `opentelemetry-exporter-otlp`), setting `OTEL_EXPORTER_OTLP_ENDPOINT`
or `OTEL_TRACES_EXPORTER`/`OTEL_METRICS_EXPORTER` gives the batch's session a
tracer and a meter provider: exporters by the name those variables give (`otlp`
by default, `console`, `none`, or any other an installed package registers),
the resource from `OTEL_SERVICE_NAME` and `OTEL_RESOURCE_ATTRIBUTES`. Without
them, or without the SDK, nothing is configured and nothing is recorded.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Mapping
from importlib.metadata import entry_points
from typing import Any

import attrs

__all__ = ["CliTelemetry", "telemetry_from_environment"]

SERVICE_NAME = "comet-replicate"


@attrs.frozen
class CliTelemetry:
    """The providers a command's session records with, flushed at its end."""

    tracer_provider: Any = None
    meter_provider: Any = None

    def session_options(self) -> dict[str, Any]:
        """The `Session` keywords for these providers."""
        return {
            "tracer_provider": self.tracer_provider,
            "meter_provider": self.meter_provider,
        }

    def shutdown(self) -> None:
        """Export what is left, then stop (the process is about to end)."""
        for provider in (self.tracer_provider, self.meter_provider):
            if provider is not None:
                provider.shutdown()


def telemetry_from_environment(
    environ: Mapping[str, str] = os.environ,
) -> CliTelemetry:
    """Providers configured from `OTEL_*`, or none (see the module docstring)."""
    endpoint = bool(environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"))
    traces = environ.get("OTEL_TRACES_EXPORTER") or ("otlp" if endpoint else "")
    metrics = environ.get("OTEL_METRICS_EXPORTER") or ("otlp" if endpoint else "")
    if environ.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return CliTelemetry()
    if not (traces or metrics) or importlib.util.find_spec("opentelemetry") is None:
        return CliTelemetry()
    if importlib.util.find_spec("opentelemetry.sdk") is None:
        return CliTelemetry()
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import (
        MetricReader,
        PeriodicExportingMetricReader,
    )
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    attributes = (
        {} if environ.get("OTEL_SERVICE_NAME") else {"service.name": SERVICE_NAME}
    )
    resource = Resource.create(attributes)
    tracer_provider = None
    span_exporters = _exporters("opentelemetry_traces_exporter", traces)
    if span_exporters:
        tracer_provider = TracerProvider(resource=resource)
        for exporter in span_exporters:
            tracer_provider.add_span_processor(BatchSpanProcessor(exporter))
    meter_provider = None
    metric_exporters = _exporters("opentelemetry_metrics_exporter", metrics)
    if metric_exporters:
        readers = [
            # A pull exporter (Prometheus's) is a reader already.
            exporter
            if isinstance(exporter, MetricReader)
            else PeriodicExportingMetricReader(exporter)
            for exporter in metric_exporters
        ]
        meter_provider = MeterProvider(resource=resource, metric_readers=readers)
    return CliTelemetry(tracer_provider, meter_provider)


def _exporters(group: str, names: str) -> list[Any]:
    """The exporters named (comma-separated) in `group`'s entry points."""
    found = []
    for name in (name.strip() for name in names.split(",")):
        if not name or name == "none":
            continue
        points = entry_points(group=group, name=name)
        if not points:
            raise _unknown(group, name)
        [point] = list(points)[:1]
        found.append(point.load()())
    return found


def _unknown(group: str, name: str) -> Exception:
    from ._errors import CliError

    what = "traces" if "traces" in group else "metrics"
    return CliError(
        f"OTEL_{what.upper()}_EXPORTER names {name!r}, which no installed package "
        f"provides (for 'otlp': pip install opentelemetry-exporter-otlp)"
    )
