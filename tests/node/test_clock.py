"""The log's clock: what a majority of the voters' clocks agree on, never one node's."""

from __future__ import annotations

from herald.node.clock import Instant, LogClock

SECOND = 1_000_000
HOUR = 3600 * SECOND
T0 = 1_800_000_000 * SECOND  # the wall clocks' common time at mono 0
FRESH = 2 * SECOND


def at(mono: int, skew: int = 0) -> Instant:
    return Instant(mono, T0 + mono + skew)


def test_a_single_node_follows_its_own_clock() -> None:
    clock = LogClock(1, (1,), FRESH)
    assert clock.stamp(at(0), floor=0) == T0
    assert clock.stamp(at(SECOND), floor=0) == T0 + SECOND


def test_the_leaders_wall_clock_stepping_forward_changes_nothing() -> None:
    """Regression: the leader stamped its own clock, so one step forward aged every
    TTL at once; a retry after the jump was stored a second time."""
    clock = LogClock(1, (1, 2, 3), FRESH)
    for mono in range(0, 5 * SECOND, 100_000):
        for follower in (2, 3):
            clock.observe(follower, T0 + mono, at(mono))
        stamp = clock.stamp(at(mono), floor=0)
        assert abs(stamp - (T0 + mono)) <= 1
    # The leader's own wall clock jumps an hour ahead (its monotonic clock does not).
    jumped = at(5 * SECOND, skew=HOUR)
    stamp = clock.stamp(jumped, floor=0)
    assert stamp <= T0 + 5 * SECOND + 1


def test_one_followers_fast_clock_is_outvoted() -> None:
    clock = LogClock(1, (1, 2, 3), FRESH)
    now = at(10 * SECOND)
    clock.observe(2, T0 + 10 * SECOND + 6 * HOUR, now)
    clock.observe(3, T0 + 10 * SECOND, now)
    assert clock.stamp(now, floor=0) == T0 + 10 * SECOND


def test_time_never_goes_back_when_clocks_step_back() -> None:
    clock = LogClock(1, (1, 2, 3), FRESH)
    now = at(SECOND)
    for follower in (2, 3):
        clock.observe(follower, T0 + SECOND, now)
    first = clock.stamp(now, floor=0)
    later = at(2 * SECOND, skew=-HOUR)
    for follower in (2, 3):
        clock.observe(follower, T0 + 2 * SECOND - HOUR, later)
    assert clock.stamp(later, floor=0) == first
    # ... nor below the broker's clock (a new leader continues from the log).
    assert clock.stamp(later, floor=first + 5) == first + 5


def test_without_a_fresh_majority_time_holds_still() -> None:
    clock = LogClock(1, (1, 2, 3), FRESH)
    now = at(SECOND)
    clock.observe(2, T0 + SECOND, now)
    first = clock.stamp(now, floor=0)
    assert first == T0 + SECOND
    # Ten seconds later nothing was heard: only our own reading is fresh.
    assert clock.stamp(at(11 * SECOND), floor=0) == first


def test_with_two_readings_the_slower_wins() -> None:
    """Two clocks cannot outvote each other: the slower one errs towards late expiries."""
    clock = LogClock(1, (1, 2), FRESH)
    now = at(SECOND, skew=HOUR)
    clock.observe(2, T0 + SECOND, now)
    assert clock.stamp(now, floor=0) == T0 + SECOND


def test_five_voters_tolerate_two_fast_clocks() -> None:
    clock = LogClock(1, (1, 2, 3, 4, 5), FRESH)
    now = at(SECOND, skew=HOUR)  # the leader is fast ...
    clock.observe(2, T0 + SECOND + 2 * HOUR, now)  # ... and so is one follower
    clock.observe(3, T0 + SECOND, now)
    clock.observe(4, T0 + SECOND, now)
    clock.observe(5, T0 + SECOND, now)
    assert clock.stamp(now, floor=0) == T0 + SECOND


def test_readings_of_unknown_nodes_and_zero_are_ignored() -> None:
    clock = LogClock(1, (1, 2, 3), FRESH)
    now = at(SECOND)
    clock.observe(7, T0 + HOUR, now)
    clock.observe(2, 0, now)
    assert clock.readings(now) == [T0 + SECOND]


def test_a_clock_put_right_is_caught_up_with_slowly() -> None:
    """Regression (queue seed 373): while a node was down, the only other reading was
    a clock four hours slow, so time held back; when the clock was put right, time
    jumped four hours at once, and everything stamped meanwhile aged by four hours
    (idle producers forgotten: a retry was stored twice)."""
    clock = LogClock(1, (1, 2, 3), FRESH)
    now = at(0)
    clock.observe(2, T0 - 4 * HOUR, now)  # node 3 down: two readings, the slower counts
    start = clock.stamp(now, floor=0)
    assert start == T0 - 4 * HOUR
    for mono in range(SECOND, 11 * SECOND, SECOND):
        now = at(mono)
        clock.observe(2, T0 + mono, now)  # put right
        stamp = clock.stamp(now, floor=0)
        # Never faster than 1.1 times real time: nothing ages more than 10% early.
        assert stamp - start <= mono * 11 // 10
    assert stamp < T0  # still catching up


def test_a_single_nodes_step_forward_is_reached_at_a_tenth_of_real_time() -> None:
    clock = LogClock(1, (1,), FRESH)
    first = clock.stamp(at(0), floor=0)
    stepped = clock.stamp(at(SECOND, skew=HOUR), floor=0)
    assert stepped - first == SECOND * 11 // 10


def test_a_new_log_starts_at_the_agreed_time_and_a_new_leader_at_the_brokers() -> None:
    clock = LogClock(1, (1, 2, 3), FRESH)
    now = at(0)
    clock.observe(2, T0, now)
    assert clock.stamp(now, floor=0) == T0
    other = LogClock(2, (1, 2, 3), FRESH)  # took over; the broker's clock is ahead of it
    now = at(SECOND, skew=-HOUR)
    other.observe(1, T0 + SECOND - HOUR, now)
    assert other.stamp(now, floor=T0 + 5) == T0 + 5
