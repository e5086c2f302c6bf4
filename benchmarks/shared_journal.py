"""One batch shared by 1, 2 and 4 worker processes through a PostgreSQL journal.

Usage (from the repository root)::

    python benchmarks/shared_journal.py [--scale-factor F] [--out FILE]

One fake server (its own process) with one create limit for the key, one
PostgreSQL server (the `pgserver` wheel, or `COMET_BENCH_POSTGRES_URL`), and for
each worker count a fresh batch run by that many processes at once. Measures wall
time, HTTP requests per prediction, the share of creates refused (429) and the
duplicates the fake saw (must be 0). `run.py --workload shared` runs it too.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.parse
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from _fake import API_KEY, FakeServer

HERE = Path(__file__).resolve().parent
OUT = HERE / ".out"
MODEL = "black-forest-labs/flux-schnell"
TITLE = "## Many workers, one batch (PostgreSQL journal)"
WORKERS = (1, 2, 4)
PREDICTIONS = 10_000
# One key's create limit: a token bucket of 200 creates/s, bursts of 20; the
# pacers learn a rate below it, so a run of 10,000 takes about two minutes
# whatever the number of workers.
RATE, BURST = 200.0, 20
LATENCY = "uniform:1:3"
# Slots per worker: the limit's rate times the slowest run, with room to spare.
CONCURRENCY = 512
LEASE = 10


def inputs(count: int) -> list[dict[str, str]]:
    return [{"prompt": f"shared batch input {n}"} for n in range(count)]


# -- one worker (a child process) ---------------------------------------------


async def _work(base_url: str, journal: str, count: int, result: Path) -> None:
    from comet_replicate_async import Session

    ok = errors = 0
    async with Session(
        API_KEY, base_url=base_url, max_concurrency=CONCURRENCY
    ) as session:
        async for item in session.as_completed(MODEL, inputs(count), journal=journal):
            ok += item.ok
            errors += not item.ok
        stats = session.stats
    # Written once, at the end: blocking is harmless here.
    result.write_text(  # noqa: ASYNC240
        json.dumps(
            {
                "yielded": ok + errors,
                "ok": ok,
                "errors": errors,
                "creates_refused": stats.creates_refused,
            }
        ),
        encoding="utf-8",
    )


# -- the benchmark ------------------------------------------------------------


@contextmanager
def _postgres() -> Iterator[str]:
    url = os.environ.get("COMET_BENCH_POSTGRES_URL")
    if url:
        yield url
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pgserver's platformdirs, as in the tests
        from pgserver.postgres_server import get_server

        server = get_server(
            tempfile.mkdtemp(prefix="comet-bench-postgres-"), cleanup_mode="delete"
        )
    try:
        yield server.get_uri()
    finally:
        server.cleanup()


def _with_batch(url: str, batch: str) -> str:
    parts = urllib.parse.urlsplit(url)
    query = [*urllib.parse.parse_qsl(parts.query), ("batch", batch)]
    query.append(("lease", str(LEASE)))
    return parts._replace(query=urllib.parse.urlencode(query)).geturl()


def _run(
    fake: FakeServer, url: str, workers: int, count: int, env: dict[str, str]
) -> dict[str, Any]:
    fake.reset()
    journal = _with_batch(url, f"bench-{workers}-{time.time_ns()}")
    results = [OUT / f"shared-{workers}-{n}.json" for n in range(workers)]
    for result in results:
        result.unlink(missing_ok=True)  # a failed worker leaves none
    started = time.monotonic()
    children = [
        subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--worker",
                fake.base_url,
                journal,
                str(count),
                str(result),
            ],
            env=env,
        )
        for result in results
    ]
    codes = [child.wait(timeout=3 * count / RATE + 300) for child in children]
    wall = time.monotonic() - started
    stats = fake.stats()
    done = [json.loads(result.read_text(encoding="utf-8")) for result in results]
    creates = stats["requests"].get("create", {})
    attempts = sum(creates.values())
    refused = creates.get("429", 0)
    requests = sum(sum(by.values()) for by in stats["requests"].values())
    return {
        "workers": workers,
        "wall": wall,
        "requests_per_prediction": requests / count,
        "create_attempts": attempts,
        "refused": refused,
        "created": stats["created"],
        "duplicates": stats["duplicates"],
        "yielded": sum(d["yielded"] for d in done),
        "ok": sum(d["ok"] for d in done),
        "per_worker": [d["yielded"] for d in done],
        "exit_codes": codes,
    }


def run(scale: float, env: dict[str, str]) -> str:
    """Run every worker count; the report's section (markdown)."""
    OUT.mkdir(exist_ok=True)
    count = max(100, round(PREDICTIONS * scale))
    fake_args = ["--latency", f"{MODEL}={LATENCY}", "--creates-per-second",
                 str(RATE), "--burst", str(BURST)]  # fmt: skip
    rows = []
    with (
        _postgres() as url,
        FakeServer(fake_args, OUT / "shared-fake.log", env) as fake,
    ):
        for workers in WORKERS:
            print(f"[shared] {workers} worker(s) ...", flush=True)
            row = _run(fake, url, workers, count, env)
            print(f"[shared] {json.dumps(row)}", flush=True)
            rows.append(row)
    return render(rows, count)


