"""The transaction checker on histories with known answers, clean and planted."""

from __future__ import annotations

import pytest

from herald.check.history import Json, Recorder, dumps_history, loads_history
from herald.check.transactions import TXN_FINDINGS, check_transactions


class Story:
    """A history told step by step: a worker consumes ``in``, publishes to
    ``out`` inside a transaction, and a reader drains ``out``."""

    def __init__(self) -> None:
        self.history = Recorder()

    def deliver(self, queue: str, group: str, *ids: str, process: str = "reader") -> None:
        value: dict[str, Json] = {"queue": queue, "group": group}
        self.history.invoke(process, "deliver", value)
        messages: list[Json] = [{"id": message_id} for message_id in ids]
        self.history.ok(process, "deliver", {"messages": messages})

    def begin_commit(
        self, txn: str, publish: list[str], ack: list[str], process: str = "worker"
    ) -> None:
        value: dict[str, Json] = {
            "txn": txn,
            "publish": [{"queue": "out", "id": message_id} for message_id in publish],
            "ack": [{"queue": "in", "group": "g", "id": message_id} for message_id in ack],
        }
        self.history.invoke(process, "txn", value)

    def end_commit(self, status: str, process: str = "worker") -> None:
        self.history.record(process, status, "txn", {})

    def dead(self, queue: str, group: str, *ids: str) -> None:
        self.history.invoke("drain", "dead_letter", {"queue": queue, "group": group})
        self.history.ok("drain", "dead_letter", {"ids": list(ids)})

    def check(self) -> dict[str, int]:
        result = check_transactions(self.history.ops)
        return {kind: result.count(kind) for kind in TXN_FINDINGS if result.count(kind)}


def consumed_then(status: str, *, redelivered: bool, published: list[str]) -> Story:
    """The worker takes in-1, commits a transaction publishing out-1 and out-2 and
    acking in-1; then ``in`` is drained (in-1 seen again if ``redelivered``) and
    ``out`` is drained (``published`` seen)."""
    story = Story()
    story.deliver("in", "g", "in-1", process="worker")
    story.begin_commit("t1", ["out-1", "out-2"], ["in-1"])
    story.end_commit(status)
    story.deliver("in", "g", *(["in-1"] if redelivered else []), process="drain-in")
    story.deliver("out", "o", *published)
    story.deliver("out", "o")  # empty: drained
    return story


def test_a_committed_transaction_that_took_effect_whole_is_clean() -> None:
    story = consumed_then("ok", redelivered=False, published=["out-1", "out-2"])
    assert story.check() == {}
    result = check_transactions(story.history.ops)
    assert (result.committed, result.aborted, result.unknown) == (1, 0, 0)


def test_an_aborted_transaction_that_took_no_effect_is_clean() -> None:
    story = consumed_then("fail", redelivered=True, published=[])
    assert story.check() == {}


@pytest.mark.parametrize(("redelivered", "published"), [(False, ["out-1", "out-2"]), (True, [])])
def test_an_unknown_outcome_is_clean_either_way_when_whole(
    redelivered: bool, published: list[str]
) -> None:
    assert consumed_then("info", redelivered=redelivered, published=published).check() == {}


def test_a_committed_transaction_missing_a_publish_is_torn_and_lost() -> None:
    story = consumed_then("ok", redelivered=False, published=["out-1"])
    assert story.check() == {"torn": 1, "lost": 1}


def test_a_committed_transaction_whose_ack_did_not_hold_is_torn() -> None:
    """The planted bug: the publishes committed, the lease ran out and the input
    was handed out again (the ack was not pinned until the decision)."""
    story = consumed_then("ok", redelivered=True, published=["out-1", "out-2"])
    assert story.check() == {"torn": 1, "lost": 1}


def test_an_aborted_transactions_message_delivered_is_an_aborted_read() -> None:
    story = consumed_then("fail", redelivered=True, published=["out-2"])
    assert story.check() == {"aborted_read": 1, "torn": 1}


def test_an_aborted_transaction_whose_ack_took_effect_is_found() -> None:
    """The planted bug: the participant settled the input on prepare, then the
    transaction aborted; nobody ever sees in-1 again."""
    story = consumed_then("fail", redelivered=False, published=[])
    assert story.check() == {"aborted_ack": 1, "torn": 1}  # the ack alone took effect


def test_an_unknown_outcome_half_applied_is_torn() -> None:
    """The planted bug: a participant that committed alone on a timeout while the
    coordinator aborted."""
    assert consumed_then("info", redelivered=True, published=["out-1", "out-2"]).check() == {
        "torn": 1
    }


def test_a_message_seen_before_its_commit_was_asked_is_an_early_read() -> None:
    story = Story()
    story.deliver("in", "g", "in-1", process="worker")
    story.deliver("out", "o", "out-1")  # visible before the commit
    story.begin_commit("t1", ["out-1"], ["in-1"])
    story.end_commit("ok")
    story.deliver("out", "o")
    assert story.check() == {"early_read": 1}


def test_a_dead_letter_counts_as_delivered_and_as_an_ack_that_did_not_hold() -> None:
    story = Story()
    story.deliver("in", "g", "in-1", process="worker")
    story.begin_commit("t1", ["out-1"], ["in-1"])
    story.end_commit("fail")
    story.deliver("out", "o")
    story.dead("in", "g", "in-1")  # the abort returned it; it died of its attempts
    assert story.check() == {}
    story.dead("out", "o", "out-1")  # but an aborted publish must never exist
    assert story.check() == {"aborted_read": 1, "torn": 1}


def test_a_committed_publish_missing_from_one_group_of_its_queue_is_lost() -> None:
    story = Story()
    story.begin_commit("t1", ["out-1"], [])
    story.end_commit("ok")
    story.deliver("out", "o", "out-1")
    story.deliver("out", "other")  # drained, never saw it
    assert story.check() == {"lost": 1}


def test_a_transaction_nobody_can_observe_is_counted_not_judged() -> None:
    story = Story()
    story.begin_commit("t1", ["out-1"], [])
    story.end_commit("ok")
    result = check_transactions(story.history.ops)
    assert result.ok and result.committed == 1
    assert "committed=1" in result.summary()


def test_the_checker_reads_the_history_file_format() -> None:
    story = consumed_then("ok", redelivered=True, published=["out-1"])
    again = loads_history(dumps_history(story.history.ops))
    result = check_transactions(again)
    assert result.count("torn") == 1 and not result.ok
