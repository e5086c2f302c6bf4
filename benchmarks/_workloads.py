"""The benchmark workloads: which models, how many predictions, how many at once."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

__all__ = [
    "GROUPS",
    "WORKLOADS",
    "Faults",
    "Limit",
    "ModelMix",
    "Workload",
    "build_items",
]


@dataclass(frozen=True)
class ModelMix:
    """One model's share of a workload and the latency the fake gives it."""

    model: str
    share: float
    low: float
    high: float

    @property
    def latency_arg(self) -> str:
        """The fake server's ``--latency MODEL=SPEC`` value."""
        return f"{self.model}=uniform:{self.low:g}:{self.high:g}"


@dataclass(frozen=True)
class Faults:
    """The fake server's fault injection for a workload.

    *creates_per_window* creates are accepted per *rate_window* seconds (the
    fake's ``--creates-per-minute`` and ``--rate-window``); more get a 429.
    """

    server_error_rate: float
    ghost_share: float
    creates_per_window: int
    rate_window: float

    @property
    def args(self) -> tuple[str, ...]:
        """The fake server's command-line options for these faults."""
        return (
            "--server-error-rate", f"{self.server_error_rate:g}",
            "--ghost-share", f"{self.ghost_share:g}",
            "--creates-per-minute", str(self.creates_per_window),
            "--rate-window", f"{self.rate_window:g}",
        )  # fmt: skip

    def throttled_seconds(self, total: int) -> float:
        """At least how long *total* creates take under the create limit."""
        return (math.ceil(total / self.creates_per_window) - 1) * self.rate_window


@dataclass(frozen=True)
class Limit:
    """A create limit shape the fake enforces, and the create rate it allows."""

    description: str
    args: tuple[str, ...]
    allowed_rate: float  # creates per second


@dataclass(frozen=True)
class Workload:
    """A named workload: *total* predictions over *mix*, *concurrency* at once."""

    name: str
    title: str
    total: int
    concurrency: int
    mix: tuple[ModelMix, ...]
    faults: Faults | None = None
    limit: Limit | None = None

    def scaled(self, factor: float) -> Workload:
        """The same workload with counts and concurrency multiplied by *factor*.

        The create limit shrinks with them, so a smaller run is still throttled
        the same way (the same share of creates over the limit).
        """
        if factor == 1.0:
            return self
        faults = self.faults
        if faults is not None:
            faults = Faults(
                server_error_rate=faults.server_error_rate,
                ghost_share=faults.ghost_share,
                creates_per_window=max(1, round(faults.creates_per_window * factor)),
                rate_window=faults.rate_window,
            )
        return Workload(
            name=self.name,
            title=self.title,
            total=max(1, round(self.total * factor)),
            concurrency=max(1, round(self.concurrency * factor)),
            mix=self.mix,
            faults=faults,
            limit=self.limit,
        )

    @property
    def fake_args(self) -> tuple[str, ...]:
        """Extra fake server options: its latencies, and its faults if any."""
        latency = tuple(arg for m in self.mix for arg in ("--latency", m.latency_arg))
        limit = self.limit.args if self.limit else ()
        return latency + (self.faults.args if self.faults else ()) + limit


_FLUX = "black-forest-labs/"

WORKLOADS: dict[str, Workload] = {
    "mixed": Workload(
        name="mixed",
        title="mixed FLUX",
        total=2_000,
        concurrency=200,
        mix=(
            ModelMix(_FLUX + "flux-schnell", 0.5, 1.0, 3.0),
            ModelMix(_FLUX + "flux-dev", 0.3, 4.0, 8.0),
            ModelMix(_FLUX + "flux-pro", 0.2, 8.0, 14.0),
        ),
    ),
    "scale": Workload(
        name="scale",
        title="scale",
        total=10_000,
        concurrency=1_000,
        mix=(ModelMix(_FLUX + "flux-schnell", 1.0, 1.0, 3.0),),
    ),
    # 5% of creates and queries answered 5xx, half of the create 5xx "ghosts"
    # (created, then a 502); creates above 300 a minute answered 429.
    "faults": Workload(
        name="faults",
        title="faults",
        total=600,
        concurrency=100,
        mix=(ModelMix(_FLUX + "flux-schnell", 1.0, 1.0, 3.0),),
        faults=Faults(
            server_error_rate=0.05,
            ghost_share=0.5,
            creates_per_window=300,
            rate_window=60.0,
        ),
    ),
}


