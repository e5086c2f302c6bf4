"""Turn one client's result file and the fake's stats into the reported figures."""

from __future__ import annotations

import json
import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ClientRun", "Metrics", "Outcomes", "compute", "percentile"]

#: The error an input gets from comet_replicate_async when its create may have
#: created a prediction: the caller is told it may exist.
AMBIGUOUS = "AmbiguousSubmitError"


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
    #: The workload's inputs ({"model", "input"}), in order: to find, by input,
    #: the predictions the fake created for each.
    inputs: list[dict[str, Any]] = field(default_factory=list)
    fake_stats_wall: float = math.inf  # time.time() when the stats were read


@dataclass(frozen=True)
class Outcomes:
    """What became of each input, judged against what the fake created.

    Every input is exactly one of: succeeded, another accounted outcome (an
    error the caller saw that is truthful: nothing was created, or the
    prediction's id was handed over, or the caller was told it may exist),
    lost, or unfinished (no outcome at all: the client was stopped).
    """

    succeeded: int
    accounted: int  # succeeded + errors that leave the caller knowing
    errors_raised: int  # inputs that ended with an error the caller saw
    ambiguous: int  # errors saying "may have been created" (AmbiguousSubmitError)
    errors_with_id: int  # errors after the client handed the prediction's id over
    lost: int  # created on the fake, neither resolved nor reported as possibly so
    unobserved: int  # finished on the fake, no client result carries its id
    throttled: int  # creates answered 429


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
    outcomes: Outcomes

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


def _input_key(model: str, input: Any) -> str:
    return json.dumps([model, input], sort_keys=True, separators=(",", ":"))


def outcomes(run: ClientRun) -> Outcomes:
    """Each input's fate, from the client's results and the fake's predictions.

    Inputs are matched to the predictions the fake created by model and input
    (the workloads' prompts are unique). An input is **lost** when the fake
    created a prediction for it and the client neither resolved it, nor handed
    its id over, nor reported it as possibly created (`AmbiguousSubmitError`).
    """
    items: list[dict[str, Any]] = run.result["items"]
    predictions: dict[str, Any] = run.fake_stats["predictions"]
    created: defaultdict[str, list[str]] = defaultdict(list)
    for prediction_id, record in predictions.items():
        created[_input_key(record["model"], record["input"])].append(prediction_id)
    succeeded = accounted = errors_raised = ambiguous = with_id = lost = 0
    for item in items:
        if item["resolved_wall"] is not None:
            succeeded += 1
            accounted += 1
            continue
        error_type = item.get("error_type")
        # "ChildFailed": the child wrote no results; the caller saw nothing.
        raised = item["error"] is not None and error_type != "ChildFailed"
        errors_raised += raised
        ambiguous += error_type == AMBIGUOUS
        has_id = item["prediction_id"] in predictions
        with_id += raised and has_id
        told = error_type == AMBIGUOUS or has_id
        if run.inputs:
            given = run.inputs[item["index"]]
            was_created = _input_key(given["model"], given["input"]) in created
        else:
            was_created = False
        if was_created and not told:
            lost += 1
        elif raised:
            accounted += 1
    seen = {item["prediction_id"] for item in items}
    unobserved = sum(
        prediction_id not in seen and record["terminal_wall"] <= run.fake_stats_wall
        for prediction_id, record in predictions.items()
    )
    return Outcomes(
        succeeded=succeeded,
        accounted=accounted,
        errors_raised=errors_raised,
        ambiguous=ambiguous,
        errors_with_id=with_id,
        lost=lost,
        unobserved=unobserved,
        throttled=run.fake_stats["requests"].get("create", {}).get("429", 0),
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
        outcomes=outcomes(run),
    )
