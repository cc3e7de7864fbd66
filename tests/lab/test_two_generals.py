"""Two generals: the strategies, the exact computation, and the checker's planted bug."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from herald.lab.generals import (
    GENERAL_A,
    GENERAL_B,
    Courier,
    General,
    Strategy,
    classify,
    make_generals,
)
from herald.lab.scenarios import two_generals
from herald.lab.scenarios.two_generals import ATTACK_ROUND, exact_outcomes


def play(strategy: Strategy, lose: set[tuple[int, int]]) -> tuple[General, General]:
    """Lockstep, losing the messages named (sender, number)."""
    a, b = make_generals(strategy, ATTACK_ROUND)
    for _ in range(ATTACK_ROUND):
        for sender, receiver in ((a, b), (b, a)):
            sender.tick()
            for message in sender.take_messages():
                if (message.src, message.number) not in lose:
                    receiver.step(message)
    return a, b


def test_without_loss_every_strategy_attacks_together() -> None:
    for strategy in two_generals.STRATEGIES:
        a, b = play(strategy, set())
        assert classify(a, b) == "together", strategy
        assert a.attacked_at == ATTACK_ROUND


def test_losing_the_last_message_of_a_chain_leaves_its_sender_alone() -> None:
    # Depth 3: A sends 1 and 3, B sends 2. Losing 3 leaves A (who sent it) attacking.
    a, b = play(Strategy("chain", 3), {(GENERAL_A, 3)})
    assert classify(a, b) == "A alone"
    # Losing an earlier link stops the chain before anyone commits: nobody attacks.
    a, b = play(Strategy("chain", 3), {(GENERAL_B, 2)})
    assert classify(a, b) == "neither"


def test_acknowledgements_move_the_risk_to_b() -> None:
    strategy = Strategy("acks", 1)
    every_ack = {(GENERAL_B, n) for n in range(1, ATTACK_ROUND + 1)}
    a, b = play(strategy, every_ack)
    assert classify(a, b) == "B alone"
    assert a.sent == ATTACK_ROUND - 1  # A kept asking until the attack round


@pytest.mark.parametrize("k", [1, 2, 5])
def test_exact_messengers(k: int) -> None:
    probabilities, messages = exact_outcomes(Strategy("messengers", k), 0.3)
    assert probabilities["A alone"] == pytest.approx(0.3**k)
    assert probabilities["together"] == pytest.approx(1 - 0.3**k)
    assert messages == pytest.approx(k)


@pytest.mark.parametrize("d", [2, 3, 4, 6])
def test_exact_chain(d: int) -> None:
    p = 0.2
    probabilities, _ = exact_outcomes(Strategy("chain", d), p)
    alone = probabilities["A alone"] + probabilities["B alone"]
    assert alone == pytest.approx(p * (1 - p) ** (d - 1))
    assert probabilities["together"] == pytest.approx((1 - p) ** d)


def with_mixin(mixin: type) -> Callable[[Strategy, int], tuple[General, General]]:
    """A maker of generals whose strategy class also inherits ``mixin`` (first)."""

    def make(strategy: Strategy, attack_round: int) -> tuple[General, General]:
        base = type(make_generals(strategy, attack_round)[0])
        cls = type(mixin.__name__ + base.__name__, (mixin, base), {"__slots__": ()})
        return cls(GENERAL_A, strategy.param, attack_round), cls(GENERAL_B, strategy.param, None)

    return make


class FullKey:
    """Compare whole states, as the base class does, disabling the merging shortcut."""

    __slots__ = ()

    def key(self) -> tuple[object, ...]:
        return General.key(self)


@pytest.mark.parametrize("strategy", [Strategy("acks", 2), Strategy("messengers", 3)])
def test_merging_equivalent_states_does_not_change_the_answer(strategy: Strategy) -> None:
    merged, m1 = exact_outcomes(strategy, 0.3)
    whole, m2 = exact_outcomes(strategy, 0.3, with_mixin(FullKey))
    assert m1 == pytest.approx(m2)
    for outcome, probability in merged.items():
        assert whole[outcome] == pytest.approx(probability)


def test_the_scenario_is_as_predicted_and_deterministic() -> None:
    first = two_generals.run(3, 30)
    second = two_generals.run(3, 30)
    assert first.summary() == second.summary()
    assert first.verdict.as_predicted, first.verdict.unexpected
    assert first.figures["smallest_disagreement_exact"] == pytest.approx(1e-8)
    assert any("certain agreement" in line for line in first.verdict.broke)


class LateGeneralB:
    """Planted bug: B attacks one round after the agreed one."""

    __slots__ = ()

    def tick(self: General) -> None:
        super().tick()
        if self.me == GENERAL_B and self.attacked_at == self.round:
            self.attacked_at += 1


def test_planted_attacking_at_the_wrong_time_is_caught() -> None:
    make = with_mixin(LateGeneralB)
    a, b = make(Strategy("messengers", 2), ATTACK_ROUND)
    for _ in range(ATTACK_ROUND):
        a.tick()
        for message in a.take_messages():
            b.step(message)
        b.tick()
    assert classify(a, b) == "apart"
    result = two_generals.run(0, 10, make=make, strategies=(Strategy("messengers", 2),))
    assert not result.verdict.as_predicted
    assert any("fail even without loss" in line for line in result.verdict.unexpected)


def test_courier_fields() -> None:
    courier = Courier(GENERAL_A, GENERAL_B, "order", 1, ATTACK_ROUND)
    assert (courier.src, courier.dst) == (GENERAL_A, GENERAL_B)
