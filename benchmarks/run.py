"""Benchmark comet_replicate_async against the official client and a raw loop.

Usage (from the repository root)::

    python benchmarks/run.py [--workload mixed|scale|faults|limits|budget|shared|all]
                             [--scale-factor F] [--out docs/benchmarks.md]

For each workload: one fake server process; each client in its own child process,
one after another on the same workload, with the fake's stats reset before each.
The limits workloads are rate-bound, not CPU-bound: they run at the same time,
each with its own fake server (`--only limits` runs just them; `--only budget`
only the per-key cap and the bucket with a burst of 1).
The shared workload runs one batch with 1, 2 and 4 worker processes through a
PostgreSQL journal (`shared_journal.py`); run alone, it replaces its own section
of the `--out` report and leaves the others as they are.
Writes the report (and, for the mixed workload, its chart) from what was measured;
a run of only some workloads writes to benchmarks/.out/ unless `--out` is given,
so the full report in docs/ keeps every section.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import importlib.util
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import shared_journal
from _fake import (
    API_KEY,
    CpuSampler,
    FakeServer,
    children_cpu_seconds,
    machine_busy_seconds,
    process_cpu_seconds,
)
from _metrics import ClientRun, compute
from _report import (
    CLIENTS,
    TIMED_OUT,
    Context,
    WorkloadResult,
    plot_requests_vs_lag,
    render,
)
from _workloads import GROUPS, WORKLOADS, Workload, build_items

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
#: Scratch space for workload and result files (git-ignored).
OUT = HERE / ".out"
#: The child script of each client.
SCRIPTS = {
    "ours": HERE / "client_ours.py",
    "official": HERE / "client_replicate.py",
    "raw": HERE / "client_raw.py",
}


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--workload",
        "--only",
        choices=[*WORKLOADS, *GROUPS, "shared", "all"],
        default="all",
        help="default: all",
    )
    parser.add_argument(
        "--scale-factor",
        type=float,
        default=1.0,
        help="multiply prediction counts and concurrency (0.05 for a smoke run)",
    )
    parser.add_argument("--out", type=Path, default=None)
    return parser.parse_args(argv)


def _child_env() -> dict[str, str]:
    """The environment of the children: the package importable, no stray config."""
    env = dict(os.environ)
    # Run from a checkout without installing: let the children find the package.
    if importlib.util.find_spec("comet_replicate_async") is None:
        env["PYTHONPATH"] = os.pathsep.join(
            filter(None, [str(ROOT), env.get("PYTHONPATH")])
        )
    for name in ("COMETAPI_KEY", "COMETAPI_BASE_URL", "REPLICATE_API_TOKEN",
                 "REPLICATE_BASE_URL", "REPLICATE_POLL_INTERVAL"):  # fmt: skip
        env.pop(name, None)  # every client must use what the benchmark passes
    return env


def _timeout(workload: Workload) -> float:
    """Seconds a client may take before it is stopped: generous, but finite."""
    slowest = max(m.high for m in workload.mix)
    worst_ideal = workload.total * slowest / workload.concurrency + slowest
    if workload.faults is not None:  # creates beyond the limit wait their turn
        worst_ideal += workload.faults.throttled_seconds(workload.total)
    if workload.limit is not None:
        worst_ideal += workload.total / workload.limit.allowed_rate
    return 3 * worst_ideal + 60


def _run_client(
    key: str,
    workload: Workload,
    fake: FakeServer,
    items: list[dict[str, Any]],
    items_file: Path,
    env: dict[str, str],
) -> ClientRun:
    """Run one client on the workload in its own process; collect what it did."""
    result_file = OUT / f"{workload.name}-{key}.json"
    result_file.unlink(missing_ok=True)
    fake.reset()
    # CPU ledgers: the fake's, the client's (whole process), the machine's.
    fake_before, child_before = process_cpu_seconds(fake.pid), children_cpu_seconds()
    machine_before, started = machine_busy_seconds(), time.monotonic()
    command = [
        sys.executable, str(SCRIPTS[key]),
        "--base-url", fake.base_url, "--api-key", API_KEY,
        "--workload-file", str(items_file),
        "--concurrency", str(workload.concurrency),
        "--result-file", str(result_file),
    ]  # fmt: skip
    log = OUT / f"{workload.name}-{key}.log"
    exit_code, sampler = _run_child(command, env, _timeout(workload), log, fake.pid)
    fake_cpu = process_cpu_seconds(fake.pid) - fake_before
    client_cpu = children_cpu_seconds() - child_before
    # Whatever else ran meanwhile (other jobs on the machine) competed for cores.
    others = machine_busy_seconds() - machine_before - fake_cpu - client_cpu
    result = _load_result(result_file, workload.total, exit_code)
    fake_stats, stats_wall = fake.stats(), time.time()
    span = (result["started_wall"], result["finished_wall"])  # the workload only
    return ClientRun(
        client=key,
        concurrency=workload.concurrency,
        result=result,
        fake_stats=fake_stats,
        fake_cpu_seconds=fake_cpu,
        fake_busiest=sampler.busiest("fake", *span),
        client_busiest=sampler.busiest("client", *span),
        other_cpu_cores=max(0.0, others) / (time.monotonic() - started),
        exit_code=exit_code,
        inputs=items,
        fake_stats_wall=stats_wall,
    )


def _run_child(
    command: list[str], env: dict[str, str], timeout: float, log: Path, fake_pid: int
) -> tuple[int, CpuSampler]:
    """Run a client, sampling its CPU and the fake's; past *timeout*, stop it.

    A stopped client gets SIGTERM first: it then writes its partial results and
    dumps where its tasks wait to *log*.
    """
    with log.open("w", encoding="utf-8") as stderr:
        child = subprocess.Popen(command, env=env, stderr=stderr)
        sampler = CpuSampler({"fake": fake_pid, "client": child.pid})
        sampler.start()
        try:
            return child.wait(timeout=timeout), sampler
        except subprocess.TimeoutExpired:
            print(f"  timed out after {timeout:.0f} s; see {log}", flush=True)
            child.terminate()
        finally:
            sampler.stop()
        try:
            child.wait(timeout=30)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
        return TIMED_OUT, sampler


def _load_result(path: Path, total: int, exit_code: int) -> dict[str, Any]:
    """The child's result file, or one that says every item was lost."""
    if path.exists():  # also written by a child stopped at its timeout
        result: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        return result
    error = f"ChildFailed: exit code {exit_code}"
    nan = float("nan")
    return {
        "items": [
            {
                "index": i,
                "prediction_id": None,
                "resolved_wall": None,
                "error": error,
                "error_type": "ChildFailed",
            }
            for i in range(total)
        ],
        "cpu_seconds": nan,
        "wall_seconds": nan,
        "rss_before": nan,
        "peak_rss": nan,
        "started_wall": nan,
        "finished_wall": nan,
    }


