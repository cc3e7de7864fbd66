"""The queue checker and verdict: planted violations are caught, correct histories pass."""

from __future__ import annotations

from herald.check.history import Json, Op, Recorder, dumps_history, loads_history
from herald.check.queue import (
    AT_LEAST_ONCE,
    AT_MOST_ONCE,
    EFFECTIVELY_ONCE,
    QueueCheckResult,
    check_queue,
)
from herald.check.verdict import Verdict, judge


class History:
    """Builds histories tersely: each call records an invoke and its completion."""

    def __init__(self) -> None:
        self.r = Recorder()
        self.seq = 0
        self.attempts: dict[str, int] = {}

    @property
    def ops(self) -> list[Op]:
        return self.r.ops

    def publish(self, message_id: str, status: str = "ok", process: int = 1) -> None:
        self.r.invoke(process, "publish", {"queue": "q", "id": message_id})
        value: dict[str, Json] = {}
        if status == "ok":
            self.seq += 1
            value = {"seq": self.seq}
        self.r.record(process, status, "publish", value)

    def deliver(
        self,
        ids: list[str],
        mode: str = AT_LEAST_ONCE,
        group: str = "g",
        status: str = "ok",
        process: int = 10,
        seqs: list[int] | None = None,
    ) -> None:
        base: dict[str, Json] = {"queue": "q", "group": group, "mode": mode}
        self.r.invoke(process, "deliver", base)
        if status != "ok":
            self.r.record(process, status, "deliver", {})
            return
        messages: list[Json] = []
        for position, message_id in enumerate(ids):
            key = f"{group}/{message_id}"
            self.attempts[key] = self.attempts.get(key, 0) + 1
            attempt = self.attempts[key]
            item: dict[str, Json] = {
                "id": message_id,
                "attempt": attempt,
                "redelivery": attempt > 1,
            }
            if seqs is not None:
                item["seq"] = seqs[position]
            messages.append(item)
        self.r.ok(process, "deliver", {"messages": messages})

    def ack(
        self, message_id: str, group: str = "g", process: int = 10, seq: int | None = None
    ) -> None:
        value: dict[str, Json] = {"queue": "q", "group": group, "id": message_id}
        if seq is not None:
            value["seq"] = seq
        self.r.invoke(process, "ack", value)
        self.r.ok(process, "ack", {})

    def effect(
        self, message_id: str, mode: str = EFFECTIVELY_ONCE, status: str = "ok", process: int = 10
    ) -> None:
        value: dict[str, Json] = {"queue": "q", "group": "g", "id": message_id, "mode": mode}
        self.r.invoke(process, "effect", value)
        self.r.record(process, status, "effect", {})

    def check(self, **kwargs: bool) -> tuple[QueueCheckResult, Verdict]:
        result = check_queue(self.ops)
        # Whatever is checked must survive the file format unchanged.
        assert check_queue(loads_history(dumps_history(self.ops))) == result
        return result, judge(result.by_mode, **kwargs)


def consume_all(h: History, ids: list[str], mode: str = AT_LEAST_ONCE, group: str = "g") -> None:
    for message_id in ids:
        h.deliver([message_id], mode=mode, group=group)
        if mode != AT_MOST_ONCE:
            h.ack(message_id, group=group)
        if mode == EFFECTIVELY_ONCE:
            h.effect(message_id)


# -- correct histories pass -----------------------------------------------------------------------


def test_a_clean_run_in_every_mode_passes() -> None:
    h = History()
    ids = [f"m{n}" for n in range(5)]
    for message_id in ids:
        h.publish(message_id)
    consume_all(h, ids, AT_MOST_ONCE, "amo")
    consume_all(h, ids, AT_LEAST_ONCE, "alo")
    consume_all(h, ids, EFFECTIVELY_ONCE, "g")
    result, verdict = h.check()
    assert verdict.ok and not verdict.phenomena, verdict.describe()
    assert (result.attempted, result.confirmed, result.failed, result.indeterminate) == (5, 5, 0, 0)
    assert sum(result.counts.values()) == 0
    assert result.by_mode[AT_MOST_ONCE].delivered == 5
    assert result.by_mode[EFFECTIVELY_ONCE].streams == 1


def test_info_publishes_may_or_may_not_have_happened() -> None:
    h = History()
    h.publish("a")
    h.publish("maybe-delivered", status="info")
    h.publish("maybe-not", status="info")
    h.publish("never", status="fail")
    h.r.invoke(2, "publish", {"queue": "q", "id": "crashed-mid-publish"})  # never completes
    consume_all(h, ["a", "maybe-delivered", "crashed-mid-publish"])
    result, verdict = h.check()
    assert verdict.ok, verdict.describe()
    assert (result.confirmed, result.failed, result.indeterminate) == (1, 1, 3)


