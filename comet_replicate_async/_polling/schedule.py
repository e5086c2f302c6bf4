"""The poll schedule, as pure code: when to ask about a prediction next.

The poller learns, per model, how long predictions take (from the server's own
`created_at` and `completed_at`), and polls only inside the window where an answer
is likely: not at all before it, then at a steady interval, then with a growing gap
for stragglers that run past it. The interval is a share of the model's typical
duration (so a 2-second model is watched more closely than a 12-second one, and
no result waits long relative to its own run time), kept between `min_interval`
and `max_interval`. Until a model has been seen to finish, a prediction's own age
stands in for the typical duration: a young prediction is polled often, an older
one less, and none waits more than `max_interval`. Meanwhile the oldest ones are
evidence too: once several predictions of the model have all been seen running
past some age, a younger one is unlikely to finish before the first of them does,
so it is left alone until then (within `straggler_max_interval`).
"""

from __future__ import annotations

import bisect
import collections
import math
import random

import attrs

__all__ = ["ModelTimings", "PollPolicy", "TimingBook", "next_poll_delay"]


@attrs.frozen
class PollPolicy:
    """How the background poller spaces its queries.

    Args:
        interval_share: the interval while an answer is likely, as a share of the
            model's typical duration. Half the interval is the typical delay between
            a prediction finishing and its result being seen.
        min_interval: the shortest interval, in seconds.
        max_interval: the longest interval while an answer is likely (or while the
            model's durations are still unknown), in seconds.
        straggler_max_interval: the longest gap, reached by stragglers that run far
            past what the model usually takes.
        straggler_growth: how fast the gap grows for a straggler, per poll.
        jitter: each gap is stretched or shrunk by up to this fraction, so that
            predictions created together are not polled in bursts.
        window_margin: how much earlier than the fastest prediction seen (and later
            than the slowest) the window opens (closes), as a fraction of that
            time; it shrinks as more predictions are seen.
        trusted_samples: durations seen before a prediction that outlasts all of
            them is treated as a straggler; until then the slowest seen may just be
            the slowest finished so far.
        coalesce: polls falling due within this many seconds of each other are
            sent together, in one wake-up of the event loop (some a little
            early: each wake-up costs more CPU than an early poll).
        history: durations remembered per model.
        survivors: before any prediction of a model has finished, once this many
            have been seen running past some age, younger ones of that model are
            not polled until one finishes (or `straggler_max_interval` passes; 0:
            poll them anyway).
        max_concurrent_queries: queries in flight at once, for the whole session.
        max_consecutive_failures: polls of one prediction that may fail in a row
            (each retryable, with backoff) before its waiters get the error.
    """

    interval_share: float = attrs.field(default=0.125, validator=attrs.validators.gt(0))
    min_interval: float = attrs.field(default=0.25, validator=attrs.validators.gt(0))
    max_interval: float = attrs.field(default=0.8, validator=attrs.validators.gt(0))
    straggler_max_interval: float = attrs.field(
        default=5.0, validator=attrs.validators.gt(0)
    )
    straggler_growth: float = attrs.field(default=1.5, validator=attrs.validators.ge(1))
    jitter: float = attrs.field(
        default=0.1, validator=[attrs.validators.ge(0), attrs.validators.lt(1)]
    )
    window_margin: float = attrs.field(
        default=0.25, validator=[attrs.validators.ge(0), attrs.validators.le(1)]
    )
    trusted_samples: int = attrs.field(default=20, validator=attrs.validators.ge(1))
    coalesce: float = attrs.field(default=0.05, validator=attrs.validators.ge(0))
    history: int = attrs.field(default=256, validator=attrs.validators.ge(1))
    survivors: int = attrs.field(default=5, validator=attrs.validators.ge(0))
    max_concurrent_queries: int = attrs.field(
        default=64, validator=attrs.validators.ge(1)
    )
    max_consecutive_failures: int = attrs.field(
        default=20, validator=attrs.validators.ge(1)
    )

    def __attrs_post_init__(self) -> None:
        if self.min_interval > self.max_interval:
            raise ValueError(
                f"min_interval ({self.min_interval}) is above max_interval "
                f"({self.max_interval})"
            )

    def interval_for(self, typical_duration: float) -> float:
        """The interval for a model whose predictions typically take this long."""
        share = self.interval_share * typical_duration
        return min(self.max_interval, max(self.min_interval, share))


