"""Single-decree Paxos: the roles by hand, the agreement checker, the scenario, a planted bug."""

from __future__ import annotations

import random

from herald.lab.paxos import (
    Acceptor,
    AcceptorState,
    Learner,
    PaxosMessage,
    Proposer,
    check_agreement,
)
from herald.lab.scenarios import paxos
from herald.txn.log import DurableLog

ACCEPTORS = (11, 12, 13)


def acceptors() -> dict[int, Acceptor]:
    return {a: Acceptor(a, DurableLog(), learners=(21,)) for a in ACCEPTORS}


def pump(nodes: dict[int, object], outbox: list[PaxosMessage]) -> None:
    queue = list(outbox)
    while queue:
        message = queue.pop(0)
        node = nodes.get(message.dst)
        if node is None:
            continue
        node.step(message)
        queue.extend(node.take_messages())


def test_one_proposer_gets_its_value_chosen_and_learned() -> None:
    nodes: dict[int, object] = dict(acceptors())
    learner = Learner(21, ACCEPTORS)
    proposer = Proposer(1, DurableLog(), ACCEPTORS, "v1", random.Random(1))
    nodes.update({21: learner, 1: proposer})
    proposer.start()
    pump(nodes, proposer.take_messages())
    assert proposer.chosen == "v1"
    assert learner.learned == ["v1"]


def test_a_later_proposer_adopts_the_accepted_value() -> None:
    nodes: dict[int, object] = dict(acceptors())
    first = Proposer(1, DurableLog(), ACCEPTORS, "v1", random.Random(1))
    second = Proposer(2, DurableLog(), ACCEPTORS, "v2", random.Random(2))
    nodes.update({1: first, 2: second})
    first.start()
    pump(nodes, first.take_messages())
    second.start()
    pump(nodes, second.take_messages())
    assert second.ballot > first.ballot
    assert second.chosen == "v1"


def test_an_acceptor_refuses_lower_ballots_and_remembers_across_a_restart() -> None:
    log: DurableLog[AcceptorState] = DurableLog()
    acceptor = Acceptor(11, log, learners=())
    acceptor.step(PaxosMessage(2, 11, "prepare", (5, 2)))
    acceptor.take_messages()
    restarted = Acceptor(11, log, learners=())
    restarted.step(PaxosMessage(1, 11, "prepare", (4, 1)))
    (answer,) = restarted.take_messages()
    assert (answer.kind, answer.accepted) == ("nack", (5, 2))


def test_a_restarted_proposer_never_reuses_a_ballot() -> None:
    log: DurableLog[int] = DurableLog()
    first = Proposer(1, log, ACCEPTORS, "v", random.Random(1))
    first.start()
    again = Proposer(1, log, ACCEPTORS, "w", random.Random(1))
    again.start()
    assert again.ballot > first.ballot


def test_the_agreement_checker() -> None:
    good = check_agreement(
        [(11, (1, 1), "a"), (12, (1, 1), "a"), (13, (2, 2), "a"), (11, (2, 2), "a")],
        acceptors=3,
        proposed=["a", "b"],
        learned={21: ["a"]},
    )
    assert good.agreement and good.value == "a"
    bad = check_agreement(
        [(11, (1, 1), "a"), (12, (1, 1), "a"), (12, (2, 2), "b"), (13, (2, 2), "b")],
        acceptors=3,
        proposed=["a", "b"],
        learned={21: ["a", "b"]},
    )
    assert not bad.agreement
    assert bad.violations[0] == "two values chosen: 'a' in ballot (1, 1), 'b' in ballot (2, 2)"
    assert any("learner n21" in v for v in bad.violations)
    invented = check_agreement([(11, (1, 1), "z"), (12, (1, 1), "z")], 3, ["a"], {})
    assert invented.violations == ["chosen value 'z' was never proposed"]


def test_the_scenario_is_as_predicted() -> None:
    result = paxos.run(0, 5)
    assert result.verdict.as_predicted, result.verdict.unexpected
    configurations = result.figures["configurations"]
    assert isinstance(configurations, dict)
    assert set(configurations) == {config.name for config in paxos.CONFIGS}


class ForgetsWhatItAccepted(Acceptor):
    """Planted bug: promises without reporting the value it already accepted."""

    def _promise(self, message: PaxosMessage) -> None:
        self._send(message.src, "promise", message.ballot)


def test_planted_an_acceptor_that_hides_its_accepted_value_is_caught() -> None:
    result = paxos.run(0, 2, acceptor_class=ForgetsWhatItAccepted)
    assert not result.verdict.as_predicted
    assert any("two values chosen" in line for line in result.verdict.unexpected)
