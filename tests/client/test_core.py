"""The sans-IO client core alone, driven by hand: frames in, actions out, virtual time.

Each test plays the server with the real codec (see ``corewire``). These are the
client's protocol decisions -- discovery, pipelining, the producer's numbers,
refusals, frame limits, timeouts -- with no socket and no event loop.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from herald.client import Receipt, UnreachableError
from herald.client._ops import Close, Dial, Send
from herald.client.core import BACKOFF_CAP, MAX_REDIRECTS, ClientCore
from herald.errors import (
    ConnectionClosedError,
    FrameTooLargeError,
    MalformedFrameError,
    MessageTooLargeError,
    OutcomeUnknownError,
    ProducerSequenceGapError,
    ProducerSequenceStaleError,
    QueueFullError,
    RequestTimeoutError,
    UnknownQueueError,
    UsageError,
)
from herald.wire import protocol as p
from herald.wire.frames import DEFAULT_MAX_FRAME, encode_frame
from tests.sim.planted import RenumbersBehindARefusal

from .corewire import MS, SECOND, Wire, receipt, refusal

# -- connecting -----------------------------------------------------------------------------


def test_the_handshake_is_the_cores_own() -> None:
    wire = Wire()
    op = wire.core.connect(wire.now)
    assert wire.actions() == [Dial("a:1")]
    wire.core.connected(wire.now)
    sent = wire.actions()
    assert len(sent) == 1 and isinstance(sent[0], Send)  # the Hello (checked by Wire)
    assert not op.done
    welcome = p.Welcome(p.PROTOCOL_VERSION, 1, 1, "a:1", 1000, 1 << 20)
    wire.core.received(encode_frame(welcome), wire.now)
    assert op.done and op.error is None
    assert wire.core.is_connected and wire.core.leader == "a:1"
    assert wire.core.max_frame == 1 << 20
    assert wire.core.connects == 1


def test_a_follower_redirects_to_the_leader_it_names() -> None:
    wire = Wire(("a:1",))
    op = wire.core.connect(wire.now)
    wire.accept(node=2, leader=1, leader_address="b:2")
    assert wire.log[-2:] == [Close("not the leader"), Dial("b:2")]
    wire.accept(node=1, leader=1)
    assert op.done and wire.core.leader == "b:2"


def test_redirects_are_bounded_per_candidate() -> None:
    wire = Wire(("a:1",))
    wire.core.connect(wire.now)
    # Two nodes each naming the other as the leader, forever.
    for hop in range(MAX_REDIRECTS):
        here = wire.dial()
        there = "b:2" if here == "a:1" else "a:1"
        wire.accept(node=hop + 10, leader=99, leader_address=there)
    dials = [a for a in wire.log if isinstance(a, Dial)]
    assert len(dials) == MAX_REDIRECTS
    assert wire.core.phase == "waiting"  # the round failed: backing off
    assert "knows no leader" in str(wire.core.last_error)


def test_a_failed_round_backs_off_with_full_jitter_up_to_the_cap() -> None:
    wire = Wire(("a:1", "b:2"))
    op = wire.core.connect(wire.now, timeout=60 * SECOND)
    waits = []
    for _ in range(12):
        for _ in range(2):  # both seeds refuse the connection
            wire.dial()
            wire.fail_dial()
        assert wire.core.phase == "waiting"
        wakeup = wire.core.next_wakeup()
        assert wakeup is not None
        waits.append(wakeup - wire.now)
        wire.now = wakeup
        wire.core.tick(wire.now)
    assert all(0 <= w <= BACKOFF_CAP for w in waits)
    assert max(waits[:2]) <= 200 * MS < max(waits[6:])  # exponential bound
    assert len(set(waits)) == len(waits)  # jittered
    assert not op.done
    # The same seed replays the same waits.
    again = Wire(("a:1", "b:2"))
    again.core.connect(again.now, timeout=60 * SECOND)
    for _ in range(2):
        again.dial()
        again.fail_dial()
    assert again.core.next_wakeup() == 1 * SECOND + waits[0]


def test_the_last_leader_is_tried_first_then_the_shuffled_seeds() -> None:
    seeds = ("a:1", "b:2", "c:3", "d:4")
    wire = Wire(seeds)
    wire.open()
    leader = wire.core.leader
    wire.lose()
    assert wire.dial() == leader  # the hint first, at once
    wire.fail_dial()
    rest = [wire.dial()]
    for _ in range(2):
        wire.fail_dial()
        rest.append(wire.dial())
    assert sorted(rest) == sorted(s for s in seeds if s != leader)


def test_connect_times_out_with_every_reason() -> None:
    wire = Wire(("a:1",), connect_timeout=300 * MS)
    op = wire.core.connect(wire.now)
    wire.dial()
    wire.core.dial_failed("connection refused", wire.now)
    wire.advance(400 * MS)
    assert isinstance(op.error, UnreachableError)
    assert "a:1: connection refused" in str(op.error)


def test_a_dial_that_hangs_is_abandoned() -> None:
    wire = Wire(("a:1",), connect_timeout=2 * SECOND)
    wire.core.connect(wire.now)
    wire.dial()
    taken = wire.advance(3 * SECOND)
    assert Close("timed out") in taken
    assert "a:1: timed out" in str(wire.core.last_error)


def test_a_refused_handshake_is_a_failed_attempt() -> None:
    wire = Wire(("a:1",))
    op = wire.core.connect(wire.now, timeout=SECOND)
    wire.dial()
    wire.core.connected(wire.now)
    wire.actions()
    wire.core.received(
        encode_frame(p.Refused("HandshakeError", "protocol version 1 is not supported")), wire.now
    )
    wire.actions()
    wire.advance(2 * SECOND)
    assert isinstance(op.error, UnreachableError) and "not supported" in str(op.error)


# -- pipelining and frames -----------------------------------------------------------------


def test_everything_issued_before_a_tick_travels_in_one_frame() -> None:
    wire = Wire()
    wire.open()
    ops = [wire.core.publish("q", f"m{i}".encode(), now=wire.now) for i in range(3)]
    stats = wire.core.stats("q", now=wire.now)
    assert wire.core.next_wakeup() == wire.now  # the flush is due at once
    assert wire.actions() == []  # nothing before the tick
    sent = wire.flush()
    assert len(wire.frames) == 1
    assert [type(r).__name__ for r in sent] == ["Publish", "Publish", "Publish", "Stats"]
    assert [(r.producer, r.sequence) for r in sent[:3]] == [("p", 1), ("p", 2), ("p", 3)]
    wire.reply(*(receipt(r.id, n + 1) for n, r in enumerate(sent[:3])))
    assert [op.value.sequence for op in ops if op.value is not None] == [1, 2, 3]
    assert ops[0].value == Receipt("q", 1, False, ops[0].value.durability, 1)
    assert not stats.done


def test_linger_holds_requests_to_share_a_frame() -> None:
    wire = Wire(linger=5 * MS)
    wire.open()
    wire.core.publish("q", b"a", now=wire.now)
    assert wire.core.next_wakeup() == wire.now + 5 * MS
    wire.now += 2 * MS
    wire.core.publish("q", b"b", now=wire.now)
    assert wire.flush() == []  # not due yet
    wire.advance(3 * MS)
    assert [len(frame) for frame in wire.frames] == [2]


def test_a_receipt_from_an_older_server_has_incarnation_zero() -> None:
    wire = Wire()
    wire.open()
    op = wire.core.publish("q", b"a", now=wire.now)
    (request,) = wire.flush()
    wire.reply(p.Reply(request.id, True, ["q", 1, False, "replicated"]))
    assert op.value is not None and op.value.incarnation == 0
    assert op.value.durability.value == "replicated"


def test_frames_never_exceed_the_servers_limit() -> None:
    wire = Wire()
    wire.open(max_frame=4096)
    bodies = [bytes([65 + i]) * 1000 for i in range(20)]
    for body in bodies:
        wire.core.publish("q", body, now=wire.now)
    sent = wire.flush()
    assert [r.body for r in sent] == bodies  # all of them, in order
    assert len(wire.frames) >= 5
    assert max(wire.frame_sizes) <= 4096


def test_a_request_too_large_for_a_frame_fails_at_once_and_is_never_sent() -> None:
    wire = Wire()
    wire.open(max_frame=4096)
    with pytest.raises(MessageTooLargeError, match="server's frame limit of 4096") as caught:
        wire.core.publish("q", b"x" * 5000, now=wire.now)
    assert caught.value.queue == "q" and caught.value.limit == 4096
    assert caught.value.size > 5000
    after = wire.core.publish("q", b"small", now=wire.now)
    (request,) = wire.flush()
    assert request.sequence == 1  # the refused one took no number
    wire.reply(receipt(request.id, 1))
    assert after.value is not None
    # Before the first connection the default limit applies.
    fresh = Wire()
    with pytest.raises(MessageTooLargeError):
        fresh.core.publish("q", b"x" * DEFAULT_MAX_FRAME, now=fresh.now)


def test_a_backlogged_publish_is_sized_before_it_waits() -> None:
    wire = Wire(max_in_flight=1)
    wire.open(max_frame=4096)
    wire.core.publish("q", b"first", now=wire.now)
    with pytest.raises(MessageTooLargeError):
        wire.core.publish("q", b"x" * 5000, now=wire.now)
    assert wire.core.in_flight_publishes("q") == 1


def test_validation_errors_are_raised_at_once() -> None:
    wire = Wire()
    wire.open()
    core = wire.core
    for call in (
        lambda: core.publish("q", "text", now=wire.now),  # type: ignore[arg-type]
        lambda: core.publish("q", b"x", headers=[("a", "1"), ("a", "2")], now=wire.now),
        lambda: core.publish("q", b"x", headers=[("", "v")], now=wire.now),
        lambda: core.publish("q", b"x", headers=[("a", 1)], now=wire.now),  # type: ignore[list-item]
        lambda: core.publish("q", b"x", key="", now=wire.now),
        lambda: core.publish("bad\nname", b"x", now=wire.now),
        lambda: core.peek("q", limit=-1, now=wire.now),
        lambda: core.consumer("q", "g", consumer="c", prefetch=0),
    ):
        with pytest.raises(UsageError):
            call()
    assert wire.flush() == []


# -- the producer's numbers --------------------------------------------------------------------


def _pipelined_refusal(wire: Wire) -> None:
    """m1 (too large for the queue), m2, m3 pipelined, then m4: the broker refuses
    1 and records it, stores 2 and 3. m4 is numbered 4 -- never 1 again -- so its
    receipt can only be the broker's word that m4 was stored."""
    wire.open()
    core = wire.core
    ops = [core.publish("q", body, now=wire.now) for body in (b"x" * 500, b"m2", b"m3")]
    first = wire.flush()
    assert [r.sequence for r in first] == [1, 2, 3]
    wire.reply(
        refusal(first[0].id, "MessageTooLargeError", "message of 500 bytes exceeds 100"),
        receipt(first[1].id, 1),
        receipt(first[2].id, 2),
    )
    assert isinstance(ops[0].error, MessageTooLargeError)
    assert [op.value.sequence for op in ops[1:] if op.value is not None] == [1, 2]
    m4 = core.publish("q", b"m4", now=wire.now)
    (request,) = wire.flush()  # m2 and m3 are not resent: they were answered
    assert (request.body, request.producer, request.sequence) == (b"m4", "p", 4)
    assert not m4.done  # no receipt before the server says m4 was stored
    wire.reply(receipt(request.id, 3))
    assert m4.value is not None and m4.value.sequence == 3


