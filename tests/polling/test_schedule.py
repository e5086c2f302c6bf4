"""The poll schedule and its policy, stepped without a clock or a network."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from comet_replicate_async import PollPolicy
from comet_replicate_async._polling.schedule import (
    ModelTimings,
    TimingBook,
    next_poll_delay,
)

NO_JITTER = PollPolicy(jitter=0.0, interval_share=0.15)
RNG = random.Random(0)


def book_with(durations: list[float], policy: PollPolicy = NO_JITTER) -> TimingBook:
    book = TimingBook(policy)
    for duration in durations:
        book.record("m", duration)
    return book


SLOW = [8.0 + i * 0.06 for i in range(100)]  # 8 to 14 s, typical 11 s
FAST = [1.0 + i * 0.02 for i in range(100)]  # 1 to 3 s, typical 2 s


def test_interval_is_a_share_of_the_typical_duration_within_bounds() -> None:
    policy = PollPolicy(interval_share=0.15, min_interval=0.25, max_interval=0.8)

    assert policy.interval_for(2.0) == pytest.approx(0.3)
    assert policy.interval_for(0.1) == 0.25
    assert policy.interval_for(60.0) == 0.8


def test_unknown_model_polls_young_predictions_often_and_older_ones_less() -> None:
    book = TimingBook(NO_JITTER)
    delays = [book.next_delay("m", age, 0, RNG) for age in (0.0, 1.0, 2.0, 30.0)]

    assert delays == sorted(delays)
    assert delays[0] == NO_JITTER.min_interval
    assert delays[-1] == NO_JITTER.max_interval


def test_no_poll_before_the_window_opens_and_none_as_it_opens() -> None:
    book = book_with(SLOW)
    timings = book.get("m")
    assert timings is not None
    interval = NO_JITTER.interval_for(timings.typical)

    first = book.next_delay("m", 0.0, 0, RNG)

    assert 7.0 < timings.opens_at <= 8.0
    # Nothing can finish before the window opens: the first poll comes an
    # interval into it, where it can find a result.
    assert first == pytest.approx(timings.opens_at + interval)


def test_shorter_models_are_watched_more_closely_inside_their_window() -> None:
    slow = book_with(SLOW).next_delay("m", 10.0, 0, RNG)
    fast = book_with(FAST).next_delay("m", 2.0, 0, RNG)

    assert fast < slow
    assert fast == pytest.approx(NO_JITTER.interval_share * 2.0, rel=0.01)
    assert slow == NO_JITTER.max_interval


def test_stragglers_back_off_up_to_the_cap() -> None:
    book = book_with([1.0] * 50)
    delays = [book.next_delay("m", 100.0, overdue, RNG) for overdue in range(20)]

    assert delays == sorted(delays)
    assert delays[0] > NO_JITTER.min_interval
    assert delays[-1] == NO_JITTER.straggler_max_interval


def test_no_straggler_backoff_until_enough_durations_are_known() -> None:
    # The slowest of a few finished predictions says little about the rest.
    few = book_with([1.0] * (NO_JITTER.trusted_samples - 1))

    assert few.next_delay("m", 100.0, 5, RNG) == NO_JITTER.min_interval


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
    assert timings.typical == 101.0


def test_nonsense_durations_are_ignored() -> None:
    timings = ModelTimings(history=10, window_margin=0.5)
    timings.add(float("nan"))
    timings.add(-1.0)

    assert timings.samples == 0


def book_with_survivors(
    ages: list[float], policy: PollPolicy = NO_JITTER
) -> TimingBook:
    """A book for model "m", none finished, with these predictions seen running."""
    book = TimingBook(policy)
    for n, age in enumerate(ages):
        book.seen_running("m", f"p{n}", age)
    return book


def test_young_predictions_are_left_alone_while_older_ones_of_a_new_model_run() -> None:
    book = book_with_survivors([3.0, 3.1, 3.2, 3.3, 3.4])

    young = book.next_delay("m", 1.0, 0, RNG)
    at_the_front = book.next_delay("m", 3.4, 0, RNG)

    assert book.survived("m") == 3.0
    # The five older ones are all still running: the young one waits for the
    # first of them to finish (the poller then reschedules it), within the cap.
    assert young == NO_JITTER.straggler_max_interval
    assert at_the_front == NO_JITTER.interval_for(2 * 3.4)


def test_fewer_survivors_than_the_policy_asks_for_change_nothing() -> None:
    book = book_with_survivors([3.0, 3.1, 3.2, 3.3])

    assert book.survived("m") is None
    assert book.next_delay("m", 1.0, 0, RNG) == NO_JITTER.interval_for(2.0)


def test_survivors_zero_turns_the_rule_off() -> None:
    book = book_with_survivors([3.0] * 10, PollPolicy(jitter=0.0, survivors=0))

    assert book.survived("m") is None


def test_survivors_are_the_oldest_seen_and_forgotten_once_one_finishes() -> None:
    book = book_with_survivors([1.0, 2.0, 3.0, 4.0, 5.0])
    book.seen_running("m", "p0", 6.0)  # p0 again, older now
    book.seen_running("m", "new", 0.5)  # younger than all five: not kept
    assert book.survived("m") == 2.0
    book.seen_running("m", "older", 7.0)  # replaces the youngest kept (p1 at 2.0)
    assert book.survived("m") == 3.0

    book.record("m", 8.0)

    assert book.survived("m") is None
    book.seen_running("m", "late", 9.0)  # durations are known: no more survivors
    assert book.survived("m") is None


def test_a_prediction_ending_without_success_ends_the_hold_back() -> None:
    book = book_with_survivors([3.0, 3.1, 3.2, 3.3, 3.4])

    assert book.forget_running("m")

    assert book.survived("m") is None
    assert book.next_delay("m", 1.0, 0, RNG) == NO_JITTER.interval_for(2.0)
    assert not book.forget_running("m")  # nothing held back any more


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

    assert delay > 0
    longest_wait = max(durations) + policy.straggler_max_interval
    assert delay <= longest_wait * (1 + policy.jitter)


@given(seed=st.integers())
def test_jitter_stays_within_its_fraction(seed: int) -> None:
    policy = PollPolicy(min_interval=1.0, max_interval=1.0, jitter=0.2)

    delay = next_poll_delay(policy, None, 0.0, 0, random.Random(seed))

    assert 0.8 <= delay <= 1.2


def test_min_interval_above_max_is_refused() -> None:
    with pytest.raises(ValueError, match="min_interval"):
        PollPolicy(min_interval=2.0, max_interval=1.0)