def test_redeliveries_after_unknown_outcomes_are_phenomena_under_at_least_once() -> None:
    h = History()
    h.publish("a")
    h.deliver(["a"], status="info")  # the consumer crashed: did it get a?
    h.deliver(["a"])  # broker's first attempt was recorded unknown; this is attempt 2
    h.deliver(["a"])  # and a plain duplicate (lease expired while processing)
    h.ack("a")
    result, verdict = h.check()
    assert verdict.ok
    assert result.counts["duplicated"] == 1
    assert verdict.phenomena == ("at_least_once: 1 duplicated (allowed)",)


def test_dead_letters_account_for_undelivered_messages() -> None:
    h = History()
    h.publish("poison")
    for _ in range(3):
        h.deliver(["poison"], status="info")  # consumers kept crashing on it
    h.r.ok(99, "dead_letter", {"queue": "q", "group": "g", "ids": ["poison"]})
    _, verdict = h.check()
    assert verdict.ok, verdict.describe()


def test_effect_outcomes_that_are_unknown_are_not_duplicates() -> None:
    h = History()
    h.publish("a")
    h.deliver(["a"], mode=EFFECTIVELY_ONCE)
    h.effect("a", status="info")  # crashed during the inbox transaction
    h.deliver(["a"], mode=EFFECTIVELY_ONCE)
    h.effect("a")
    h.ack("a")
    result, verdict = h.check()
    assert verdict.ok, verdict.describe()
    assert result.by_mode[EFFECTIVELY_ONCE].duplicated == 1  # a phenomenon


def test_concurrent_consumers_do_not_look_reordered() -> None:
    r = Recorder()
    for n, message_id in enumerate(["a", "b"]):
        r.invoke(1, "publish", {"queue": "q", "id": message_id})
        r.ok(1, "publish", {"seq": n + 1})
    # Two consumers poll concurrently; b's poll happens to complete first.
    r.invoke(10, "deliver", {"queue": "q", "group": "g"})
    r.invoke(11, "deliver", {"queue": "q", "group": "g"})
    r.ok(11, "deliver", {"messages": [{"id": "b", "seq": 2, "attempt": 1}]})
    r.ok(10, "deliver", {"messages": [{"id": "a", "seq": 1, "attempt": 1}]})
    result = check_queue(r.ops)
    assert result.counts["reordered"] == 0


def test_a_history_without_broker_details_is_checked_by_identity_alone() -> None:
    r = Recorder()
    r.invoke(1, "publish", {"queue": "q", "id": "a"})
    r.ok(1, "publish", {})
    r.invoke(2, "deliver", {"queue": "q"})
    r.ok(2, "deliver", {"messages": [{"id": "a"}]})
    result = check_queue(r.ops)
    assert judge(result.by_mode).ok and result.by_mode[AT_LEAST_ONCE].delivered == 1


# -- planted violations are caught ----------------------------------------------------------------


def test_lost_message_fails_at_least_once() -> None:
    h = History()
    for message_id in ("a", "b", "c"):
        h.publish(message_id)
    consume_all(h, ["a", "c"])
    result, verdict = h.check()
    assert not verdict.ok and verdict.failures == ("at_least_once: 1 lost",)
    [finding] = result.examples("lost")
    assert (finding.id, finding.mode, finding.group) == ("b", AT_LEAST_ONCE, "g")


def test_lost_message_fails_effectively_once_even_if_delivered_but_never_processed() -> None:
    h = History()
    h.publish("a")
    h.publish("b")
    consume_all(h, ["a"], EFFECTIVELY_ONCE)
    h.deliver(["b"], mode=EFFECTIVELY_ONCE)
    h.ack("b")  # acked before processing, and never processed: lost work
    result, verdict = h.check()
    assert verdict.failures == ("effectively_once: 1 lost",)
    assert result.examples("lost")[0].detail == "delivered, never processed"


def test_loss_after_an_unknown_at_most_once_delivery_is_a_phenomenon() -> None:
    h = History()
    h.publish("a")
    h.publish("b")
    h.deliver(["a"], mode=AT_MOST_ONCE)
    h.deliver(["?"], mode=AT_MOST_ONCE, status="info")  # crashed holding b
    result, verdict = h.check()
    assert verdict.ok and verdict.phenomena == ("at_most_once: 1 lost (allowed)",)
    assert result.examples("lost")[0].id == "b"


