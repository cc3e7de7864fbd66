"""The values the classic commit protocols exchange and report.

One message type serves both protocols; ``kind`` says what it is. Notes are
what a core tells its driver happened (a vote cast, a decision taken, locks
taken or released), without a clock: the driver stamps them with the time and
node and keeps them as the history the atomicity checker reads.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = ["Decision", "Kind", "TxnMessage", "TxnNote"]


class Decision(enum.Enum):
    COMMIT = "commit"
    ABORT = "abort"


class Kind(enum.Enum):
    # two-phase commit
    PREPARE = "prepare"
    VOTE_YES = "vote-yes"
    VOTE_NO = "vote-no"
    COMMIT = "commit"
    ABORT = "abort"
    ACK = "ack"
    DECISION_REQUEST = "decision-request"
    UNCERTAIN = "uncertain"
    # three-phase commit adds
    CAN_COMMIT = "can-commit"
    PRE_COMMIT = "pre-commit"
    PRE_COMMIT_ACK = "pre-commit-ack"
    STATE_REQUEST = "state-request"
    STATE_REPLY = "state-reply"


@dataclass(frozen=True, slots=True)
class TxnMessage:
    src: int
    dst: int
    kind: Kind
    txn: int
    participants: tuple[int, ...] = ()  # the cohorts of ``txn`` (with PREPARE/CAN_COMMIT)
    state: str = ""  # a cohort's state, in STATE_REPLY
    attempt: int = 0  # which termination round a STATE_REQUEST/STATE_REPLY belongs to

    def __str__(self) -> str:
        extra = f" {self.state}" if self.state else ""
        return f"{self.kind.value} t{self.txn} n{self.src}->n{self.dst}{extra}"


@dataclass(frozen=True, slots=True)
class TxnNote:
    """Something that happened at a node, for the history.

    ``kind`` is one of ``begin`` (with ``participants``), ``vote-yes``,
    ``vote-no``, ``commit``, ``abort``, ``lock`` (``count`` locks now held for
    the transaction), ``unlock``, ``termination`` (a cohort asked others for
    the outcome), ``pre-commit``, ``votes-collected``.
    """

    kind: str
    txn: int
    count: int = 0
    participants: tuple[int, ...] = ()
