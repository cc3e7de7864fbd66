"""Reliable broadcast cores: causal hold-back, FIFO's blind spot, dedup and retransmission."""

from __future__ import annotations

from herald.lab.broadcast import CausalBroadcast, FifoBroadcast, Packet, ReliableBroadcast
from herald.lab.scenarios import causal

NODES = (1, 2, 3)


def data_for(sender: ReliableBroadcast, dst: int) -> Packet:
    (packet,) = [p for p in sender.take_messages() if p.dst == dst]
    return packet


def question_and_answer(cls: type[ReliableBroadcast]) -> tuple[ReliableBroadcast, Packet, Packet]:
    """Node 1 asks, node 2 delivers it and answers; returns node 3 and both packets for it."""
    one, two, three = cls(1, NODES), cls(2, NODES), cls(3, NODES)
    one.broadcast("question")
    packets = one.take_messages()
    question_to_two = next(p for p in packets if p.dst == 2)
    question_to_three = next(p for p in packets if p.dst == 3)
    two.step(question_to_two)
    assert two.take_deliveries() == [((1, 1), "question")]
    two.take_messages()  # its acknowledgement
    two.broadcast("answer")
    answer_to_three = data_for(two, 3)
    return three, question_to_three, answer_to_three


def test_causal_holds_an_answer_back_until_its_question() -> None:
    three, question, answer = question_and_answer(CausalBroadcast)
    three.step(answer)
    assert three.take_deliveries() == []
    assert [p.payload for p in three.held_back] == ["answer"]
    three.step(question)
    assert three.take_deliveries() == [((1, 1), "question"), ((2, 1), "answer")]


def test_fifo_delivers_the_answer_first() -> None:
    three, question, answer = question_and_answer(FifoBroadcast)
    three.step(answer)
    three.step(question)
    assert [m for m, _ in three.take_deliveries()] == [(2, 1), (1, 1)]


def test_duplicates_are_acknowledged_and_dropped() -> None:
    one, two = CausalBroadcast(1, NODES), CausalBroadcast(2, NODES)
    one.broadcast("x")
    packet = data_for(one, 2)
    two.step(packet)
    two.step(packet)
    assert len(two.take_deliveries()) == 1
    assert [p.kind for p in two.take_messages()] == ["ack", "ack"]


def test_unacknowledged_messages_are_retransmitted() -> None:
    one = FifoBroadcast(1, NODES, resend=2)
    one.broadcast("x")
    one.take_messages()
    one.step(Packet(2, 1, "ack", 1, 1))
    one.tick()
    one.tick()
    assert [(p.dst, p.payload) for p in one.take_messages()] == [(3, "x")]


def test_the_scenario_is_as_predicted() -> None:
    result = causal.run(2, 1)
    assert result.verdict.as_predicted, result.verdict.unexpected
    protocols = result.figures["protocols"]
    assert isinstance(protocols, dict)
    assert protocols["causal (vector clocks)"]["causal_violations"] == 0
    assert protocols["FIFO only"]["causal_violations"] > 0
    assert protocols["FIFO only"]["fifo_violations"] == 0