def _run_workload(workload: Workload, env: dict[str, str]) -> WorkloadResult:
    """Every client on *workload*, against one fake server."""
    items_file = OUT / f"{workload.name}-items.json"
    items = build_items(workload)
    items_file.write_text(json.dumps(items), encoding="utf-8")
    metrics = {}
    with FakeServer(workload.fake_args, OUT / f"{workload.name}-fake.log", env) as fake:
        for key in CLIENTS:
            print(f"[{workload.name}] {key} ...", flush=True)
            started = time.monotonic()
            metrics[key] = compute(
                _run_client(key, workload, fake, items, items_file, env)
            )
            m = metrics[key]
            print(
                f"[{workload.name}] {key}: {time.monotonic() - started:.0f} s, "
                f"{m.requests_per_prediction:.2f} req/pred, "
                f"{m.cpu_us_per_prediction:.0f} µs CPU/pred, "
                f"lag p50 {m.lag_p50:.3f} s p99 {m.lag_p99:.3f} s, lost {m.lost}",
                flush=True,
            )
            if workload.faults is not None or workload.limit is not None:
                o = m.outcomes
                print(
                    f"[{workload.name}] {key}: succeeded {o.succeeded}, accounted "
                    f"{o.accounted}/{m.inputs}, errors {o.errors_raised} "
                    f"({o.ambiguous} ambiguous), lost {o.lost}, duplicates "
                    f"{m.duplicates}, unobserved {o.unobserved}, 429s {o.throttled}",
                    flush=True,
                )
        fake_command = shlex.join(["python", *fake.command[1:]])
    return WorkloadResult(workload, metrics, fake_command)


