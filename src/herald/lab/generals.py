"""Two generals over a lossy channel: finite strategies as sans-IO state machines.

General A picks the attack round and must get general B to attack with it; the
only channel is a messenger who may be captured (a lost message). Each strategy
is a finite protocol: a bounded number of messages before the attack round.

Both generals act once per round, on ``tick``: they read what arrived since the
last tick (``step`` only records it), send, and at the attack round decide. A
general attacks at most once, and only at the round it knows; B knows the round
only if a messenger told it.

Strategies (``Strategy.family``):

- ``messengers`` (k): A sends k messengers, one per round, and attacks whatever
  happens; B attacks if any messenger arrives. A attacks alone if all k are lost.
- ``acks`` (m): A sends a messenger every round until m distinct ones have been
  acknowledged, and attacks only if m were; B acknowledges every messenger and
  attacks if any arrived. B attacks alone if acknowledgements are lost.
- ``chain`` (d): an acknowledgement chain of depth d: A sends depth 1, whoever
  receives depth j < d answers with depth j + 1, once. Each general attacks
  only if the last message of the chain addressed to it arrived. Whoever sends
  the last message cannot know it arrived: that is the whole argument.

:func:`classify` is the checker: both attacked at the same round, neither
attacked, one attacked alone, or both attacked at different rounds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

__all__ = [
    "GENERAL_A",
    "GENERAL_B",
    "OUTCOMES",
    "Courier",
    "General",
    "Strategy",
    "classify",
    "disagree",
    "make_generals",
]

GENERAL_A = 1
GENERAL_B = 2

#: The outcomes :func:`classify` names; the last three are disagreements.
OUTCOMES = ("together", "neither", "A alone", "B alone", "apart")


@dataclass(frozen=True, slots=True)
class Courier:
    """A messenger: an order (``kind="order"``) or an acknowledgement (``"ack"``)."""

    src: int
    dst: int
    kind: str
    number: int  # the order's sequence number, or the chain depth
    attack_round: int


@dataclass(frozen=True, slots=True)
class Strategy:
    family: str  # "messengers", "acks" or "chain"
    param: int

    def label(self) -> str:
        name = {"messengers": "k", "acks": "m", "chain": "d"}[self.family]
        return f"{self.family} {name}={self.param}"


class General:
    """One general. Subclasses say what to send each round and when to attack."""

    __slots__ = (
        "acks",
        "attack_round",
        "attacked_at",
        "me",
        "orders",
        "outbox",
        "param",
        "peer",
        "round",
        "sent",
        "sent_numbers",
    )

    family: ClassVar[str] = ""

    def __init__(self, me: int, param: int, attack_round: int | None) -> None:
        self.me = me
        self.peer = GENERAL_B if me == GENERAL_A else GENERAL_A
        self.param = param
        self.attack_round = attack_round  # B learns it from a messenger
        self.round = 0
        self.orders: set[int] = set()  # numbers of orders (or chain depths) received
        self.acks: set[int] = set()  # numbers acknowledged to us
        self.sent_numbers: set[int] = set()
        self.sent = 0
        self.attacked_at: int | None = None
        self.outbox: list[Courier] = []

    # -- the core's interface --------------------------------------------------------------

    def step(self, message: Courier) -> None:
        if self.attack_round is None:
            self.attack_round = message.attack_round
        if message.kind == "order":
            self.orders.add(message.number)
        else:
            self.acks.add(message.number)

    def tick(self) -> None:
        self.round += 1
        if self.attacked_at is None and self.attack_round is not None:
            if self.round < self.attack_round:
                self._send_round()
            elif self.round == self.attack_round and self._will_attack():
                self.attacked_at = self.round

    def take_messages(self) -> list[Courier]:
        out, self.outbox = self.outbox, []
        return out

    # -- strategies -----------------------------------------------------------------------

    def _send_round(self) -> None:
        raise NotImplementedError

    def _will_attack(self) -> bool:
        raise NotImplementedError

    def _send(self, kind: str, number: int) -> None:
        assert self.attack_round is not None
        self.sent += 1
        self.sent_numbers.add(number)
        self.outbox.append(Courier(self.me, self.peer, kind, number, self.attack_round))

    # -- for the exact computation: copy and compare whole states --------------------------

    def clone(self) -> General:
        other = type(self).__new__(type(self))
        other.me = self.me
        other.peer = self.peer
        other.param = self.param
        other.attack_round = self.attack_round
        other.round = self.round
        other.orders = set(self.orders)
        other.acks = set(self.acks)
        other.sent_numbers = set(self.sent_numbers)
        other.sent = self.sent
        other.attacked_at = self.attacked_at
        other.outbox = list(self.outbox)
        return other

    def key(self) -> tuple[object, ...]:
        """Equal keys promise equal behaviour from here on (the exact computation merges them).

        The whole state by default; a strategy may keep only what its rules read.
        """
        return (
            self.round,
            self.attack_round,
            tuple(sorted(self.orders)),
            tuple(sorted(self.acks)),
            tuple(sorted(self.sent_numbers)),
            self.sent,
            self.attacked_at,
        )


class _Messengers(General):
    __slots__ = ()
    family = "messengers"

    def _send_round(self) -> None:
        if self.me == GENERAL_A and self.round <= self.param:
            self._send("order", self.round)

    def _will_attack(self) -> bool:
        return self.me == GENERAL_A or bool(self.orders)

    def key(self) -> tuple[object, ...]:
        # Which messengers arrived does not matter, only whether one did.
        return (self.round, self.attack_round, bool(self.orders), self.sent, self.attacked_at)


class _Acks(General):
    __slots__ = ()
    family = "acks"

    def _send_round(self) -> None:
        if self.me == GENERAL_A:
            if len(self.acks) < self.param:
                self._send("order", self.round)
            return
        for number in sorted(self.orders - self.sent_numbers):
            self._send("ack", number)

    def _will_attack(self) -> bool:
        if self.me == GENERAL_A:
            return len(self.acks) >= self.param
        return bool(self.orders)

    def key(self) -> tuple[object, ...]:
        # Every order and every acknowledgement carries a new number, so the rules
        # depend on how many arrived (and how many await an ack), not which.
        return (
            self.round,
            self.attack_round,
            len(self.orders),
            len(self.orders - self.sent_numbers),
            len(self.acks),
            self.sent,
            self.attacked_at,
        )


class _Chain(General):
    __slots__ = ()
    family = "chain"

    def _highest(self) -> int:
        return max(self.orders, default=0)

    def _send_round(self) -> None:
        depth = self.param
        if self.me == GENERAL_A and self.round == 1:
            self._send("order", 1)
            return
        nxt = self._highest() + 1
        if 1 < nxt <= depth and nxt not in self.sent_numbers:
            self._send("order", nxt)

    def _last_addressed_to_me(self) -> int:
        # A sends the odd depths and receives the even ones; B the other way round.
        depth = self.param
        wanted_parity = 0 if self.me == GENERAL_A else 1
        last = depth if depth % 2 == wanted_parity else depth - 1
        return max(last, 0)

    def _will_attack(self) -> bool:
        last = self._last_addressed_to_me()
        return last == 0 or self._highest() >= last


_FAMILIES: dict[str, type[General]] = {cls.family: cls for cls in (_Messengers, _Acks, _Chain)}


def make_generals(strategy: Strategy, attack_round: int) -> tuple[General, General]:
    """A fresh pair of generals playing ``strategy``; A attacks (if at all) at ``attack_round``."""
    cls = _FAMILIES[strategy.family]
    return cls(GENERAL_A, strategy.param, attack_round), cls(GENERAL_B, strategy.param, None)


def classify(a: General, b: General) -> str:
    """The checker: did the generals agree? One of :data:`OUTCOMES`."""
    if a.attacked_at is None and b.attacked_at is None:
        return "neither"
    if b.attacked_at is None:
        return "A alone"
    if a.attacked_at is None:
        return "B alone"
    return "together" if a.attacked_at == b.attacked_at else "apart"


def disagree(outcome: str) -> bool:
    return outcome not in ("together", "neither")