def test_unexpected_message_fails() -> None:
    h = History()
    h.publish("a")
    h.publish("refused", status="fail")
    consume_all(h, ["a", "ghost", "refused"])
    result, verdict = h.check()
    assert not verdict.ok
    assert result.counts["unexpected"] == 2
    assert {f.detail for f in result.examples("unexpected")} == {
        "delivered; never published",
        "delivered; every publish of it failed",
    }


def test_duplicate_delivery_fails_at_most_once() -> None:
    h = History()
    h.publish("a")
    h.publish("b")
    h.deliver(["a", "b"], mode=AT_MOST_ONCE)
    h.deliver(["b"], mode=AT_MOST_ONCE)
    result, verdict = h.check()
    assert verdict.failures == ("at_most_once: 1 duplicated",)
    assert result.examples("duplicated")[0].id == "b"


def test_an_at_most_once_consumer_receiving_a_redelivery_fails() -> None:
    h = History()
    h.publish("a")
    h.deliver(["a"], mode=AT_LEAST_ONCE)  # lease expired...
    h.deliver(["a"], mode=AT_MOST_ONCE)  # ...and an at-most-once consumer got it
    _, verdict = h.check()
    assert verdict.failures == ("at_most_once: 1 duplicated",)


def test_duplicated_effect_fails_effectively_once() -> None:
    h = History()
    h.publish("a")
    h.deliver(["a"], mode=EFFECTIVELY_ONCE)
    h.effect("a")
    h.deliver(["a"], mode=EFFECTIVELY_ONCE)  # the ack was lost; redelivered
    h.effect("a")  # and the inbox failed to notice it was done
    h.ack("a")
    result, verdict = h.check()
    assert verdict.failures == ("effectively_once: 1 duplicated_effect",)
    assert verdict.phenomena == ("effectively_once: 1 duplicated (allowed)",)
    assert result.examples("duplicated_effect")[0].detail == "processed 2 times"


def test_duplicated_effect_is_a_phenomenon_under_at_least_once() -> None:
    h = History()
    h.publish("a")
    h.deliver(["a"])
    h.effect("a", mode=AT_LEAST_ONCE)
    h.deliver(["a"])
    h.effect("a", mode=AT_LEAST_ONCE)
    h.ack("a")
    _, verdict = h.check()
    assert verdict.ok
    assert set(verdict.phenomena) == {
        "at_least_once: 1 duplicated (allowed)",
        "at_least_once: 1 duplicated_effect (allowed)",
    }


def test_reordered_first_deliveries_by_real_time_fail() -> None:
    h = History()
    h.publish("a")  # confirmed before b was published
    h.publish("b")
    h.deliver(["b"])  # but b is first-delivered strictly before a
    h.deliver(["a"])
    h.ack("a")
    h.ack("b")
    result, verdict = h.check()
    assert verdict.failures == ("at_least_once: 1 reordered",)
    assert result.examples("reordered")[0].id == "a"


def test_reordered_first_deliveries_by_sequence_fail() -> None:
    r = Recorder()
    for n, message_id in enumerate(["a", "b"]):  # published concurrently
        r.invoke(n, "publish", {"queue": "q", "id": message_id})
    r.ok(0, "publish", {"seq": 1})
    r.ok(1, "publish", {"seq": 2})
    r.invoke(10, "deliver", {"queue": "q", "group": "g"})
    r.ok(10, "deliver", {"messages": [{"id": "b", "seq": 2, "attempt": 1}]})
    r.invoke(10, "deliver", {"queue": "q", "group": "g"})
    r.ok(10, "deliver", {"messages": [{"id": "a", "seq": 1, "attempt": 1}]})
    result = check_queue(r.ops)
    assert result.counts["reordered"] == 1 and not judge(result.by_mode).ok


def test_a_batch_out_of_sequence_order_fails() -> None:
    h = History()
    r = h.r
    r.invoke(1, "publish", {"queue": "q", "id": "a"})
    r.invoke(2, "publish", {"queue": "q", "id": "b"})
    r.ok(1, "publish", {})
    r.ok(2, "publish", {})
    h.deliver(["b", "a"], seqs=[2, 1])
    result, _ = h.check()
    assert result.counts["reordered"] == 1


