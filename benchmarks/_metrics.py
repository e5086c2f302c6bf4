"""Turn one client's result file and the fake's stats into the reported figures."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import Any

__all__ = ["ClientRun", "Metrics", "compute", "percentile"]


@dataclass(frozen=True)
class ClientRun:
    """Everything measured around one client's run of one workload."""

    client: str
    concurrency: int
    result: dict[str, Any]  # the child's result file
    fake_stats: dict[str, Any]  # GET /_fake/stats after the run
    fake_cpu_seconds: float  # the fake server's CPU during the run
    fake_busiest: float  # its busiest one-second share of a core
    client_busiest: float  # the client's, while it ran the workload
    other_cpu_cores: float  # cores used by other processes meanwhile, on average
    exit_code: int


@dataclass(frozen=True)
class Metrics:
    """The figures of one client on one workload."""

    client: str
    inputs: int
    requests: int
    requests_per_prediction: float
    requests_by_route: dict[str, int]
    non_2xx: int
    cpu_us_per_prediction: float
    client_cpu_share: float
    lag_p50: float
    lag_p99: float
    lag_max: float
    wall_seconds: float
    ideal_seconds: float
    latency_mean: float
    latency_max: float
    rss_before_mb: float
    peak_rss_mb: float
    rss_growth_kb_per_slot: float
    lost: int
    errors: int
    error_kinds: dict[str, int]
    duplicates: int
    created: int
    peak_in_flight: int
    fake_cpu_us_per_prediction: float
    fake_cpu_share: float
    fake_busiest: float
    client_busiest: float
    other_cpu_cores: float
    exit_code: int

    @property
    def wall_vs_ideal(self) -> float:
        """Wall time as a multiple of the ideal."""
        return self.wall_seconds / self.ideal_seconds


def percentile(values: list[float], fraction: float) -> float:
    """The *fraction* quantile of *values*, interpolating linearly (NaN if empty)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    position = fraction * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def _route_totals(fake_stats: dict[str, Any]) -> tuple[dict[str, int], int]:
    """Create and query requests by route, and how many were not answered 2xx."""
    by_route: dict[str, int] = {}
    non_2xx = 0
    for route in ("create", "query"):
        statuses: dict[str, int] = fake_stats["requests"].get(route, {})
        by_route[route] = sum(statuses.values())
        non_2xx += sum(
            n for status, n in statuses.items() if not status.startswith("2")
        )
    return by_route, non_2xx


def _lags(items: list[dict[str, Any]], predictions: dict[str, Any]) -> list[float]:
    """Seconds from each prediction turning terminal on the fake to its result."""
    lags = []
    for item in items:
        record = predictions.get(item["prediction_id"] or "")
        if item["resolved_wall"] is not None and record is not None:
            lags.append(item["resolved_wall"] - record["terminal_wall"])
    return lags


def _latencies(predictions: dict[str, Any]) -> list[float]:
    """The run times the fake drew, as it recorded them."""
    return [p["terminal_wall"] - p["created_wall"] for p in predictions.values()]


def _error_kinds(items: list[dict[str, Any]]) -> dict[str, int]:
    """Errors counted by their type (the text before the first colon)."""
    return dict(
        Counter(item["error"].partition(":")[0] for item in items if item["error"])
    )


def compute(run: ClientRun) -> Metrics:
    """The figures of *run*."""
    result, stats = run.result, run.fake_stats
    items: list[dict[str, Any]] = result["items"]
    inputs = len(items)
    by_route, non_2xx = _route_totals(stats)
    requests = sum(by_route.values())
    latencies = _latencies(stats["predictions"]) or [math.nan]
    latency_mean = sum(latencies) / len(latencies)
    lags = _lags(items, stats["predictions"])
    wall = result["wall_seconds"]
    return Metrics(
        client=run.client,
        inputs=inputs,
        requests=requests,
        requests_per_prediction=requests / inputs,
        requests_by_route=by_route,
        non_2xx=non_2xx,
        cpu_us_per_prediction=result["cpu_seconds"] / inputs * 1e6,
        client_cpu_share=result["cpu_seconds"] / wall,
        lag_p50=percentile(lags, 0.50),
        lag_p99=percentile(lags, 0.99),
        lag_max=max(lags, default=math.nan),
        wall_seconds=wall,
        ideal_seconds=inputs * latency_mean / run.concurrency + max(latencies),
        latency_mean=latency_mean,
        latency_max=max(latencies),
        rss_before_mb=result["rss_before"] / 2**20,
        peak_rss_mb=result["peak_rss"] / 2**20,
        rss_growth_kb_per_slot=(result["peak_rss"] - result["rss_before"])
        / 1024
        / run.concurrency,
        lost=sum(item["resolved_wall"] is None for item in items),
        errors=sum(item["error"] is not None for item in items),
        error_kinds=_error_kinds(items),
        duplicates=stats["duplicates"],
        created=stats["created"],
        peak_in_flight=stats["peak_in_flight"],
        fake_cpu_us_per_prediction=run.fake_cpu_seconds / inputs * 1e6,
        fake_cpu_share=run.fake_cpu_seconds / wall,
        fake_busiest=run.fake_busiest,
        client_busiest=run.client_busiest,
        other_cpu_cores=run.other_cpu_cores,
        exit_code=run.exit_code,
    )