def test_the_reported_pipelined_refusal_never_confirms_an_unstored_publish() -> None:
    _pipelined_refusal(Wire())


def test_later_publishes_get_their_own_answers_after_any_refusal() -> None:
    wire = Wire()
    wire.open()
    core = wire.core
    ops = [core.publish("q", f"m{i}".encode(), now=wire.now) for i in range(4)]
    sent = wire.flush()
    wire.reply(
        refusal(sent[0].id, "UnknownQueueError"),
        refusal(sent[1].id, "QueueFullError"),
        receipt(sent[2].id, 1),
        refusal(sent[3].id, "ProducerSequenceStaleError"),
    )
    assert isinstance(ops[0].error, UnknownQueueError)
    assert isinstance(ops[1].error, QueueFullError)  # not failed on a guess either
    assert ops[2].value is not None and ops[2].value.sequence == 1
    assert isinstance(ops[3].error, ProducerSequenceStaleError)
    assert core.producer("q").producer == "p"  # type: ignore[union-attr]
    later = core.publish("q", b"later", now=wire.now)
    (request,) = wire.flush()
    assert request.sequence == 5 and not later.done


def test_resends_keep_their_ids_numbers_and_order() -> None:
    wire = Wire(("a:1", "b:2"))
    wire.open()
    for i in range(5):
        wire.core.publish("q", f"m{i}".encode(), now=wire.now)
    first = wire.flush()
    wire.reply(receipt(first[0].id, 1))
    wire.lose()
    wire.accept()
    resent = wire.requests()
    assert resent == first[1:]  # the same requests, byte for byte, in order
    # A NotLeader answer (not carried out) resends too, to the leader named.
    wire.reply(*(refusal(r.id, "NotLeaderError", "not the leader", "b:2") for r in resent))
    assert wire.address == "b:2"
    wire.accept()
    assert wire.requests() == first[1:]


