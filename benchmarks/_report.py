"""Write docs/benchmarks.md and its chart from the computed figures."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from _metrics import Metrics
from _workloads import CAP_HOLD, CAP_IN_FLIGHT, Workload

__all__ = ["CLIENTS", "Context", "WorkloadResult", "plot_requests_vs_lag", "render"]

#: Client keys in report order, with the label shown for each.
CLIENTS: dict[str, str] = {
    "ours": "comet_replicate_async",
    "official": "replicate (official)",
    "raw": "raw aiohttp loop",
}
#: The fake server at or above this share of a core in its busiest second is
#: treated as saturated: the figures of that run include its queueing.
SATURATED = 0.9
#: Other processes using more cores than this on average perturbed the run.
BUSY_MACHINE = 0.15
#: The exit code run.py records for a client stopped at its time limit.
TIMED_OUT = -1
# Typographic signs for the report, spelled by name so the source stays ASCII-clear.
TIMES = "\N{MULTIPLICATION SIGN}"
EN_DASH = "\N{EN DASH}"
DIVIDED = "\N{DIVISION SIGN}"


@dataclass(frozen=True)
class WorkloadResult:
    """One workload and the figures of every client on it."""

    workload: Workload
    metrics: dict[str, Metrics]  # by client key
    fake_command: str


@dataclass(frozen=True)
class Context:
    """Where and how the run happened."""

    command: str
    date: str
    machine: str
    versions: dict[str, str]


Row = tuple[str, Callable[[Metrics], str]]


def _num(value: float, digits: int = 2) -> str:
    return "n/a" if math.isnan(value) else f"{value:,.{digits}f}"


def _ratio(numerator: float, denominator: float) -> str:
    if math.isnan(numerator) or math.isnan(denominator) or denominator == 0:
        return "n/a"
    return f"{numerator / denominator:.2f}{TIMES}"


def _share(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.0%}"


def _kinds(kinds: dict[str, int]) -> str:
    return ", ".join(f"{n} {kind}" for kind, n in sorted(kinds.items())) or "none"


ROWS: Sequence[Row] = (
    ("HTTP requests / prediction", lambda m: _num(m.requests_per_prediction)),
    ("  creates + queries", lambda m: " + ".join(f"{n:,}" for n in m.requests_by_route.values())),
    ("  answered non-2xx", lambda m: f"{m.non_2xx:,}"),
    ("client CPU / prediction (µs)", lambda m: _num(m.cpu_us_per_prediction, 0)),
    ("client CPU, mean share of one core", lambda m: _share(m.client_cpu_share)),
    ("client CPU, busiest second", lambda m: _share(m.client_busiest)),
    ("detection lag p50 (s)", lambda m: _num(m.lag_p50, 3)),
    ("detection lag p99 (s)", lambda m: _num(m.lag_p99, 3)),
    ("detection lag max (s)", lambda m: _num(m.lag_max, 3)),
    ("wall time (s)", lambda m: _num(m.wall_seconds, 1)),
    ("ideal wall time (s)", lambda m: _num(m.ideal_seconds, 1)),
    ("wall ÷ ideal", lambda m: _num(m.wall_vs_ideal)),
    ("RSS before workload (MiB)", lambda m: _num(m.rss_before_mb, 1)),
    ("peak RSS (MiB)", lambda m: _num(m.peak_rss_mb, 1)),
    ("RSS growth / in-flight prediction (KiB)", lambda m: _num(m.rss_growth_kb_per_slot, 1)),
    ("lost predictions", lambda m: f"{m.lost:,}"),
    ("item errors", lambda m: _kinds(m.error_kinds)),
    ("duplicate creates (fake)", lambda m: f"{m.duplicates:,}"),
    ("predictions created (fake)", lambda m: f"{m.created:,}"),
    ("peak in flight (fake)", lambda m: f"{m.peak_in_flight:,}"),
    ("fake server CPU / prediction (µs)", lambda m: _num(m.fake_cpu_us_per_prediction, 0)),
    ("fake server CPU, mean share of one core", lambda m: _share(m.fake_cpu_share)),
    ("fake server CPU, busiest second", lambda m: _share(m.fake_busiest)),
    ("other processes' CPU meanwhile (cores)", lambda m: _num(m.other_cpu_cores)),
)  # fmt: skip


#: The faults workload's own table: what became of every input.
FAULT_ROWS: Sequence[Row] = (
    ("inputs", lambda m: f"{m.inputs:,}"),
    ("succeeded", lambda m: f"{m.outcomes.succeeded:,}"),
    ("accounted for", lambda m: f"{m.outcomes.accounted:,}"),
    ("errors raised", lambda m: f"{m.outcomes.errors_raised:,}"),
    ("  of which \"may have been created\" (AmbiguousSubmitError)", lambda m: f"{m.outcomes.ambiguous:,}"),
    ("  of which after the prediction's id was handed over", lambda m: f"{m.outcomes.errors_with_id:,}"),
    ("**lost**", lambda m: f"{m.outcomes.lost:,}"),
    ("**duplicates** (fake)", lambda m: f"{m.duplicates:,}"),
    ("unobserved (fake)", lambda m: f"{m.outcomes.unobserved:,}"),
    ("predictions created (fake)", lambda m: f"{m.created:,}"),
    ("creates answered 429 (fake)", lambda m: f"{m.outcomes.throttled:,}"),
    ("HTTP requests / prediction", lambda m: _num(m.requests_per_prediction)),
    ("item errors by type", lambda m: _kinds(m.error_kinds)),
)  # fmt: skip

_FAULT_COLUMNS = """\
Each input ends as exactly one of: succeeded, accounted for by an error, lost, or
(for a client stopped at its time limit) unfinished. Inputs are matched to the
predictions the fake created by their prompt, unique to each input.

