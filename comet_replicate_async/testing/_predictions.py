"""Server-side prediction records and their Replicate-shaped JSON.

A record decides everything at creation (latency, outcome, output URLs), so its
status at any later moment is a pure function of the clock: no timers run per
prediction, and ten thousand predictions cost ten thousand small objects.
"""

from __future__ import annotations

import random
import re
import secrets
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final, Literal

import attrs

__all__ = [
    "FinalStatus",
    "Latency",
    "PredictionRecord",
    "draw_final_status",
    "latency_for",
    "new_prediction",
    "output_index",
]

FinalStatus = Literal["succeeded", "failed", "aborted"]


def draw_final_status(
    rng: random.Random, failure_rate: float, abort_rate: float
) -> FinalStatus:
    """How a new prediction ends: failed, aborted or succeeded, in those shares."""
    roll = rng.random()
    if roll < failure_rate:
        return "failed"
    return "aborted" if roll < failure_rate + abort_rate else "succeeded"


#: Share of the latency spent in `starting` before `processing` begins.
STARTING_SHARE: Final = 0.1
#: The real NSFW failure text of cog-flux; clients may match on it.
NSFW_ERROR: Final = (
    "All generated images contained NSFW content. "
    "Try running it again with a different prompt."
)
#: Models whose output is a list of URLs; every other model returns one string.
LIST_OUTPUT_MODELS: Final = frozenset(
    {"black-forest-labs/flux-schnell", "black-forest-labs/flux-dev"}
)
_IMAGE_FORMATS: Final = frozenset({"webp", "jpg", "png"})
_ID_ALPHABET: Final = "0123456789abcdefghijklmnopqrstuvwxyz"
_ID_LENGTH: Final = 26
#: An output file's name: `out-{n}.{format}`.
_FILE_NAME: Final = re.compile(r"out-(\d+)\.(\w+)")


@attrs.frozen
class Latency:
    """A distribution of prediction run times, in seconds.

    Build one with `constant`, `uniform` or `parse`.

    Attributes:
        low: Shortest run time.
        high: Longest run time (equal to *low* for a constant).
    """

    low: float = attrs.field(validator=attrs.validators.ge(0.0))
    high: float = attrs.field()

    @high.validator
    def _check_high(self, _attribute: attrs.Attribute[float], value: float) -> None:
        if value < self.low:
            msg = f"latency high ({value}) is below low ({self.low})"
            raise ValueError(msg)

    @classmethod
    def constant(cls, seconds: float) -> Latency:
        """Every prediction takes exactly *seconds*."""
        return cls(seconds, seconds)

    @classmethod
    def uniform(cls, low: float, high: float) -> Latency:
        """Run times drawn uniformly from `[low, high]`."""
        return cls(low, high)

    @classmethod
    def parse(cls, spec: str) -> Latency:
        """Read a command-line spec: `"0.5"` or `"uniform:1:3"`.

        Raises:
            ValueError: The spec is neither form.
        """
        kind, _, rest = spec.partition(":")
        if kind == "uniform":
            low, sep, high = rest.partition(":")
            if not sep:
                msg = f"expected uniform:LOW:HIGH, got {spec!r}"
                raise ValueError(msg)
            return cls.uniform(float(low), float(high))
        return cls.constant(float(rest if kind == "constant" else spec))

    def draw(self, rng: random.Random) -> float:
        """One run time from this distribution."""
        return self.low if self.low == self.high else rng.uniform(self.low, self.high)


@attrs.frozen
class PredictionRecord:
    """What the fake server knows about one prediction.

    Attributes:
        id: The prediction id (26 lowercase letters and digits).
        model: `owner/name` from the create path.
        input: The `input` object as it was sent.
        final_status: The status it ends in.
        error: The error text of a failed prediction.
        output: Final output: a list of URLs, one URL, or `None`.
        latency: Seconds from creation to the terminal status.
        created_monotonic: The fake's clock at creation (drives the status).
        created_wall: `time.time()` at creation.
        seed: The seed reported in the logs.
    """

    id: str
    model: str
    input: Mapping[str, Any] = attrs.field(hash=False)
    final_status: FinalStatus
    error: str | None
    output: tuple[str, ...] | str | None
    latency: float
    created_monotonic: float
    created_wall: float
    seed: int

    @property
    def terminal_monotonic(self) -> float:
        """The fake's clock at which the prediction becomes terminal."""
        return self.created_monotonic + self.latency

    @property
    def terminal_wall(self) -> float:
        """`time.time()` at which the prediction becomes terminal."""
        return self.created_wall + self.latency

    def status_at(self, now: float) -> str:
        """The status at monotonic time *now*."""
        # Compare against absolute instants, never "now - created": the latter
        # rounds differently from terminal_monotonic and flips at the boundary.
        if now >= self.terminal_monotonic:
            return self.final_status
        started = self.created_monotonic + self.latency * STARTING_SHARE
        # An aborted prediction never started running (Replicate's definition).
        if now >= started and self.final_status != "aborted":
            return "processing"
        return "starting"

    def to_json(self, now: float) -> dict[str, Any]:
        """The Replicate prediction object as CometAPI returns it at *now*."""
        status = self.status_at(now)
        body: dict[str, Any] = {
            "id": self.id,
            "model": self.model,
            "version": "hidden",
            "input": self.input,
            "logs": "",
            "output": None,
            "data_removed": False,
            "error": None,
            "source": "api",
            "status": status,
            "created_at": _iso_millis(self.created_wall),
            "urls": _replicate_urls(self.id),
        }
        if status == "starting":
            return body
        started = self.created_wall + self.latency * STARTING_SHARE
        if status != "aborted":
            body["started_at"] = _iso_nanos(started)
            body["logs"] = f"Using seed: {self.seed}\nRunning prediction...\n"
        if status == "processing":
            return body
        body["completed_at"] = _iso_nanos(self.terminal_wall)
        if status == "aborted":
            return body
        predict_time = round(self.terminal_wall - started, 6)
        if status == "failed":
            body["error"] = self.error
            body["logs"] += f"{self.error}\n"
            body["metrics"] = {"image_count": 0, "predict_time": predict_time}
            return body
        body["output"] = (
            list(self.output) if isinstance(self.output, tuple) else self.output
        )
        count = len(self.output) if isinstance(self.output, tuple) else 1
        body["logs"] += f"Generated {count} image(s) in {predict_time:.2f}s\n"
        body["metrics"] = {"image_count": count, "predict_time": predict_time}
        return body