def test_a_turned_away_connection_collects_its_answers_before_it_closes() -> None:
    """Overloaded: the server turns that write and every later one away, but what
    went out before may be committed; closing at once would lose its answer, and
    the resend would cost the server the same work again (a livelock, under
    overload, that a simulator seed found)."""
    wire = Wire(("a:1",))
    wire.open()
    ops = [wire.core.publish("q", f"m{i}".encode(), now=wire.now) for i in range(3)]
    sent = wire.flush()
    wire.reply(refusal(sent[1].id, "OverloadedError"), refusal(sent[2].id, "OverloadedError"))
    assert wire.address == "a:1"  # not closed yet: m0 may be committed
    later = wire.core.publish("q", b"later", now=wire.now)
    assert wire.flush() == []  # nothing more goes out on this connection
    wire.reply(receipt(sent[0].id, 1))
    assert ops[0].value is not None
    assert isinstance(wire.log[-1], Close) or wire.address is None
    wire.until_dial()  # after a pause
    wire.accept()
    assert [r.body for r in wire.requests()] == [b"m1", b"m2", b"later"]  # m0 not again
    assert not later.done


def test_a_drain_is_bounded() -> None:
    wire = Wire(("a:1",), timeout=5 * SECOND)
    wire.open()
    wire.core.publish("q", b"m0", now=wire.now)
    wire.core.publish("q", b"m1", now=wire.now)
    sent = wire.flush()
    wire.reply(refusal(sent[1].id, "NotLeaderError"))  # m0's answer never comes
    taken = wire.advance(1100 * MS)
    assert any(isinstance(a, Close) for a in taken)