def _limits(name: str, limit: Limit) -> Workload:
    return Workload(
        name=f"limits-{name}",
        title=f"limits: {name}",
        total=1_000,
        concurrency=100,
        mix=(ModelMix(_FLUX + "flux-schnell", 1.0, 1.0, 3.0),),
        limit=limit,
    )


# The three create limits real gateways have, each allowing about 5-10 creates/s.
WORKLOADS |= {
    "limits-bucket": _limits(
        "bucket",
        Limit(
            "a token bucket of 5 creates/s with bursts of 2 (429 with Retry-After)",
            ("--creates-per-second", "5", "--burst", "2"),
            allowed_rate=5.0,
        ),
    ),
    "limits-window": _limits(
        "window",
        Limit(
            "a sliding window of 600 creates a minute, as Replicate documents (429 "
            "with Retry-After; `ratelimit-remaining`/`ratelimit-reset` headers)",
            (
                "--creates-per-minute",
                "600",
                "--rate-window",
                "60",
                "--ratelimit-headers",
            ),
            allowed_rate=10.0,
        ),
    ),
    "limits-inflight": _limits(
        "inflight",
        Limit(
            "a per-key cap of 5 requests in flight (creates and queries), each "
            "create taking 0.4 s on the server (429 without Retry-After, as new-api "
            "gateways do); the allowed create rate is 4 / 0.4 s = 10/s, one of the "
            "five slots left for the polls",
            ("--max-in-flight", "5", "--create-delay", "0.4"),
            allowed_rate=10.0,
        ),
    ),
}

# Two limits that count every request or leave no slack: a gateway's per-key cap
# on requests in flight (queries included), and a token bucket with a burst of 1.
CAP_IN_FLIGHT = 20
CAP_HOLD = 0.2  # seconds the gateway holds each request, create or query
_CAP_ARGS = (
    "--max-in-flight", str(CAP_IN_FLIGHT),
    "--create-delay", f"{CAP_HOLD:g}",
    "--query-delay", f"{CAP_HOLD:g}",
)  # fmt: skip
WORKLOADS |= {
    "limits-cap": Workload(
        name="limits-cap",
        title="limits: per-key cap",
        total=300,
        concurrency=100,
        mix=(ModelMix(_FLUX + "flux-schnell", 1.0, 1.0, 3.0),),
        limit=Limit(
            f"a per-key cap of {CAP_IN_FLIGHT} requests in flight (creates and "
            f"queries), each held {CAP_HOLD:g} s on the server (429 without "
            "Retry-After once more are in flight, as new-api gateways do): "
            f"{CAP_IN_FLIGHT / CAP_HOLD:g} requests/s, polls included",
            _CAP_ARGS,
            allowed_rate=CAP_IN_FLIGHT / CAP_HOLD / 2,  # half left for the polls
        ),
    ),
    "limits-burst1": Workload(
        name="limits-burst1",
        title="limits: bucket, burst 1",
        total=100,
        concurrency=20,
        mix=(ModelMix(_FLUX + "flux-schnell", 1.0, 1.0, 3.0),),
        limit=Limit(
            "a token bucket of 1 create/s with a burst of 1 (429 with "
            "Retry-After), Replicate's limit for accounts with little credit "
            "made 10 times faster",
            ("--creates-per-second", "1", "--burst", "1"),
            allowed_rate=1.0,
        ),
    ),
}

#: Workloads run together under one name (``--workload limits``).
GROUPS: dict[str, tuple[str, ...]] = {
    "limits": (
        "limits-bucket",
        "limits-window",
        "limits-inflight",
        "limits-cap",
        "limits-burst1",
    ),
    "budget": ("limits-cap", "limits-burst1"),
}


def build_items(workload: Workload) -> list[dict[str, Any]]:
    """The workload's inputs, models interleaved deterministically, prompts unique.

    Each position goes to the model furthest behind its share so far (ties to the
    first listed), so every prefix of the list has the intended mix: clients that
    start predictions in input order all see the same blend at every moment.
    """
    assigned = [0] * len(workload.mix)
    items: list[dict[str, Any]] = []
    for index in range(workload.total):
        deficits = [
            mix.share * (index + 1) - done
            for mix, done in zip(workload.mix, assigned, strict=True)
        ]
        pick = max(range(len(deficits)), key=lambda k: (deficits[k], -k))
        assigned[pick] += 1
        model = workload.mix[pick].model
        prompt = f"{model.rpartition('/')[2]} #{index}: a paper boat on a still lake"
        items.append({"model": model, "input": {"prompt": prompt}})
    return items