def render(rows: list[dict[str, Any]], count: int) -> str:
    lines = [
        TITLE,
        "",
        f"{count:,} predictions of one batch, run by 1, 2 and 4 worker processes at "
        'once through one PostgreSQL journal (`journal="postgresql://..."`), '
        f"against one fake server whose key allows {RATE:g} creates/s in bursts of "
        f"{BURST} (a token bucket; 429 with Retry-After past it); run times "
        f"{LATENCY.replace('uniform:', '').replace(':', '-')} s; "
        f"`max_concurrency={CONCURRENCY}` per worker. The ideal wall time is "
        f"{count / RATE:.0f} s (creates ÷ allowed rate) plus the slowest run. "
        f"This machine has {os.cpu_count()} CPUs: with more processes than cores "
        "(the workers, the fake, PostgreSQL) the workers compete for CPU, and the "
        "wall time measures the machine more than the journal; the refused "
        "creates and the duplicates do not depend on it.",
        "",
        "| workers | wall time | HTTP requests / prediction | refused creates "
        "(429) | duplicates | items yielded (per worker) | succeeded |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        attempts = max(1, row["create_attempts"])
        lines.append(
            f"| {row['workers']} | {row['wall']:.1f} s "
            f"| {row['requests_per_prediction']:.2f} "
            f"| {row['refused']:,} of {row['create_attempts']:,} "
            f"({100 * row['refused'] / attempts:.1f}%) "
            f"| {row['duplicates']} "
            f"| {row['yielded']:,} ({', '.join(f'{n:,}' for n in row['per_worker'])}) "
            f"| {row['ok']:,} |"
        )
    lines.append("")
    return "\n".join(lines) + "\n"


def splice(report: str, section: str) -> str:
    """`report` with its shared-journal section replaced by `section` (or added)."""
    start = report.find(TITLE)
    if start < 0:
        return report.rstrip("\n") + "\n\n" + section
    end = report.find("\n## ", start + len(TITLE))
    rest = "" if end < 0 else report[end + 1 :]
    return report[:start] + section + ("\n" + rest if rest else "")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale-factor", type=float, default=1.0)
    parser.add_argument("--out", type=Path, default=OUT / "benchmarks-shared.md")
    parser.add_argument("--worker", nargs=4, metavar=("BASE", "JOURNAL", "N", "OUT"))
    args = parser.parse_args(argv)
    if args.worker:
        import anyio

        base, journal, n, result = args.worker
        anyio.run(_work, base, journal, int(n), Path(result))
        return 0
    section = run(args.scale_factor, dict(os.environ))
    old = args.out.read_text(encoding="utf-8") if args.out.exists() else ""
    args.out.write_text(splice(old, section) if old else section, encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