def test_a_gap_fails_its_publish_and_starts_a_fresh_identity_for_unnumbered_ones() -> None:
    wire = Wire(max_in_flight=2)
    wire.open()
    core = wire.core
    ops = [core.publish("q", f"m{i}".encode(), now=wire.now) for i in range(3)]
    sent = wire.flush()
    assert [(r.producer, r.sequence) for r in sent] == [("p", 1), ("p", 2)]  # m2 waits
    wire.reply(
        refusal(sent[0].id, "ProducerSequenceGapError"),
        refusal(sent[1].id, "ProducerSequenceGapError"),
    )
    assert all(isinstance(op.error, ProducerSequenceGapError) for op in ops[:2])
    (request,) = wire.flush()  # m2, numbered only now: the fresh identity
    assert (request.body, request.producer, request.sequence) == (b"m2", "p.1", 1)
    # The second gap was in the old identity: it did not start yet another one.
    assert core.producer("q").producer == "p.1"  # type: ignore[union-attr]
    wire.reply(receipt(request.id, 1))
    assert ops[2].value is not None


def test_a_publish_that_times_out_stays_in_flight_with_its_number() -> None:
    wire = Wire(timeout=SECOND)
    wire.open()
    op = wire.core.publish("q", b"slow", now=wire.now)
    (request,) = wire.flush()
    wire.reply()  # the server is alive but slow
    wire.advance(SECOND + 10 * MS)
    assert isinstance(op.error, RequestTimeoutError) and "unknown" in str(op.error)
    assert wire.core.in_flight_publishes("q") == 1
    later = wire.core.publish("q", b"later", now=wire.now)
    assert wire.flush()[0].sequence == 2
    wire.lose()
    wire.accept()
    assert [r.sequence for r in wire.requests()] == [1, 2]  # resent with its number
    wire.reply(receipt(request.id, 1, duplicate=True), receipt(wire.requests()[1].id, 2))
    assert later.value is not None and later.value.sequence == 2


def test_the_window_holds_back_publishes_and_numbers_them_when_sent() -> None:
    wire = Wire(max_in_flight=2)
    wire.open()
    ops = [wire.core.publish("q", f"m{i}".encode(), now=wire.now) for i in range(5)]
    sent = wire.flush()
    assert len(sent) == 2 and wire.core.in_flight_publishes("q") == 5
    wire.reply(receipt(sent[0].id, 1))
    more = wire.flush()
    assert [r.sequence for r in more] == [3]
    assert not ops[2].done


