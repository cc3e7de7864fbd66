"""Dead letters: listed in the order they died, inspected with history, redriven."""

from __future__ import annotations

import pytest

from herald.broker import (
    SECOND,
    DeadLetterReason,
    RedeliveryReason,
    Redrive,
    Redriven,
    Reject,
)
from herald.errors import UnknownDeadLetterError, UnknownGroupError, UnknownQueueError

from .helpers import Driver, sequences


def kill(d: Driver, consumer: str = "c1", group: str = "g", n: int = 1) -> list[int]:
    """Deliver ``n`` messages and reject them."""
    killed = []
    for delivery in d.deliver(consumer, group=group, n=n):
        d.do(Reject, "q", group, delivery.sequence, delivery.token)
        killed.append(delivery.sequence)
    return killed


def setup(messages: int = 3, **options: int) -> Driver:
    d = Driver()
    d.queue(**options)
    d.subscribe("c1")
    for _ in range(messages):
        d.publish()
    return d


def test_list_and_inspect() -> None:
    d = setup(3)
    assert kill(d, n=1) == [1]
    d.deliver(n=1)  # message 2 in flight
    assert kill(d, n=1) == [3]
    assert [x.sequence for x in d.broker.dead_letters("q")] == [1, 3]
    assert [x.sequence for x in d.broker.dead_letters("q", limit=1)] == [1]
    letter = d.broker.dead_letter("q", "g", 3)
    assert letter.reason is DeadLetterReason.REJECTED and letter.group == "g"
    assert letter.history[0].consumer == "c1" and letter.time == d.time
    with pytest.raises(UnknownDeadLetterError):
        d.broker.dead_letter("q", "g", 2)
    with pytest.raises(UnknownGroupError):
        d.broker.dead_letters("q", "nope")
    with pytest.raises(UnknownQueueError):
        d.broker.dead_letters("nope")
    assert d.broker.stats("q").dead_letters == 2


def test_dead_letters_are_per_group() -> None:
    d = setup(1)
    d.subscribe("c2", group="other")
    kill(d, "c1", "g")
    assert d.broker.stats("q").length == 1  # "other" still holds it
    kill(d, "c2", "other")
    assert d.broker.stats("q").length == 0
    assert [(x.group, x.sequence) for x in d.broker.dead_letters("q")] == [("g", 1), ("other", 1)]
    assert [x.group for x in d.broker.dead_letters("q", "other")] == ["other"]


def test_redrive_continues_attempts_with_a_fresh_budget() -> None:
    d = setup(1, max_deliveries=2)
    for _ in range(2):
        d.deliver(lease=SECOND)
        d.advance(SECOND)
    assert d.broker.stats("q").length == 0
    assert d.do(Redrive, "q", "g") == Redriven("q", "g", (1,))
    assert d.broker.dead_letters("q") == ()
    assert d.broker.stats("q").length == 1
    [again] = d.deliver(lease=SECOND)
    # Attempt counts never go backwards: 3, not 1; the reason says why it is back.
    assert (again.attempt, again.redelivery, again.reason) == (
        3,
        True,
        RedeliveryReason.REDRIVEN,
    )
    d.advance(SECOND)
    [fourth] = d.deliver(lease=SECOND)
    assert fourth.attempt == 4  # a fresh budget of two
    d.advance(SECOND)
    [letter] = d.broker.dead_letters("q")
    assert [h.attempt for h in letter.history] == [1, 2, 3, 4]
    counters = d.broker.stats("q").counters
    assert (counters.redriven, counters.redelivered_redriven, counters.dead_lettered) == (1, 1, 2)


def test_redrive_selected_sequences_in_the_given_order() -> None:
    d = setup(3)
    kill(d, n=3)
    assert d.do(Redrive, "q", "g", (3, 1)) == Redriven("q", "g", (3, 1))
    assert [x.sequence for x in d.broker.dead_letters("q")] == [2]
    assert sequences(d.deliver(n=5)) == [1, 3]  # redeliveries: lowest sequence first


def test_redrive_of_an_unknown_dead_letter_changes_nothing() -> None:
    d = setup(2)
    kill(d, n=1)
    d.fails(UnknownDeadLetterError, Redrive, "q", "g", (1, 2))
    assert len(d.broker.dead_letters("q")) == 1


def test_redrive_to_a_group_that_still_holds_the_message_elsewhere() -> None:
    d = setup(1)
    d.subscribe("c2", group="other")
    kill(d, "c1", "g")
    d.do(Redrive, "q", "g")
    assert d.broker.stats("q").length == 1
    [again] = d.deliver("c1")
    d.ack(again)
    assert d.broker.stats("q").length == 1  # "other" has not settled it
    d.ack(d.deliver("c2", group="other")[0])
    assert d.broker.stats("q").length == 0