def _versions() -> dict[str, str]:
    versions = {"comet_replicate_async": _our_version()}
    for name in ("replicate", "httpx", "aiohttp", "anyio", "attrs", "cattrs"):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def _our_version() -> str:
    """The installed version and the checkout's commit (the code that ran)."""
    try:
        version = importlib.metadata.version("comet-replicate-async")
    except importlib.metadata.PackageNotFoundError:
        version = "not installed"
    describe = subprocess.run(
        ["git", "describe", "--always", "--dirty"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    return f"{version} (checkout {describe.stdout.strip() or 'unknown'})"


def _context(argv: list[str]) -> Context:
    return Context(
        command=shlex.join(["python", "benchmarks/run.py", *argv]),
        date=datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        machine=(
            f"{os.cpu_count()} CPUs ({platform.machine()}, {platform.system()} "
            f"{platform.release()}), Python {platform.python_version()}"
        ),
        versions=_versions(),
    )


def main(argv: list[str] | None = None) -> int:
    """Run the chosen workloads and write the report."""
    argv = sys.argv[1:] if argv is None else argv
    args = _parse(argv)
    OUT.mkdir(exist_ok=True)
    env = _child_env()
    if args.workload == "shared":
        return _run_shared(args.scale_factor, env, args.out)
    names = GROUPS.get(args.workload) or (
        list(WORKLOADS) if args.workload == "all" else [args.workload]
    )
    workloads = [WORKLOADS[name].scaled(args.scale_factor) for name in names]
    # Versions as the run starts: the checkout may change while it runs.
    context = _context(argv)
    results = [_run_workload(w, env) for w in workloads if w.limit is None]
    limited = [w for w in workloads if w.limit is not None]
    if limited:
        # Rate-bound: each shape has its own fake server, so they can share the time.
        with ThreadPoolExecutor(len(limited)) as pool:
            results += pool.map(lambda w: _run_workload(w, env), limited)
    out: Path = args.out or (
        ROOT / "docs" / "benchmarks.md"
        if args.workload == "all"
        else OUT / f"benchmarks-{args.workload}.md"
    )
    chart_path = out.with_name(f"{out.stem}-requests-vs-lag.png")
    mixed = [result for result in results if result.workload.name == "mixed"]
    if mixed:
        plot_requests_vs_lag(mixed[0], chart_path)
    report = render(results, context, chart_path.name if mixed else None)
    if args.workload == "all":
        report = shared_journal.splice(
            report, shared_journal.run(args.scale_factor, env)
        )
    out.write_text(report, encoding="utf-8")
    print(f"wrote {out}" + (f" and {chart_path}" if mixed else ""))
    return 0


def _run_shared(scale: float, env: dict[str, str], out: Path | None) -> int:
    """The shared-journal workload alone: its section replaces the old one."""
    out = out or OUT / "benchmarks-shared.md"
    section = shared_journal.run(scale, env)
    old = out.read_text(encoding="utf-8") if out.exists() else ""
    out.write_text(shared_journal.splice(old, section), encoding="utf-8")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