def test_a_backlogged_publish_past_its_deadline_was_never_published() -> None:
    wire = Wire(max_in_flight=1, timeout=SECOND)
    wire.open()
    wire.core.publish("q", b"one", now=wire.now)
    waiting = wire.core.publish("q", b"two", now=wire.now)
    wire.flush()
    wire.advance(2 * SECOND)
    assert isinstance(waiting.error, RequestTimeoutError)
    assert "not published" in str(waiting.error)


def test_the_scenario_catches_the_old_renumbering(monkeypatch: pytest.MonkeyPatch) -> None:
    """The planted bug: with the refusal handling of old (renumber the publishes
    behind a refusal) put back in ``QueueProducer.refused``, the scenario fails."""
    monkeypatch.setattr(ClientCore, "producer_class", RenumbersBehindARefusal)
    with pytest.raises(AssertionError):
        _pipelined_refusal(Wire())


# -- retries and unknown outcomes ---------------------------------------------------------------


def test_what_is_resent_after_a_lost_connection() -> None:
    wire = Wire()
    wire.open()
    core = wire.core
    publish = core.publish("q", b"m", now=wire.now)
    reads = [core.stats("q", now=wire.now), core.peek("q", "g", now=wire.now)]
    create = core.create_queue("q", {"lease_duration": SECOND}, now=wire.now)
    never = [
        core.purge("q", now=wire.now),
        core.delete_queue("q", now=wire.now),
        core.delete_group("q", "g", now=wire.now),
        core.redrive("q", "g", now=wire.now),
    ]
    first = wire.flush()
    assert len(first) == 8
    wire.lose()
    for op in never:
        assert isinstance(op.error, ConnectionClosedError) and "unknown" in str(op.error)
    wire.accept()
    assert [type(r).__name__ for r in wire.requests()] == [
        "Publish",
        "Stats",
        "Peek",
        "CreateQueue",
    ]
    assert not publish.done and not create.done and not any(op.done for op in reads)


def test_not_carried_out_answers_resend_whatever_the_call() -> None:
    for code in ("NotLeaderError", "OverloadedError", "ShuttingDownError", "ProposalLostError"):
        wire = Wire()
        wire.open()
        purge = wire.core.purge("q", now=wire.now)
        (request,) = wire.flush()
        wire.reply(refusal(request.id, code))
        assert not purge.done, code
        wire.until_dial()  # (after a pause, for Overloaded and ShuttingDown)
        wire.accept()
        assert [r.id for r in wire.requests()] == [request.id], code


def test_an_unknown_outcome_resends_retryable_calls_and_fails_the_others() -> None:
    wire = Wire()
    wire.open()
    publish = wire.core.publish("q", b"m", now=wire.now)
    purge = wire.core.purge("q", now=wire.now)
    sent = wire.flush()
    wire.reply(
        refusal(sent[0].id, "OutcomeUnknownError"), refusal(sent[1].id, "OutcomeUnknownError")
    )
    assert isinstance(purge.error, OutcomeUnknownError)
    assert not publish.done
    wire.accept()
    assert [r.id for r in wire.requests()] == [sent[0].id]


def test_a_silent_connection_is_dropped_when_a_call_expires_on_it() -> None:
    wire = Wire(timeout=SECOND)
    wire.open()
    stats = wire.core.stats("q", now=wire.now)
    wire.flush()
    taken = wire.advance(SECOND + 10 * MS)
    assert isinstance(stats.error, RequestTimeoutError)
    assert any(isinstance(a, Close) for a in taken)
    assert any(isinstance(a, Dial) for a in taken)  # and it looks for the leader again


def test_close_fails_everything_pending() -> None:
    wire = Wire()
    wire.open()
    ops = [wire.core.publish("q", b"m", now=wire.now), wire.core.queues(now=wire.now)]
    wire.core.close(wire.now)
    taken = wire.actions()
    assert isinstance(taken[-1], Close)
    assert all(isinstance(op.error, ConnectionClosedError) for op in ops)
    assert wire.core.next_wakeup() is None
    late = wire.core.publish("q", b"late", now=wire.now)
    assert isinstance(late.error, ConnectionClosedError)


def test_flush_waits_for_every_publish_issued_before_it() -> None:
    wire = Wire()
    wire.open()
    ops = [wire.core.publish("q", b"m", now=wire.now) for _ in range(2)]
    flushed = wire.core.flush(wire.now)
    sent = wire.flush()
    wire.reply(receipt(sent[0].id, 1))
    assert not flushed.done
    wire.reply(refusal(sent[1].id, "QueueFullError"))
    assert flushed.done and ops[1].error is not None