def test_redeliveries_do_not_count_as_reordering() -> None:
    h = History()
    for message_id in ("a", "b", "c"):
        h.publish(message_id)
    h.deliver(["a", "b"], seqs=[1, 2])
    h.ack("b")
    h.deliver(["c"], seqs=[3])
    h.deliver(["a"], seqs=[1])  # a's lease expired: a redelivery, not a first delivery
    h.ack("a")
    h.ack("c")
    result, verdict = h.check()
    assert verdict.ok and result.counts["reordered"] == 0


def test_delivery_after_ack_fails() -> None:
    h = History()
    h.publish("a")
    h.deliver(["a"])
    h.ack("a")
    h.deliver(["a"])  # e.g. a new leader that did not know about the ack
    result, verdict = h.check()
    assert "at_least_once: 1 redelivered_after_ack" in verdict.failures
    assert result.examples("redelivered_after_ack")[0].id == "a"


def test_attempt_numbers_going_backwards_fail() -> None:
    r = Recorder()
    r.invoke(1, "publish", {"queue": "q", "id": "a"})
    r.ok(1, "publish", {})
    for attempt in (1, 2, 2):
        r.invoke(10, "deliver", {"queue": "q", "group": "g"})
        item: dict[str, Json] = {"id": "a", "attempt": attempt, "redelivery": attempt > 1}
        r.ok(10, "deliver", {"messages": [item]})
    result = check_queue(r.ops)
    assert result.counts["attempt_regression"] == 1
    assert "at_least_once: 1 attempt_regression" in judge(result.by_mode).failures


def test_a_message_stored_twice_fails_only_with_producer_dedup() -> None:
    h = History()
    h.publish("a")
    h.deliver(["a"], seqs=[1])
    h.ack("a", seq=1)
    h.deliver(["a"], seqs=[2])  # the retry was stored as a second message
    h.ack("a", seq=2)
    result, lenient = h.check()
    _, strict = h.check(producer_dedup=True)
    assert result.counts["copy"] == 1
    assert lenient.ok and "at_least_once: 1 copy" in strict.failures


def test_examples_are_capped_but_counts_are_not() -> None:
    h = History()
    for n in range(30):
        h.publish(f"m{n}")
    result = check_queue(h.ops, max_examples=3)
    assert result.counts["lost"] == 0  # no stream yet: nobody was expected to consume
    h.deliver([], group="g")
    result = check_queue(h.ops, max_examples=3)
    assert result.counts["lost"] == 30 and len(result.examples("lost")) == 3


def _drop(h: History, status: str = "ok") -> None:
    h.r.invoke(99, "drop", {"queue": "q"})
    h.r.record(99, status, "drop", {})


def test_a_dropped_queue_excuses_what_it_held_and_nothing_published_after() -> None:
    h = History()
    h.publish("before")  # confirmed, then the queue is deleted and made again
    _drop(h)
    h.publish("after")  # published into the new queue: it must arrive
    h.deliver([])
    result = check_queue(h.ops)
    lost = {f.id for f in result.examples("lost")}
    assert lost == {"after"}


def test_a_drop_of_unknown_outcome_excuses_too_and_a_failed_one_does_not() -> None:
    for status, expected in (("info", set()), ("fail", {"before"})):
        h = History()
        h.publish("before")
        _drop(h, status)
        h.deliver([])
        assert {f.id for f in check_queue(h.ops).examples("lost")} == expected


def test_sequences_of_a_new_incarnation_are_not_reordering() -> None:
    h = History()
    for name in ("a", "b"):
        h.publish(name)
    h.r.invoke(10, "deliver", {"queue": "q", "group": "g", "mode": AT_LEAST_ONCE})
    first: list[Json] = [
        {"id": "a", "seq": 1, "inc": 1, "attempt": 1, "redelivery": False},
        {"id": "b", "seq": 2, "inc": 1, "attempt": 1, "redelivery": False},
    ]
    h.r.ok(10, "deliver", {"messages": first})
    _drop(h)
    h.publish("c")
    h.r.invoke(10, "deliver", {"queue": "q", "group": "g", "mode": AT_LEAST_ONCE})
    again: list[Json] = [{"id": "c", "seq": 1, "inc": 2, "attempt": 1, "redelivery": False}]
    h.r.ok(10, "deliver", {"messages": again})
    result = check_queue(h.ops)
    assert result.counts["reordered"] == 0
    assert result.counts["lost"] == 0
    # Without incarnations, sequence 1 after 2 is reordering.
    for item in again:
        assert isinstance(item, dict)
        del item["inc"]
    for item in first:
        assert isinstance(item, dict)
        del item["inc"]
    assert check_queue(h.ops).counts["reordered"] == 1
