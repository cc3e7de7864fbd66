"""The transaction checker: what a history of transactions across queues says.

A transaction consumes messages and publishes their consequences: its
``publish`` es and its ``ack`` s must take effect all together or not at all,
and only once it commits. This checker reads the Jepsen-style histories of
:mod:`herald.check.history` (the queue checker judges the same history's
plain publishes, deliveries and acks) with one more operation:

``txn``
    The *commit* of one transaction, invoked when the client asks to commit
    (everything the transaction publishes and acks was given to it before).
    ``value``: ``txn`` (its id, unique in the history), ``publish`` (a list of
    ``{"queue", "id"}``: the messages it publishes, ids unique per queue across
    the run, as for ``publish``) and ``ack`` (a list of ``{"queue", "group",
    "id"}``: the deliveries it settles). Completion: ``ok`` it committed,
    ``fail`` it surely aborted (``tx.abort()``, an exception, or a refusal
    before any effect), ``info`` unknown (a timeout, a crash).

The deliveries of the messages a transaction publishes are ordinary
``deliver`` operations of the queues' consumer groups; the history should end
with a drain (consume every group until empty, list the dead letters), or
"never delivered" means only "not yet".

What a transaction's two sides did, as the history shows them:

- a **publish took effect** when its id was delivered ``ok`` in some group of
  its queue (or found in a dead-letter list); it **did not** when the history
  drained that queue and no group ever saw it;
- an **ack took effect** when its message was never delivered ``ok`` again in
  that group by an operation completing after the commit was invoked, and is
  not in that group's dead letters; it **did not** when it was (the broker
  leased it again, so the transaction's settlement never happened).

Findings, by transaction:

- **torn**: some of its effects happened and some did not (any outcome);
- **aborted_read**: an aborted (``fail``) transaction's message was delivered;
- **aborted_ack**: an aborted transaction's ack took effect (its message was
  never handed out again and is not a dead letter: settled by a transaction
  that never committed);
- **lost**: a committed (``ok``) transaction's message was never delivered in
  a group of its queue that the history drained, or its acked message was
  delivered again (a committed ack holds: a lease that ended first must have
  aborted the transaction);
- **early_read**: a transaction's message was delivered by an operation that
  completed before the transaction's commit was invoked (visible before its
  commit).

A transaction with nothing observable (no consumers of its queues, no acks)
is counted but not judged.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from .history import Json, Op, Operation, pair_operations

__all__ = ["TXN_FINDINGS", "TxnCheckResult", "TxnFinding", "check_transactions"]

#: The kinds of finding, in the order reports list them.
TXN_FINDINGS = ("torn", "aborted_read", "aborted_ack", "lost", "early_read")


@dataclass(frozen=True, slots=True)
class TxnFinding:
    kind: str
    txn: str
    detail: str


@dataclass(slots=True)
class TxnCheckResult:
    """Every finding, and how many transactions ended each way."""

    findings: list[TxnFinding] = field(default_factory=list)
    committed: int = 0
    aborted: int = 0
    unknown: int = 0

    @property
    def ok(self) -> bool:
        return not self.findings

    def count(self, kind: str) -> int:
        return sum(finding.kind == kind for finding in self.findings)

    def summary(self) -> str:
        counts = " ".join(f"{kind}={self.count(kind)}" for kind in TXN_FINDINGS)
        return (
            f"transactions committed={self.committed} aborted={self.aborted} "
            f"unknown={self.unknown} {counts}"
        )


@dataclass(slots=True)
class _Seen:
    """What the history shows of the messages and the groups."""

    #: (queue, id) -> end positions of the ok deliveries, per group.
    delivered: dict[tuple[str, str], dict[str, list[int]]] = field(default_factory=dict)
    #: (queue, group) -> ids found in its dead letters.
    dead: dict[tuple[str, str], set[str]] = field(default_factory=dict)
    #: queue -> the groups that consumed it.
    groups: dict[str, set[str]] = field(default_factory=dict)


def _text(value: Mapping[str, Json], key: str) -> str:
    item = value.get(key)
    return item if isinstance(item, str) else ""


def _items(value: Mapping[str, Json], key: str) -> list[Mapping[str, Json]]:
    items = value.get(key)
    if not isinstance(items, list):
        return []
    return [item for item in items if isinstance(item, dict)]


def _gather(operations: Sequence[Operation]) -> _Seen:
    seen = _Seen()
    for op in operations:
        if op.f == "deliver":
            queue, group = _text(op.value, "queue"), _text(op.value, "group")
            seen.groups.setdefault(queue, set()).add(group)
            if op.status != "ok":
                continue
            for message in _items(op.value, "messages"):
                key = (queue, _text(message, "id"))
                seen.delivered.setdefault(key, {}).setdefault(group, []).append(op.end)
        elif op.f == "dead_letter":
            queue, group = _text(op.value, "queue"), _text(op.value, "group")
            ids = op.value.get("ids")
            found = seen.dead.setdefault((queue, group), set())
            if isinstance(ids, list):
                found.update(item for item in ids if isinstance(item, str))
            single = _text(op.value, "id")
            if single:
                found.add(single)
    return seen


def _published_seen(seen: _Seen, queue: str, message_id: str) -> bool:
    if seen.delivered.get((queue, message_id)):
        return True
    return any(
        message_id in seen.dead.get((queue, group), ()) for group in seen.groups.get(queue, ())
    )


def _ack_effective(seen: _Seen, queue: str, group: str, message_id: str, after: int) -> bool:
    """The acked message was never handed out again in its group after ``after``
    and is not one of its dead letters."""
    again = seen.delivered.get((queue, message_id), {}).get(group, [])
    if any(end > after for end in again):
        return False
    return message_id not in seen.dead.get((queue, group), set())


def check_transactions(history: Sequence[Op]) -> TxnCheckResult:
    """Judge every ``txn`` of ``history`` (see the module docstring)."""
    operations = list(pair_operations(history))
    seen = _gather(operations)
    result = TxnCheckResult()
    for op in operations:
        if op.f != "txn":
            continue
        if op.status == "ok":
            result.committed += 1
        elif op.status == "fail":
            result.aborted += 1
        else:
            result.unknown += 1
        _judge(op, seen, result)
    return result


def _judge(op: Operation, seen: _Seen, result: TxnCheckResult) -> None:
    txn = _text(op.value, "txn") or f"#{op.start}"
    findings = result.findings
    took: list[str] = []  # effects that happened, named
    missed: list[str] = []  # effects that did not
    for publish in _items(op.value, "publish"):
        queue, message_id = _text(publish, "queue"), _text(publish, "id")
        name = f"publish {queue}/{message_id}"
        by_group = seen.delivered.get((queue, message_id), {})
        early = [end for ends in by_group.values() for end in ends if end < op.start]
        if early:
            findings.append(
                TxnFinding("early_read", txn, f"{name} delivered before the commit was asked")
            )
        if _published_seen(seen, queue, message_id):
            took.append(name)
            if op.status == "fail":
                findings.append(TxnFinding("aborted_read", txn, f"{name} of an aborted txn"))
            elif op.status == "ok":
                for group in sorted(seen.groups.get(queue, ())):
                    if group not in by_group and message_id not in seen.dead.get(
                        (queue, group), ()
                    ):
                        findings.append(
                            TxnFinding("lost", txn, f"{name} never delivered in group {group}")
                        )
        elif seen.groups.get(queue):
            missed.append(name)
            if op.status == "ok":
                findings.append(
                    TxnFinding("lost", txn, f"{name} of a committed txn never delivered")
                )
    for ack in _items(op.value, "ack"):
        queue, group, message_id = _text(ack, "queue"), _text(ack, "group"), _text(ack, "id")
        name = f"ack {queue}/{group}/{message_id}"
        if _ack_effective(seen, queue, group, message_id, op.start):
            took.append(name)
            if op.status == "fail":
                findings.append(TxnFinding("aborted_ack", txn, f"{name} took effect"))
        else:
            missed.append(name)
            if op.status == "ok":
                # A committed ack holds: a lease that ended before the commit
                # must have aborted it.
                findings.append(
                    TxnFinding("lost", txn, f"{name} of a committed txn: delivered again")
                )
    if took and missed:
        findings.append(
            TxnFinding(
                "torn",
                txn,
                f"{op.status}: took effect {', '.join(took)}; did not {', '.join(missed)}",
            )
        )