# -- frames the server cannot read ----------------------------------------------------------------


def _protocol_error(code: str = "MalformedFrameError") -> p.Reply:
    return p.Reply(0, False, None, p.ErrorInfo(code, f"fake {code}"))


def test_a_refused_frame_of_one_request_fails_it_without_a_resend() -> None:
    wire = Wire()
    wire.open()
    op = wire.core.publish("q", b"unreadable", now=wire.now)
    wire.flush()
    wire.reply(_protocol_error("FrameTooLargeError"))
    assert isinstance(op.error, FrameTooLargeError)
    wire.accept()
    assert wire.requests() == []  # not resent
    assert wire.core.connects == 2


def test_the_request_a_server_cannot_read_is_found_and_the_others_go_through() -> None:
    wire = Wire()
    wire.open()
    core = wire.core
    bodies = [f"m{i}".encode() for i in range(7)]
    ops = [core.publish("q", body, now=wire.now) for body in bodies]
    bad = b"m4"
    stored: list[bytes] = []
    refusals = 0
    for _ in range(20):  # connections
        sent = wire.flush() if core.is_connected else []
        progress = True
        while progress:
            progress = False
            batch = [r for frame in wire.frames for r in frame]
            wire.frames = []
            if not batch:
                break
            # The server reads frame by frame and stops at the first bad one.
            replies: list[p.Reply] = []
            for request in batch:
                if request.body == bad:
                    refusals += 1
                    wire.reply(*replies, _protocol_error())
                    replies = []
                    break
                stored.append(request.body)
                replies.append(receipt(request.id, len(stored)))
            else:
                wire.reply(*replies)
                progress = True
                continue
            break
        del sent
        if all(op.done for op in ops):
            break
        wire.accept()
    assert isinstance(ops[4].error, MalformedFrameError)
    assert all(op.value is not None for i, op in enumerate(ops) if i != 4)
    assert stored == [b for b in bodies if b != bad]  # each once, in order
    assert refusals <= 4  # halving: bounded, never a resend loop
    wire.accept()
    assert not any(r.body == bad for r in wire.requests())


def test_a_probe_waits_until_every_earlier_frame_was_answered() -> None:
    wire = Wire()
    wire.open()
    core = wire.core
    a, b = (core.publish("q", body, now=wire.now) for body in (b"a", b"b"))
    wire.flush()
    wire.reply(_protocol_error())  # two suspects
    wire.accept()
    first = wire.requests()
    assert [r.body for r in first] == [b"a"]  # half of them, alone
    later = core.publish("q", b"c", now=wire.now)
    assert wire.flush() == []  # held behind the suspects
    wire.reply(receipt(first[0].id, 1))  # "a" was read: innocent; "b" goes alone
    probe = wire.requests()[-1]
    assert probe.body == b"b" and len(wire.frames[-1]) == 1
    wire.reply(_protocol_error())
    assert isinstance(b.error, MalformedFrameError) and a.value is not None
    wire.accept()
    (request,) = wire.requests()
    assert request.body == b"c"
    wire.reply(receipt(request.id, 2))
    assert later.value is not None


# -- the consumer core -------------------------------------------------------------------------


def _deliveries(first: int, count: int, *, token: int = 100) -> list[list[Any]]:
    return [
        [seq, f"b{seq}".encode(), [["h", "v"]], None, 5, 1, token + seq, 10**12, False, None, 3]
        for seq in range(first, first + count)
    ]


def test_a_consumer_joins_fetches_within_its_window_and_settles() -> None:
    wire = Wire()
    wire.open()
    consumer = wire.core.consumer("q", "g", consumer="c1", prefetch=10, wait=SECOND)
    started = consumer.start(wire.now)
    (subscribe,) = wire.flush()
    assert (type(subscribe).__name__, subscribe.consumer) == ("Subscribe", "c1")
    wire.reply(p.Reply(subscribe.id, True, {"expires_at": 0}))
    assert started.done
    (deliver,) = wire.flush()
    assert (deliver.max_messages, deliver.wait) == (10, SECOND)
    ready: list[int] = []
    consumer.on_ready = lambda: ready.append(consumer.buffered)
    wire.reply(p.Reply(deliver.id, True, _deliveries(1, 10)))
    assert ready == [10] and consumer.held == 10
    assert wire.flush() == []  # the window is full
    delivery = consumer.take(wire.now)
    assert delivery is not None
    assert (delivery.sequence, delivery.incarnation, delivery.headers) == (1, 3, {"h": "v"})
    assert consumer.held == 10  # at least once: taking frees nothing
    acked = consumer.ack(delivery, wire.now)
    sent = wire.flush()
    assert [type(r).__name__ for r in sent] == ["Ack", "Deliver"]  # room for one more
    assert sent[1].max_messages == 1
    with pytest.raises(UsageError, match="already settled"):
        consumer.ack(delivery, wire.now)
    wire.reply(p.Reply(sent[0].id, True, None))
    assert acked.done and acked.error is None


