"""Which telemetry a session gets: the recording side, or `NO_TELEMETRY`.

Above both sides: it looks for OpenTelemetry and imports the recording side
(`_telemetry/otel.py`) only when something records, so a session without the
extra, or without a configured provider, never imports it.
"""

from __future__ import annotations

import importlib.util
import logging
import sys

from .base import NO_TELEMETRY, MeterProvider, Telemetry, TracerProvider

__all__ = ["build_telemetry"]

# Checked once: the extra is optional, and an import that fails is slow.
HAVE_OTEL = importlib.util.find_spec("opentelemetry") is not None


def build_telemetry(
    tracer_provider: TracerProvider | None,
    meter_provider: MeterProvider | None,
    base_url: str,
) -> Telemetry:
    """The session's telemetry: `NO_TELEMETRY` unless a provider records.

    None means the global providers, which record nothing until the user
    configures the SDK (before the session is made).
    """
    if not HAVE_OTEL:
        if tracer_provider is not None or meter_provider is not None:
            logging.getLogger("comet_replicate_async").warning(
                "tracer_provider or meter_provider given, but opentelemetry-api "
                "is not installed (the `otel` extra): nothing is recorded"
            )
        return NO_TELEMETRY
    given = tracer_provider is not None or meter_provider is not None
    if not given and "opentelemetry" not in sys.modules:
        return NO_TELEMETRY  # nothing imported it, so nothing configured it
    from .otel import otel_telemetry

    return otel_telemetry(tracer_provider, meter_provider, base_url=base_url)