- **Succeeded**: the client returned the input's succeeded prediction.
- **Accounted for**: succeeded, or ended with an error the caller saw that leaves
  them knowing where they stand: nothing was created, or the error carries the
  prediction's id, or it says the prediction may have been created
  (comet_replicate_async's `AmbiguousSubmitError`, one `BatchItem` per input).
- **Errors raised**: inputs that ended with an error the caller saw, lost or not;
  "after the prediction's id was handed over": the create answered and the
  client gave the caller the id, then a later query failed (not lost: the
  caller can look the prediction up; count them as lost for a stricter view).
- **Lost**: the fake created a prediction for this input, and the client neither
  resolved it nor reported it as possibly created (ours: `AmbiguousSubmitError`)
  nor handed its id over. The official client and the raw loop raise a plain
  HTTP error for a create answered 5xx, though half of those (the ghosts)
  created the prediction: that prediction runs, is billed, and the caller was
  told it failed.
- **Duplicates**: creates the fake saw twice for the same model and input (a
  retried create that had already gone through pays twice).
- **Unobserved**: predictions the fake created and finished that no client
  result points at by id: paid for and never seen. For comet_replicate_async
  these are the ghosts it reported as `AmbiguousSubmitError`.
- **Creates answered 429**: the fake's throttle (above its create limit);
  comet_replicate_async waits the `Retry-After` and retries, the official client
  and the raw loop raise.
"""


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def _ratio_rows(result: WorkloadResult) -> list[list[str]]:
    ours = result.metrics["ours"]
    rows = []
    for label, attr in (
        ("HTTP requests / prediction", "requests_per_prediction"),
        ("client CPU / prediction", "cpu_us_per_prediction"),
        ("detection lag p50", "lag_p50"),
        ("detection lag p99", "lag_p99"),
        ("wall time", "wall_seconds"),
    ):
        row = [result.workload.title, label]
        for other in ("official", "raw"):
            metric = result.metrics.get(other)
            if metric is None:
                row.append("n/a")
            elif TIMED_OUT in (metric.exit_code, ours.exit_code):
                row.append("did not finish")
            else:
                row.append(_ratio(getattr(ours, attr), getattr(metric, attr)))
        rows.append(row)
    return rows


def _check(met: bool) -> str:
    return "met" if met else "**missed**"


def _mixed_targets(result: WorkloadResult) -> list[list[str]]:
    ours, official, raw = (result.metrics[key] for key in ("ours", "official", "raw"))
    req = ours.requests_per_prediction / official.requests_per_prediction
    cpu_official = ours.cpu_us_per_prediction / official.cpu_us_per_prediction
    cpu_raw = ours.cpu_us_per_prediction / raw.cpu_us_per_prediction
    return [
        [
            f"requests/prediction ≤ 0.6 {TIMES} official",
            f"{req:.2f}{TIMES}",
            _check(req <= 0.6),
        ],
        [
            "lag p50 ≤ official's",
            f"{ours.lag_p50:.3f} s vs {official.lag_p50:.3f} s",
            _check(ours.lag_p50 <= official.lag_p50),
        ],
        ["lag p99 ≤ 1.0 s", f"{ours.lag_p99:.3f} s", _check(ours.lag_p99 <= 1.0)],
        [
            f"CPU/prediction ≤ 0.15 {TIMES} official",
            f"{cpu_official:.2f}{TIMES}",
            _check(cpu_official <= 0.15),
        ],
        [
            f"CPU/prediction ≤ 1.0 {TIMES} raw",
            f"{cpu_raw:.2f}{TIMES}",
            _check(cpu_raw <= 1.0),
        ],
    ]


def _scale_targets(result: WorkloadResult) -> list[list[str]]:
    ours = result.metrics["ours"]
    return [
        [
            f"wall ≤ 1.05 {TIMES} ideal",
            f"{ours.wall_vs_ideal:.3f}{TIMES}",
            _check(ours.wall_vs_ideal <= 1.05),
        ],
        [
            "fake peak in flight ≤ 1,000",
            f"{ours.peak_in_flight:,}",
            _check(ours.peak_in_flight <= 1000),
        ],
        ["zero lost", f"{ours.lost:,}", _check(ours.lost == 0)],
        ["zero duplicates", f"{ours.duplicates:,}", _check(ours.duplicates == 0)],
        [
            "RSS growth ≤ 5 KiB / in-flight prediction",
            f"{ours.rss_growth_kb_per_slot:.1f} KiB",
            _check(ours.rss_growth_kb_per_slot <= 5.0),
        ],
    ]


def _faults_targets(result: WorkloadResult) -> list[list[str]]:
    ours = result.metrics["ours"]
    o = ours.outcomes
    return [
        ["zero lost", f"{o.lost:,}", _check(o.lost == 0)],
        ["zero duplicates", f"{ours.duplicates:,}", _check(ours.duplicates == 0)],
        [
            f"every input accounted for (= {ours.inputs:,})",
            f"{o.accounted:,}",
            _check(o.accounted == ours.inputs),
        ],
    ]


def _limits_targets(result: WorkloadResult) -> list[list[str]]:
    ours, limit = result.metrics["ours"], result.workload.limit
    assert limit is not None
    attempts = ours.requests_by_route.get("create", 0)
    refused = ours.outcomes.throttled
    rate_limited = ours.error_kinds.get("RateLimitError", 0)
    bound = 1.15 * ours.created / limit.allowed_rate + ours.latency_max
    return [
        ["0 inputs end in RateLimitError", f"{rate_limited:,}", _check(rate_limited == 0)],
        [
            "refused creates (429) <= 20% of create attempts",
            f"{refused:,} of {attempts:,} ({refused / max(attempts, 1):.1%})",
            _check(refused <= 0.2 * attempts),
        ],
        [
            f"wall <= 1.15 {TIMES} (creates {DIVIDED} allowed "
            f"{limit.allowed_rate:g}/s) + slowest prediction",
            f"{ours.wall_seconds:.1f} s (bound {bound:.1f} s)",
            _check(ours.wall_seconds <= bound),
        ],
    ]  # fmt: skip


def _cap_targets(result: WorkloadResult) -> list[list[str]]:
    ours = result.metrics["ours"]
    refused = ours.non_2xx  # every one a 429: the fake injects nothing else here
    # What the cap allows: the requests sent, CAP_IN_FLIGHT at a time, each held
    # CAP_HOLD s; and never less than the workload's own ideal.
    allows = max(ours.requests * CAP_HOLD / CAP_IN_FLIGHT, ours.ideal_seconds)
    return [
        ["zero lost", f"{ours.lost:,}", _check(ours.lost == 0)],
        ["zero duplicates", f"{ours.duplicates:,}", _check(ours.duplicates == 0)],
        [
            "refused requests (429) <= 10% of all requests",
            f"{refused:,} of {ours.requests:,} ({refused / max(ours.requests, 1):.1%})",
            _check(refused <= 0.1 * ours.requests),
        ],
        ["lag p99 <= 2 s", f"{ours.lag_p99:.2f} s", _check(ours.lag_p99 <= 2.0)],
        [
            f"wall <= 1.3 {TIMES} what the cap allows",
            f"{ours.wall_seconds:.1f} s (allows {allows:.1f} s)",
            _check(ours.wall_seconds <= 1.3 * allows),
        ],
    ]  # fmt: skip


def _burst1_targets(result: WorkloadResult) -> list[list[str]]:
    ours, limit = result.metrics["ours"], result.workload.limit
    assert limit is not None
    attempts = ours.requests_by_route.get("create", 0)
    refused = ours.outcomes.throttled
    # The first create goes at once, each other one a token later.
    ideal = (ours.created - 1) / limit.allowed_rate + ours.latency_max
    return [
        ["zero lost", f"{ours.lost:,}", _check(ours.lost == 0)],
        [
            "refused creates (429) <= 10% of create attempts",
            f"{refused:,} of {attempts:,} ({refused / max(attempts, 1):.1%})",
            _check(refused <= 0.1 * attempts),
        ],
        [
            f"wall <= 1.15 {TIMES} ideal",
            f"{ours.wall_seconds:.1f} s (ideal {ideal:.1f} s, "
            f"{ours.wall_seconds / ideal:.3f}{TIMES})",
            _check(ours.wall_seconds <= 1.15 * ideal),
        ],
    ]  # fmt: skip


_TARGETS: dict[str, Callable[[WorkloadResult], list[list[str]]]] = {
    "mixed": _mixed_targets,
    "scale": _scale_targets,
    "faults": _faults_targets,
    "limits-bucket": _limits_targets,
    "limits-window": _limits_targets,
    "limits-inflight": _limits_targets,
    "limits-cap": _cap_targets,
    "limits-burst1": _burst1_targets,
}


def _targets(results: Sequence[WorkloadResult]) -> list[str]:
    rows: list[list[str]] = []
    for result in results:
        if set(CLIENTS) - set(result.metrics):
            continue  # a partial run cannot be compared
        checked = _TARGETS.get(result.workload.name, _scale_targets)(result)
        if result.metrics["ours"].exit_code == TIMED_OUT:
            # Figures of a run cut short say nothing about the goals.
            checked = [[*row[:2], "**missed** (did not finish)"] for row in checked]
        rows += [[result.workload.title, *row] for row in checked]
    if not rows:
        return []
    return [
        "## Goals for comet_replicate_async, checked on this run",
        "",
        *_table(["workload", "goal", "measured", "status"], rows),
        "",
    ]


def _warnings(results: Sequence[WorkloadResult]) -> list[str]:
    """Observations that qualify the figures, derived from the run itself."""
    notes = []
    for result in results:
        for key, m in result.metrics.items():
            where = f"{result.workload.title}, {CLIENTS[key]}"
            if m.fake_busiest >= SATURATED:
                notes.append(
                    f"- {where}: the fake server used {m.fake_busiest:.0%} of a core "
                    "in its busiest second, so it was saturated for a while: its "
                    "queueing inflates that run's lags and wall time."
                )
            if m.client_busiest >= SATURATED:
                notes.append(
                    f"- {where}: the client used {m.client_busiest:.0%} of a core in "
                    f"its busiest second ({m.client_cpu_share:.0%} on average): it "
                    "was CPU-bound for a while, so its lags include its own queueing."
                )
            if m.other_cpu_cores >= BUSY_MACHINE:
                notes.append(
                    f"- {where}: other processes used {m.other_cpu_cores:.2f} cores "
                    "on average meanwhile, competing with the client and the fake."
                )
            if m.exit_code == TIMED_OUT:
                notes.append(
                    f"- {where}: did not finish within its time limit and was "
                    f"stopped; {m.lost:,} predictions were still unresolved. Where "
                    "its tasks waited is in "
                    f"`benchmarks/.out/{result.workload.name}-{key}.log`."
                )
            if m.non_2xx or m.errors or m.exit_code:
                notes.append(
                    f"- {where}: {m.non_2xx:,} non-2xx replies, {m.errors:,} item "
                    f"errors ({_kinds(m.error_kinds)}), exit code {m.exit_code}."
                )
    if not notes:
        notes = ["- Neither the fake server nor any client was saturated."]
    return ["## Observations from this run", "", *notes, ""]


def _header(m: Metrics) -> str:
    """A client's column title, flagged when its run was cut short."""
    label = CLIENTS[m.client]
    return f"{label} (stopped at its time limit)" if m.exit_code == TIMED_OUT else label


def _workload_section(result: WorkloadResult, chart: str | None) -> list[str]:
    w = result.workload
    mix = ", ".join(
        f"{m.share:.0%} `{m.model}` (uniform {m.low:g}{EN_DASH}{m.high:g} s)"
        for m in w.mix
    )
    keys = [key for key in CLIENTS if key in result.metrics]
    header = ["metric", *(_header(result.metrics[k]) for k in keys)]
    rows = [[label, *(cell(result.metrics[k]) for k in keys)] for label, cell in ROWS]
    lines = [
        f"## Workload: {w.title}",
        "",
        f"{w.total:,} predictions at concurrency {w.concurrency:,}: {mix}.",
        "",
        f"Fake server: `{result.fake_command}`",
        "",
    ]
    if w.faults is not None:
        f = w.faults
        fault_rows = [
            [label, *(cell(result.metrics[k]) for k in keys)]
            for label, cell in FAULT_ROWS
        ]
        lines += [
            f"Faults: {f.server_error_rate:.0%} of creates and queries answered "
            f"5xx, {f.ghost_share:.0%} of the create 5xx after creating the "
            f'prediction (a 502 "ghost"); creates above {f.creates_per_window:,} '
            f"per {f.rate_window:g} s answered 429 with `Retry-After` and "
            "Replicate's throttle body. Every client runs at its defaults; an "
            "exception is recorded as that input's error.",
            "",
            "### What became of each input",
            "",
            *_table(header, fault_rows),
            "",
            _FAULT_COLUMNS,
            "In the table below, *lost predictions* counts every input without a "
            "succeeded result (errors included), as in the other workloads.",
            "",
        ]
    if w.limit is not None:
        limit_rows = [
            [label, *(cell(result.metrics[k]) for k in keys)]
            for label, cell in FAULT_ROWS
        ]
        lines += [
            f"Create limit: {w.limit.description}. Every client runs at its "
            "defaults. The limit shapes ran at the same time, each against "
            "its own fake server: their CPU figures share the machine.",
            "",
            "### What became of each input",
            "",
            *_table(header, limit_rows),
            "",
        ]
    lines += [*_table(header, rows), ""]
    if chart:
        lines += [f"![HTTP requests per prediction vs detection lag]({chart})", ""]
    return lines


_METHOD = """\
## How it is measured

One fake server process per workload (its command is in the workload's section);
each client runs the whole workload in its own child process, one client after another, after
`POST /_fake/reset`; `GET /_fake/stats` is read when it finishes.

- **comet_replicate_async**: `Session(key, base_url=..., max_concurrency=N)` with
  every other setting at its default; one `as_completed` per model, run at the same
  time in that one session (they share its window, which hands slots out in turn,
  so models start round-robin rather than in input order).
- **replicate (official)**: `replicate.Client(api_token=key, base_url=fake + "/replicate")`,
  default poll interval (0.5 s); per input `models.predictions.async_create` then
  `async_wait`, under `asyncio.Semaphore(N)`. The client wraps its own httpx
  transport, so its pool stays at httpx's default (100 connections, 20 kept
  alive) whatever the concurrency: above 100, requests queue inside httpx.
- **raw aiohttp loop**: per input, POST the create then GET every 0.25 s until
  terminal, under `asyncio.Semaphore(N)`, default aiohttp pool.

Each child reads its CPU (`getrusage`, user + system) and RSS (`/proc/self/statm`)
after its imports and setup, right before the first prediction, resetting its peak
RSS there (`/proc/self/clear_refs`), and CPU plus peak RSS (`VmHWM`) right after the
last result. Not `ru_maxrss`: Linux carries the parent's peak into a child across
exec, so that figure read the orchestrator's memory. Every child appends each outcome
to a file as it arrives and keeps nothing per prediction in memory, so the RSS
figures are the client's own.

- **HTTP requests / prediction**: create + query requests the fake received ÷ inputs.
- **Detection lag**: the client's `time.time()` when a result resolved minus the
  fake's wall-clock time at which that prediction became terminal (same machine).
- **Ideal wall time**: inputs * mean latency / concurrency + max latency, from the
  latencies the fake drew in that run (terminal - created).
- **RSS growth / in-flight prediction**: (peak RSS - RSS before) / concurrency.
- **Lost**: inputs without a resolved result. **Duplicates**: creates the fake saw
  twice for the same model and input. **Peak in flight**: most predictions
  between created and terminal at once, on the fake.
- **CPU, busiest second**: `/proc/PID/stat` user + system time sampled every
  second while the workload ran; near 100% means that process, single-threaded,
  was the bottleneck for that second. **Fake server CPU / prediction** uses its
  whole CPU time over the client's run.
- **Other processes' CPU**: the machine's busy time (`/proc/stat`) over the
  client's run, minus the fake's and the client process's (imports included).
"""


def render(
    results: Sequence[WorkloadResult], context: Context, chart: str | None
) -> str:
    """The whole of docs/benchmarks.md."""
    versions = ", ".join(f"{name} {v}" for name, v in context.versions.items())
    ratio_rows = [row for result in results for row in _ratio_rows(result)]
    lines = [
        "# Benchmarks",
        "",
        "Generated by running, from the repository root:",
        "",
        "```bash",
        context.command,
        "```",
        "",
        f"- Date: {context.date}",
        f"- Machine: {context.machine}",
        f"- Versions: {versions}",
        "",
        "Every figure below comes from that run; rerun the command to refresh them.",
        "",
        "## Ratios (comet_replicate_async ÷ each other client; lower is better)",
        "",
        *_table(["workload", "metric", "÷ official", "÷ raw"], ratio_rows),
        "",
        *_targets(results),
        *_warnings(results),
    ]
    for result in results:
        lines += _workload_section(
            result, chart if result.workload.name == "mixed" else None
        )
    lines.append(_METHOD)
    return "\n".join(lines)


def plot_requests_vs_lag(result: WorkloadResult, path: Path) -> None:
    """Requests per prediction (x) against lag p50 and p99 (y), one colour a client."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on a server
    from matplotlib import pyplot

    figure, axes = pyplot.subplots(figsize=(7, 4.5))
    for key, m in result.metrics.items():
        if math.isnan(m.lag_p50):
            continue  # nothing resolved: no lag to show
        x = m.requests_per_prediction
        line = axes.plot([x, x], [m.lag_p50, m.lag_p99], "-", alpha=0.4)[0]
        colour = line.get_color()
        axes.plot([x], [m.lag_p50], "o", color=colour, label=f"{CLIENTS[key]}: p50")
        axes.plot([x], [m.lag_p99], "^", color=colour, label=f"{CLIENTS[key]}: p99")
        axes.annotate(
            CLIENTS[key],
            (x, m.lag_p99),
            textcoords="offset points",
            xytext=(6, 4),
            fontsize=8,
        )
    w = result.workload
    axes.set_title(f"{w.title}: {w.total:,} predictions, concurrency {w.concurrency:,}")
    axes.set_xlabel("HTTP requests per prediction (fewer is cheaper)")
    axes.set_ylabel("detection lag (s): p50 ● and p99 ▲")
    axes.set_xlim(left=0)
    axes.set_ylim(bottom=0)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=7, loc="best")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    pyplot.close(figure)