def test_a_delivery_knows_when_it_was_fetched_and_when_it_arrived() -> None:
    wire = Wire()
    wire.open()
    consumer = wire.core.consumer("q", "g", consumer="c", prefetch=1, wait=SECOND)
    consumer.start(wire.now)
    (subscribe,) = wire.flush()
    wire.reply(p.Reply(subscribe.id, True, {}))
    fetched = wire.now
    (deliver,) = wire.flush()
    wire.now += 300 * MS  # a long poll
    wire.reply(p.Reply(deliver.id, True, _deliveries(1, 1)))
    wire.now += 5 * SECOND  # it waits in the buffer
    delivery = consumer.take(wire.now)
    assert delivery is not None
    assert (delivery.fetched_at, delivery.arrived_at) == (fetched, fetched + 300 * MS)


def test_a_consumer_with_a_limit_never_leases_more() -> None:
    wire = Wire()
    wire.open()
    consumer = wire.core.consumer("q", "g", consumer="c", prefetch=10, limit=3, wait=SECOND)
    consumer.start(wire.now)
    (subscribe,) = wire.flush()
    wire.reply(p.Reply(subscribe.id, True, {}))
    (deliver,) = wire.flush()
    assert deliver.max_messages == 3
    wire.reply(p.Reply(deliver.id, True, _deliveries(1, 2)))
    (again,) = wire.flush()
    assert again.max_messages == 1
    wire.reply(p.Reply(again.id, True, _deliveries(3, 1)))
    for _ in range(3):
        delivery = consumer.take(wire.now)
        assert delivery is not None
        consumer.ack(delivery, wire.now)
    assert [type(r).__name__ for r in wire.flush()] == ["Ack", "Ack", "Ack"]
    assert consumer.exhausted


def test_at_most_once_frees_the_window_when_a_delivery_is_taken() -> None:
    wire = Wire()
    wire.open()
    consumer = wire.core.consumer("q", "g", consumer="c", prefetch=2, mode="at_most_once")
    consumer.start(wire.now)
    (subscribe,) = wire.flush()
    wire.reply(p.Reply(subscribe.id, True, {}))
    (deliver,) = wire.flush()
    settled = [[*d[:6], 0, 0, *d[8:]] for d in _deliveries(1, 2)]
    wire.reply(p.Reply(deliver.id, True, settled))
    assert wire.flush() == []
    delivery = consumer.take(wire.now)
    assert delivery is not None and delivery.settled
    assert consumer.ack(delivery, wire.now).done  # a no-op
    (more,) = wire.flush()
    assert more.max_messages == 1


def test_an_at_most_once_fetch_lost_with_its_connection_is_counted_and_told() -> None:
    """Its messages may have been settled at the broker and are gone (the mode's
    contract); the shell hears of it, so a history can say so."""
    wire = Wire()
    wire.open()
    consumer = wire.core.consumer("q", "g", consumer="c", prefetch=2, mode="at_most_once")
    told: list[int] = []
    consumer.on_ready = lambda: told.append(consumer.lost_fetches)
    consumer.start(wire.now)
    (subscribe,) = wire.flush()
    wire.reply(p.Reply(subscribe.id, True, {}))
    (deliver,) = wire.flush()
    assert type(deliver).__name__ == "Deliver" and consumer.lost_fetches == 0
    wire.lose()
    assert consumer.lost_fetches == 1
    assert told and told[-1] == 1
    assert consumer.take(wire.now) is None and consumer.take_error() is None


