"""The poll schedule, as pure code: when to ask about a prediction next.

The poller learns, per model, how long predictions take (from the server's own
`created_at` and `completed_at`), and polls densely only inside the window where
an answer is likely: not at all before it, every `interval` seconds inside it,
and with a growing gap for stragglers after it. Until a model has been seen to
finish, every prediction of it is polled every `interval` seconds, so the first
wave of a batch is never answered late.
"""

from __future__ import annotations

import bisect
import collections
import math
import random

import attrs

__all__ = ["ModelTimings", "PollPolicy", "TimingBook"]


@attrs.frozen
class PollPolicy:
    """How the background poller spaces its queries.

    Args:
        interval: gap between polls while an answer is likely, in seconds. Half of
            it is the typical delay between a prediction finishing and its result
            being seen.
        max_interval: the longest gap, reached by stragglers that run far past what
            the model usually takes.
        straggler_growth: how fast the gap grows for a straggler, per poll.
        jitter: each gap is stretched or shrunk by up to this fraction, so that
            predictions created together are not polled in bursts.
        window_margin: how much earlier than the fastest prediction seen the window
            opens, as a fraction of that time; shrinks as more are seen.
        history: durations remembered per model.
        max_concurrent_queries: queries in flight at once, for the whole session.
        max_consecutive_failures: polls of one prediction that may fail in a row
            (each retryable, with backoff) before its waiters get the error.
    """

    interval: float = attrs.field(default=0.4, validator=attrs.validators.gt(0))
    max_interval: float = attrs.field(default=5.0, validator=attrs.validators.gt(0))
    straggler_growth: float = attrs.field(default=1.5, validator=attrs.validators.ge(1))
    jitter: float = attrs.field(
        default=0.1, validator=[attrs.validators.ge(0), attrs.validators.lt(1)]
    )
    window_margin: float = attrs.field(
        default=0.5, validator=[attrs.validators.ge(0), attrs.validators.le(1)]
    )
    history: int = attrs.field(default=256, validator=attrs.validators.ge(1))
    max_concurrent_queries: int = attrs.field(
        default=64, validator=attrs.validators.ge(1)
    )
    max_consecutive_failures: int = attrs.field(
        default=20, validator=attrs.validators.ge(1)
    )


@attrs.define
class ModelTimings:
    """Recent durations of one model, with the window they imply kept up to date."""

    history: int
    window_margin: float
    _recent: collections.deque[float] = attrs.field(init=False)
    _sorted: list[float] = attrs.field(init=False, factory=list)
    opens_at: float = attrs.field(init=False, default=0.0)
    closes_at: float = attrs.field(init=False, default=math.inf)

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


@attrs.define
class TimingBook:
    """Timings of every model this session has seen finish."""

    policy: PollPolicy
    _models: dict[str, ModelTimings] = attrs.field(init=False, factory=dict)

    def record(self, model: str, duration: float) -> None:
        """A prediction of `model` took `duration` seconds."""
        timings = self._models.get(model)
        if timings is None:
            timings = self._models[model] = ModelTimings(
                self.policy.history, self.policy.window_margin
            )
        timings.add(duration)

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
            self.policy, self._models.get(model), age, overdue_polls, rng
        )


def next_poll_delay(
    policy: PollPolicy,
    timings: ModelTimings | None,
    age: float,
    overdue_polls: int,
    rng: random.Random,
) -> float:
    """The pure rule behind `TimingBook.next_delay`."""
    if timings is None:
        delay = policy.interval
    elif age < timings.opens_at - policy.interval:
        # Nothing is likely before the window opens: one poll as it does.
        return timings.opens_at - age
    elif age <= timings.closes_at:
        delay = policy.interval
    else:
        delay = min(
            policy.max_interval,
            policy.interval * policy.straggler_growth ** (overdue_polls + 1),
        )
    if policy.jitter:
        delay *= 1.0 + rng.uniform(-policy.jitter, policy.jitter)
    return delay
