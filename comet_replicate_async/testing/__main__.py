"""Run the fake CometAPI as its own process (for benchmarks and demos).

Usage:

```bash
python -m comet_replicate_async.testing --port 0 --latency flux-dev=uniform:1:3
```

Prints `listening on http://HOST:PORT` once ready (and, on stderr, the two
`export` lines that point a client at it), and serves until SIGINT or SIGTERM. Control routes: `GET /_fake/stats` and `POST /_fake/reset`.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Sequence

from comet_replicate_async._money.prices import FALLBACK_PRICES

from ._predictions import Latency
from ._server import FakeCometAPI

__all__ = ["main"]


def _latency(spec: str) -> Latency:
    try:
        return Latency.parse(spec)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _model_latency(item: str) -> tuple[str, Latency]:
    model, sep, spec = item.partition("=")
    if not sep or not model:
        msg = f"expected MODEL=SPEC, got {item!r}"
        raise argparse.ArgumentTypeError(msg)
    return model, _latency(spec)


def _model_price(item: str) -> tuple[str, float]:
    model, sep, usd = item.partition("=")
    try:
        price = float(usd)
    except ValueError:
        price = -1.0
    if not sep or not model or not price >= 0:
        msg = f"expected MODEL=USD (a non-negative number), got {item!r}"
        raise argparse.ArgumentTypeError(msg)
    return model, price


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m comet_replicate_async.testing",
        description="Serve a fake CometAPI (Replicate-format FLUX predictions).",
    )
    add = parser.add_argument
    add("--port", type=int, required=True, help="API port; 0 picks a free one")
    add("--host", default="127.0.0.1", help="interface (default: %(default)s)")
    add("--api-key", default="test-key", help="accepted bearer token")
    add(
        "--latency", type=_model_latency, action="append", default=[],
        metavar="MODEL=SPEC", help="per-model latency: 0.5 or uniform:1:3 (repeatable)",
    )  # fmt: skip
    add(
        "--default-latency",
        type=_latency,
        default=Latency.constant(0.05),
        metavar="SPEC",
    )
    for rate in ("failure", "abort", "server-error", "reset", "malformed", "slow"):
        add(f"--{rate}-rate", type=float, default=0.0, metavar="F")
    add(
        "--ghost-share",
        type=float,
        default=0.0,
        metavar="F",
        help="share of create 5xx",
    )
    add("--slow-delay", type=float, default=1.0, metavar="S")
    add("--creates-per-minute", type=int, default=None, metavar="N")
    add("--rate-window", type=float, default=60.0, metavar="S")
    add(
        "--creates-per-second", type=float, default=None, metavar="R",
        help="token bucket on creates instead of the sliding window",
    )  # fmt: skip
    add("--burst", type=int, default=1, metavar="N", help="token bucket size")
    add(
        "--rate-counts-queries", action="store_true",
        help="the window or the bucket counts queries as well as creates",
    )  # fmt: skip
    add(
        "--max-in-flight", type=int, default=None, metavar="K",
        help="429 past K requests in flight at once",
    )  # fmt: skip
    add("--create-delay", type=float, default=0.0, metavar="S")
    add("--query-delay", type=float, default=0.0, metavar="S")
    add(
        "--ratelimit-headers", action="store_true",
        help="send ratelimit-limit/-remaining/-reset on creates",
    )  # fmt: skip
    add(
        "--price", type=_model_price, action="append", default=[],
        metavar="MODEL=USD", help="catalogue price per request (repeatable; "
        "default: the bundled FLUX estimates)",
    )  # fmt: skip
    add(
        "--extra-model", action="append", default=[], metavar="OWNER/NAME",
        help="serve this model too, besides the seven FLUX models (repeatable)",
    )  # fmt: skip
    add(
        "--create-outage", type=float, default=0.0, metavar="S",
        help="answer every create 502 (an HTML page) for S seconds from the first",
    )  # fmt: skip
    add("--seed", type=int, default=None)
    return parser


async def _serve(fake: FakeCometAPI) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with fake:
        print(f"listening on {fake.base_url}", flush=True)
        # On stderr: stdout's one line is what scripts wait for and parse.
        print(
            f"export COMETAPI_BASE_URL={fake.base_url}\n"
            f"export COMETAPI_KEY={fake.api_key}",
            file=sys.stderr,
            flush=True,
        )
        await stop.wait()


def main(argv: Sequence[str] | None = None) -> int:
    """Parse *argv*, serve until a signal arrives, and return the exit status."""
    args = _parser().parse_args(argv)
    try:
        fake = FakeCometAPI(
            api_key=args.api_key,
            latency=dict(args.latency),
            default_latency=args.default_latency,
            failure_rate=args.failure_rate,
            abort_rate=args.abort_rate,
            server_error_rate=args.server_error_rate,
            ghost_share=args.ghost_share,
            reset_rate=args.reset_rate,
            malformed_rate=args.malformed_rate,
            slow_rate=args.slow_rate,
            slow_delay=args.slow_delay,
            creates_per_minute=args.creates_per_minute,
            rate_window=args.rate_window,
            creates_per_second=args.creates_per_second,
            burst=args.burst,
            rate_counts_queries=args.rate_counts_queries,
            max_in_flight=args.max_in_flight,
            create_delay=args.create_delay,
            query_delay=args.query_delay,
            ratelimit_headers=args.ratelimit_headers,
            prices=dict(args.price) or FALLBACK_PRICES,
            extra_models=args.extra_model,
            seed=args.seed,
            host=args.host,
            port=args.port,
        )
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.create_outage > 0:
        fake.script_outage(args.create_outage, from_first_create=True)
    asyncio.run(_serve(fake))
    return 0


if __name__ == "__main__":
    sys.exit(main())