def new_prediction(
    *,
    model: str,
    input: Mapping[str, Any],
    latency: float,
    final_status: FinalStatus,
    files_base_url: str,
    rng: random.Random,
    now: float,
    filtered_outputs: int = 0,
) -> PredictionRecord:
    """Create the record of a prediction accepted at monotonic time *now*.

    `filtered_outputs` images are dropped from its output, leaving at least one.
    """
    prediction_id = _new_id()
    output: tuple[str, ...] | str | None = None
    if final_status == "succeeded":
        ext = input.get("output_format", "webp")
        ext = ext if ext in _IMAGE_FORMATS else "webp"
        urls = tuple(
            f"{files_base_url}/xezq/{prediction_id}/out-{n}.{ext}"
            for n in range(max(1, _output_count(model, input) - filtered_outputs))
        )
        output = urls if model in LIST_OUTPUT_MODELS else urls[0]
    return PredictionRecord(
        id=prediction_id,
        model=model,
        input=input,
        final_status=final_status,
        error=NSFW_ERROR if final_status == "failed" else None,
        output=output,
        latency=latency,
        created_monotonic=now,
        created_wall=time.time(),
        seed=rng.randrange(2**16),
    )


def latency_for(
    model: str, latency: Mapping[str, Latency] | Latency, default: Latency
) -> Latency:
    """The run time of *model*: by `owner/name`, else by bare name, else *default*."""
    if isinstance(latency, Latency):
        return latency
    bare_name = model.rpartition("/")[2]
    return latency.get(model) or latency.get(bare_name) or default


def output_index(
    prediction: PredictionRecord | None, file_name: str, now: float
) -> int | None:
    """The output number *file_name* names, if that file exists at *now*."""
    match = _FILE_NAME.fullmatch(file_name)
    if prediction is None or match is None:
        return None
    if prediction.status_at(now) != "succeeded":
        return None
    outputs = prediction.output
    urls = outputs if isinstance(outputs, tuple) else (outputs,)
    index = int(match[1])
    if index >= len(urls) or not str(urls[index]).endswith("/" + file_name):
        return None
    return index


def _output_count(model: str, input: Mapping[str, Any]) -> int:
    if model not in LIST_OUTPUT_MODELS:
        return 1
    requested = input.get("num_outputs", 1)
    # Garbage num_outputs falls back to the schema default rather than failing:
    # validating inputs is the real API's job, not the fake's.
    if not isinstance(requested, int) or isinstance(requested, bool):
        return 1
    return min(max(requested, 1), 4)


def _new_id() -> str:
    # Ids carry no behaviour, so they come from the OS rather than the seeded
    # generator: two fakes with one seed must not hand out the same ids.
    number = secrets.randbits(5 * _ID_LENGTH)
    digits = []
    for _ in range(_ID_LENGTH):
        number, digit = divmod(number, len(_ID_ALPHABET))
        digits.append(_ID_ALPHABET[digit])
    return "".join(digits)


def _replicate_urls(prediction_id: str) -> dict[str, str]:
    # Upstream URLs, exactly as CometAPI passes them through: clients must
    # never call them, which is why they point away from the fake.
    return {
        "cancel": f"https://api.replicate.com/v1/predictions/{prediction_id}/cancel",
        "get": f"https://api.replicate.com/v1/predictions/{prediction_id}",
        "stream": "https://stream.replicate.com/v1/files/example",
        "web": f"https://replicate.com/p/{prediction_id}",
    }


def _iso_millis(wall: float) -> str:
    """`2026-03-12T11:27:18.258Z`, the shape of CometAPI's `created_at`."""
    moment = datetime.fromtimestamp(wall, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _iso_nanos(wall: float) -> str:
    """`2025-02-26T15:02:03.35548709Z`: Go-style, 6 to 9 fractional digits."""
    seconds = int(wall)
    nanos = min(round((wall - seconds) * 1e9), 999_999_999)
    digits = f"{nanos:09d}".rstrip("0").ljust(6, "0")
    moment = datetime.fromtimestamp(seconds, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + digits + "Z"
