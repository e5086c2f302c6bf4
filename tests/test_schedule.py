"""The poll schedule and the registry, stepped without a clock or a network."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from comet_replicate_async._schedule import (
    ModelTimings,
    PollPolicy,
    TimingBook,
    next_poll_delay,
)

NO_JITTER = PollPolicy(jitter=0.0)
RNG = random.Random(0)


def book_with(durations: list[float], policy: PollPolicy = NO_JITTER) -> TimingBook:
    book = TimingBook(policy)
    for duration in durations:
        book.record("m", duration)
    return book


def test_unknown_model_is_polled_every_interval() -> None:
    book = TimingBook(NO_JITTER)

    assert book.next_delay("m", 0.0, 0, RNG) == NO_JITTER.interval
    assert book.next_delay("m", 30.0, 0, RNG) == NO_JITTER.interval


def test_no_poll_before_the_window_opens() -> None:
    book = book_with([8.0 + i * 0.06 for i in range(100)])  # 8 to 14 s
    timings = book.get("m")
    assert timings is not None

    first = book.next_delay("m", 0.0, 0, RNG)

    assert 7.0 < timings.opens_at <= 8.0
    assert first == pytest.approx(timings.opens_at)


def test_dense_polls_inside_the_window() -> None:
    book = book_with([8.0 + i * 0.06 for i in range(100)])

    assert book.next_delay("m", 10.0, 0, RNG) == NO_JITTER.interval


def test_stragglers_back_off_up_to_the_cap() -> None:
    book = book_with([1.0] * 50)
    delays = [book.next_delay("m", 100.0, overdue, RNG) for overdue in range(20)]

    assert delays == sorted(delays)
    assert delays[0] > NO_JITTER.interval
    assert delays[-1] == NO_JITTER.max_interval


def test_window_tightens_as_evidence_grows() -> None:
    few = book_with([10.0]).get("m")
    many = book_with([10.0] * 100).get("m")
    assert few is not None
    assert many is not None

    assert few.opens_at < many.opens_at <= 10.0
    assert few.closes_at > many.closes_at >= 10.0


def test_history_forgets_the_oldest() -> None:
    timings = ModelTimings(history=3, window_margin=0.0)
    for duration in [1.0, 2.0, 3.0, 100.0, 101.0, 102.0]:
        timings.add(duration)

    assert timings.samples == 3
    assert timings.opens_at == 100.0
    assert timings.closes_at == 102.0


def test_nonsense_durations_are_ignored() -> None:
    timings = ModelTimings(history=10, window_margin=0.5)
    timings.add(float("nan"))
    timings.add(-1.0)

    assert timings.samples == 0


@given(
    durations=st.lists(
        st.floats(min_value=0.01, max_value=600), min_size=1, max_size=50
    ),
    age=st.floats(min_value=0, max_value=2000),
    overdue=st.integers(min_value=0, max_value=100),
    seed=st.integers(),
)
def test_delay_is_always_positive_and_bounded(
    durations: list[float], age: float, overdue: int, seed: int
) -> None:
    policy = PollPolicy()
    book = book_with(durations, policy)

    delay = book.next_delay("m", age, overdue, random.Random(seed))

    assert delay >= 0
    longest = max(policy.max_interval, max(durations) * 1.0) * (1 + policy.jitter)
    assert delay <= longest


@given(seed=st.integers())
def test_jitter_stays_within_its_fraction(seed: int) -> None:
    policy = PollPolicy(interval=1.0, jitter=0.2)

    delay = next_poll_delay(policy, None, 0.0, 0, random.Random(seed))

    assert 0.8 <= delay <= 1.2