def test_an_early_empty_answer_backs_off_and_a_lost_session_rejoins() -> None:
    wire = Wire()
    wire.open()
    consumer = wire.core.consumer("q", "g", consumer="c", prefetch=5, wait=SECOND)
    consumer.start(wire.now)
    (subscribe,) = wire.flush()
    wire.reply(p.Reply(subscribe.id, True, {}))
    (deliver,) = wire.flush()
    wire.reply(p.Reply(deliver.id, True, []))  # empty, long before the wait
    assert wire.flush() == []
    wire.advance(60 * MS)
    (again,) = wire.requests()[-1:]
    assert type(again).__name__ == "Deliver" and again.id != deliver.id
    wire.reply(refusal(again.id, "UnknownConsumerError"))
    (rejoin,) = wire.flush()
    assert type(rejoin).__name__ == "Subscribe"
    wire.reply(p.Reply(rejoin.id, True, {}))
    assert type(wire.flush()[0]).__name__ == "Deliver"


def test_heartbeats_and_automatic_extension_run_on_the_cores_timers() -> None:
    wire = Wire(timeout=SECOND)
    wire.open()
    consumer = wire.core.consumer(
        "q",
        "g",
        consumer="c",
        prefetch=1,
        lease=2 * SECOND,
        auto_extend=True,
        session_timeout=9 * SECOND,
        wait=10 * SECOND,
    )
    consumer.start(wire.now)
    (subscribe,) = wire.flush()
    wire.reply(p.Reply(subscribe.id, True, {}))
    (deliver,) = wire.flush()
    wire.reply(p.Reply(deliver.id, True, _deliveries(1, 1)))
    wire.advance(SECOND)  # half the lease
    (extend,) = [r for r in wire.requests() if type(r).__name__ == "Extend"]
    assert extend.duration == 2 * SECOND
    wire.reply(p.Reply(extend.id, True, {"deadline": 77}))
    delivery = consumer.take(wire.now)
    assert delivery is not None and delivery.deadline == 77
    wire.advance(SECOND)
    extends = [r for r in wire.requests() if type(r).__name__ == "Extend"]
    assert len(extends) == 2
    wire.reply(p.Reply(extends[-1].id, True, {"deadline": 78}))
    wire.advance(SECOND)  # three seconds: a third of the session timeout
    assert sum(type(r).__name__ == "Subscribe" for r in wire.requests()) == 2
    wire.reply(*(p.Reply(r.id, True, {"deadline": 79}) for r in wire.requests()[-2:]))
    consumer.ack(delivery, wire.now)
    before = sum(type(r).__name__ == "Extend" for r in wire.requests())
    wire.advance(3 * SECOND)
    assert sum(type(r).__name__ == "Extend" for r in wire.requests()) == before


def test_closing_a_consumer_leaves_its_group() -> None:
    wire = Wire()
    wire.open()
    consumer = wire.core.consumer("q", "g", consumer="c", prefetch=1)
    consumer.start(wire.now)
    (subscribe,) = wire.flush()
    wire.reply(p.Reply(subscribe.id, True, {}))
    wire.flush()
    closed = consumer.close(wire.now)
    (leave,) = wire.flush()
    assert type(leave).__name__ == "Leave"
    wire.reply(refusal(leave.id, "UnknownConsumerError"))  # gone already: left
    assert closed.done and closed.error is None and consumer.closed


def test_the_core_draws_randomness_only_from_its_generator() -> None:
    def run(seed: int) -> list[str]:
        wire = Wire(("a:1", "b:2", "c:3"), seed=seed)
        wire.core.connect(wire.now, timeout=10 * SECOND)
        for _ in range(12):
            wire.until_dial()
            wire.fail_dial()
        return [f"{wire.now}: {a!r}" for a in wire.log]

    assert run(1) == run(1)
    assert run(1) != run(2)
    assert random.Random(1).random() == random.Random(1).random()  # (sanity)


def test_the_core_imports_no_io() -> None:
    """The core and what it imports: no event loop, no sockets, no threads, no logging
    (which brings threads). Checked in a fresh interpreter, with the top-level
    package stubbed so that only ``herald.client.core``'s own imports count."""
    import subprocess
    import sys
    from pathlib import Path

    import herald

    package = Path(herald.__file__).parent
    code = (
        "import sys, types\n"
        f"m = types.ModuleType('herald'); m.__path__ = [{str(package)!r}]\n"
        "sys.modules['herald'] = m\n"
        "import herald.client.core\n"
        "bad = [n for n in ('asyncio', 'socket', 'threading', 'selectors', 'logging',"
        " 'herald.client.client', 'herald.client.sync') if n in sys.modules]\n"
        "print(','.join(bad))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "", result.stdout