@attrs.define
class ModelTimings:
    """Recent durations of one model, with the window they imply kept up to date."""

    history: int
    window_margin: float
    _recent: collections.deque[float] = attrs.field(init=False)
    _sorted: list[float] = attrs.field(init=False, factory=list)
    opens_at: float = attrs.field(init=False, default=0.0)
    closes_at: float = attrs.field(init=False, default=math.inf)
    typical: float = attrs.field(init=False, default=0.0)

    def __attrs_post_init__(self) -> None:
        self._recent = collections.deque(maxlen=self.history)

    @property
    def samples(self) -> int:
        """How many durations are remembered."""
        return len(self._sorted)

    def add(self, duration: float) -> None:
        """Remember one more duration and move the window to fit."""
        if not math.isfinite(duration) or duration < 0:
            return
        if len(self._recent) == self.history:
            oldest = self._recent[0]
            del self._sorted[bisect.bisect_left(self._sorted, oldest)]
        self._recent.append(duration)
        bisect.insort(self._sorted, duration)
        self._update_window()

    def _update_window(self) -> None:
        count = len(self._sorted)
        # Few samples say little about the fastest case: open the window early and
        # close it late, then tighten as evidence accumulates.
        margin = self.window_margin / math.sqrt(count)
        low = self._sorted[int(0.01 * (count - 1))]
        high = self._sorted[math.ceil(0.99 * (count - 1))]
        self.opens_at = low * (1.0 - margin)
        self.closes_at = high * (1.0 + margin)
        self.typical = self._sorted[count // 2]


@attrs.define
class TimingBook:
    """Timings of every model this session has seen finish.

    Before a model's first prediction finishes, it keeps the ages of the
    `PollPolicy.survivors` predictions of that model seen running the longest.
    """

    policy: PollPolicy
    _models: dict[str, ModelTimings] = attrs.field(init=False, factory=dict)
    # model -> {prediction id: the greatest age it was seen running at}
    _oldest_running: dict[str, dict[str, float]] = attrs.field(init=False, factory=dict)

    def record(self, model: str, duration: float) -> None:
        """A prediction of `model` took `duration` seconds."""
        timings = self._models.get(model)
        if timings is None:
            timings = self._models[model] = ModelTimings(
                self.policy.history, self.policy.window_margin
            )
            self._oldest_running.pop(model, None)  # durations say more from now on
        timings.add(duration)

    def seen_running(self, model: str, prediction_id: str, age: float) -> None:
        """A prediction of a model with no known duration was still running at `age`."""
        keep = self.policy.survivors
        if not keep or model in self._models:
            return
        oldest = self._oldest_running.setdefault(model, {})
        if prediction_id in oldest or len(oldest) < keep:
            oldest[prediction_id] = max(age, oldest.get(prediction_id, 0.0))
            return
        youngest = min(oldest, key=oldest.__getitem__)
        if age > oldest[youngest]:
            del oldest[youngest]
            oldest[prediction_id] = age

    def forget_running(self, model: str) -> bool:
        """A prediction of `model` ended without succeeding: drop the survivors.

        Their ages said nothing finishes that early; an ending says otherwise.
        True when that had been holding younger predictions back.
        """
        oldest = self._oldest_running.pop(model, None)
        return oldest is not None and len(oldest) >= self.policy.survivors > 0

    def survived(self, model: str) -> float | None:
        """The age `survivors` predictions of `model` all ran past, none finished.

        None once a prediction of the model has finished, or before that many have
        been seen.
        """
        oldest = self._oldest_running.get(model)
        if oldest is None or len(oldest) < self.policy.survivors:
            return None
        return min(oldest.values())

    def get(self, model: str) -> ModelTimings | None:
        """The timings of `model`, or None before one of its predictions finished."""
        return self._models.get(model)

    def next_delay(
        self, model: str, age: float, overdue_polls: int, rng: random.Random
    ) -> float:
        """Seconds until the next poll of a prediction `age` seconds old.

        `overdue_polls` counts the polls already made after the window closed.
        """
        return next_poll_delay(
            self.policy,
            self._models.get(model),
            age,
            overdue_polls,
            rng,
            survived=self.survived(model),
        )


def next_poll_delay(
    policy: PollPolicy,
    timings: ModelTimings | None,
    age: float,
    overdue_polls: int,
    rng: random.Random,
    *,
    survived: float | None = None,
) -> float:
    """The pure rule behind `TimingBook.next_delay`.

    `survived`: for a model with no known duration, the age that several of its
    predictions have all been seen running past (`TimingBook.survived`).
    """
    if timings is None:
        # Unknown model: something that has run `age` seconds is likely to run
        # about as long again, so twice its age stands in for the typical duration.
        delay = policy.interval_for(2.0 * age)
        if survived is not None and age < survived:
            # Older predictions of this model are all still running: this younger
            # one most likely is too. It waits for the first of them to finish (the
            # poller then reschedules it from the duration seen), within a cap.
            delay = max(delay, policy.straggler_max_interval)
    else:
        interval = policy.interval_for(timings.typical)
        if age < timings.opens_at:
            # Nothing finishes before the window opens, so a poll as it opens would
            # find nothing: the first one comes an interval into it.
            return timings.opens_at - age + _jittered(policy, interval, rng)
        if age <= timings.closes_at or timings.samples < policy.trusted_samples:
            delay = interval
        else:
            delay = min(
                policy.straggler_max_interval,
                interval * policy.straggler_growth ** (overdue_polls + 1),
            )
    return _jittered(policy, delay, rng)


def _jittered(policy: PollPolicy, delay: float, rng: random.Random) -> float:
    if policy.jitter:
        delay *= 1.0 + rng.uniform(-policy.jitter, policy.jitter)
    return delay
