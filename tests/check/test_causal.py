"""The causal-order checker: happens-before from the history, and a planted delivery bug."""

from __future__ import annotations

from herald.check.causal import BroadcastEvent, check_causal
from herald.lab.broadcast import CausalBroadcast, Packet
from herald.lab.scenarios import causal

NODES = (1, 2, 3)


def events(*rows: tuple[int, int, str, tuple[int, int]]) -> list[BroadcastEvent]:
    return [BroadcastEvent(time, node, kind, message) for time, node, kind, message in rows]


def test_a_reply_delivered_before_its_cause_is_a_violation() -> None:
    report = check_causal(
        events(
            (1, 1, "send", (1, 1)),  # question
            (2, 2, "deliver", (1, 1)),
            (3, 2, "send", (2, 1)),  # the answer depends on the question
            (4, 3, "deliver", (2, 1)),  # node 3 sees the answer first
            (5, 3, "deliver", (1, 1)),
            (6, 1, "deliver", (2, 1)),
        ),
        NODES,
    )
    assert not report.causal
    assert len(report.violations) == 1
    violation = report.violations[0]
    assert (violation.node, violation.delivered, violation.missing) == (3, (2, 1), (1, 1))
    assert not violation.fifo
    assert report.complete


def test_causal_and_concurrent_deliveries_pass() -> None:
    report = check_causal(
        events(
            (1, 1, "send", (1, 1)),
            (1, 3, "send", (3, 1)),  # concurrent with (1, 1): any order is fine
            (2, 2, "deliver", (3, 1)),
            (3, 2, "deliver", (1, 1)),
            (4, 2, "send", (2, 1)),
            (5, 3, "deliver", (1, 1)),
            (6, 3, "deliver", (2, 1)),
            (6, 1, "deliver", (3, 1)),
            (7, 1, "deliver", (2, 1)),
        ),
        NODES,
    )
    assert report.causal
    assert report.complete
    # Node 1 delivered (2, 1) before (3, 1), which (2, 1) depends on: caught.
    report_bad = check_causal(
        events(
            (1, 3, "send", (3, 1)),
            (2, 2, "deliver", (3, 1)),
            (3, 2, "send", (2, 1)),
            (4, 1, "deliver", (2, 1)),
            (5, 1, "deliver", (3, 1)),
        ),
        NODES,
    )
    assert [str(v) for v in report_bad.violations] == [
        "n1 delivered (2, 1) before (3, 1), which precedes it"
    ]


def test_fifo_violations_duplicates_and_missing_messages() -> None:
    report = check_causal(
        events(
            (1, 1, "send", (1, 1)),
            (2, 1, "send", (1, 2)),
            (3, 2, "deliver", (1, 2)),
            (4, 2, "deliver", (1, 1)),
            (5, 2, "deliver", (1, 1)),
        ),
        NODES,
    )
    assert report.fifo_violations == 1
    assert report.duplicates == [(2, (1, 1))]
    assert report.missing == {1: 0, 2: 0, 3: 2}
    assert not report.complete


class AcceptsOneAhead(CausalBroadcast):
    """Planted bug: an off-by-one in the delivery condition for the other origins."""

    def _deliverable(self, packet: Packet) -> bool:
        origin = self.position[packet.origin]
        for index, count in enumerate(packet.clock):
            limit = self.delivered_count[index] + 1
            if (index == origin and count != limit) or (index != origin and count > limit):
                return False
        return True


def test_planted_an_off_by_one_vector_clock_is_caught() -> None:
    honest = causal.run(0, 1)
    assert honest.verdict.as_predicted
    planted = causal.run(0, 1, causal=AcceptsOneAhead)
    assert not planted.verdict.as_predicted
    assert any("causal (vector clocks)" in line for line in planted.verdict.unexpected)
