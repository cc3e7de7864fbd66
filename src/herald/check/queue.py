"""The queue checker: what a history of publishes, deliveries, acks and effects says.

In the spirit of Jepsen's total-queue checker, adapted to consumer groups,
delivery modes and leases. It reads only a history (:mod:`herald.check.history`),
so it judges the simulator, a run against real processes, or another broker
alike. Messages are identified by the ``id`` the workload gave them; a
*stream* is one consumer group of one queue, and every group named in the
history is expected to receive every message published to its queue (fan-out;
workloads create their groups before they publish). The history should end
with a drain (consume until empty, list the dead letters), or ``lost`` means
only "not yet delivered".

Findings, per stream:

- **lost**: a confirmed publish (some ``publish`` of its id completed ``ok``)
  never delivered ``ok`` and not found in the dead letters; in a stream whose
  consumers record effects, also a confirmed message never processed
  (no ``effect`` that is ``ok`` or ``info``);
- **unexpected**: delivered (or processed) but never published: no publish of
  that id was attempted on the queue, or every attempt ``fail``-ed;
- **duplicated**: delivered ``ok`` more than once in the stream;
- **duplicated_effect**: processed (``effect`` ``ok``) more than once;
- **copy**: delivered under two different broker sequence numbers -- the
  broker stored the message twice (producer deduplication failed);
- **reordered**: first deliveries out of FIFO order -- either a message
  confirmed before another was first published is first-delivered strictly
  after it, or (when the broker reports sequence numbers) a first delivery
  completed before another was invoked carries a higher sequence number, or
  one batch is not in sequence order;
- **redelivered_after_ack**: delivered again after an ``ok`` ack of it (of the
  same broker sequence number, when both operations carry one -- so record
  ``seq`` on acks if a message may be stored twice);
- **attempt_regression**: a later delivery of a message carries an attempt
  number not above an earlier one's.

A ``drop`` operation says the queue's messages were thrown away (the queue
deleted and created again, or purged): a message first published before a
drop that may have happened (``ok`` or ``info``) ended is not lost if it never
arrives. Sequence numbers are compared within one incarnation of a queue only
(deliveries may say which with ``inc``): a queue created again numbers its
messages from 1 again.

Each finding is attributed to a delivery mode, which decides whether it is a
failure or a phenomenon (:mod:`herald.check.verdict`):

- a duplicate delivery counts against ``at_most_once`` if any of the
  deliveries was made in that mode (an at-most-once consumer must never see a
  message anyone else saw), otherwise against the mode of its deliveries;
- a duplicated effect counts against the mode of its ``effect`` operations;
- a lost message counts against ``at_most_once`` if an at-most-once
  ``deliver`` in its stream ended unknown (``info`` or never completed): such
  a delivery may have settled it and died with its consumer, which is exactly
  the loss at-most-once allows. Otherwise it counts against the stream's
  at-least-once or effectively-once mode;
- the rest count against the stream's mode (effectively-once, else
  at-least-once, else at-most-once, by what its operations declare).
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from .history import Json, Op, Operation, pair_operations

__all__ = [
    "AT_LEAST_ONCE",
    "AT_MOST_ONCE",
    "EFFECTIVELY_ONCE",
    "KINDS",
    "MODES",
    "Finding",
    "ModeCounts",
    "QueueCheckResult",
    "check_queue",
]

AT_MOST_ONCE = "at_most_once"
AT_LEAST_ONCE = "at_least_once"
EFFECTIVELY_ONCE = "effectively_once"
MODES = (AT_MOST_ONCE, AT_LEAST_ONCE, EFFECTIVELY_ONCE)

KINDS = (
    "lost",
    "unexpected",
    "duplicated",
    "duplicated_effect",
    "copy",
    "reordered",
    "redelivered_after_ack",
    "attempt_regression",
)

Stream = tuple[str, str]  # (queue, group)


@dataclass(frozen=True, slots=True)
class Finding:
    """One anomaly, with enough to find it in the history (positions are op indexes)."""

    kind: str
    mode: str
    queue: str
    group: str
    id: str
    detail: str


@dataclass(frozen=True, slots=True)
class ModeCounts:
    """What the checker found in the streams (or deliveries) of one delivery mode."""

    streams: int = 0
    confirmed: int = 0  # confirmed publishes, summed over the mode's streams
    delivered: int = 0  # distinct messages delivered at least once
    lost: int = 0
    unexpected: int = 0
    duplicated: int = 0
    duplicated_effect: int = 0
    copy: int = 0
    reordered: int = 0
    redelivered_after_ack: int = 0
    attempt_regression: int = 0


@dataclass(frozen=True, slots=True)
class QueueCheckResult:
    attempted: int  # distinct (queue, id) with a publish invoked
    confirmed: int  # ... with a publish ok
    failed: int  # ... whose every publish failed
    indeterminate: int  # ... neither confirmed nor surely failed
    by_mode: Mapping[str, ModeCounts]
    counts: Mapping[str, int]  # findings per kind, all modes
    findings: tuple[Finding, ...]  # up to ``max_examples`` per kind and mode

    def examples(self, kind: str, mode: str | None = None) -> tuple[Finding, ...]:
        return tuple(
            f for f in self.findings if f.kind == kind and (mode is None or f.mode == mode)
        )


# -- gathering ------------------------------------------------------------------------------


@dataclass(slots=True)
class _Delivery:
    id: str
    mode: str
    start: int
    end: int
    seq: int | None
    inc: int | None
    attempt: int | None
    redelivery: bool | None
    batch: int  # position of its deliver operation
    slot: int  # position within the batch


@dataclass(slots=True)
class _Publish:
    first_invoke: int | None = None
    first_ok: int | None = None
    attempts: int = 0
    failures: int = 0


@dataclass(slots=True)
class _Stream:
    modes: set[str] = field(default_factory=set)
    deliveries: dict[str, list[_Delivery]] = field(default_factory=dict)
    batches: list[list[_Delivery]] = field(default_factory=list)
    effects_ok: dict[str, list[str]] = field(default_factory=dict)  # id -> modes
    effects_maybe: set[str] = field(default_factory=set)
    records_effects: bool = False
    acked: dict[str, list[tuple[int, int | None]]] = field(default_factory=dict)  # id -> (end, seq)
    dead: set[str] = field(default_factory=set)
    uncertain_amo: bool = False


def _text(value: Mapping[str, Json], key: str, default: str = "") -> str:
    item = value.get(key, default)
    return item if isinstance(item, str) else str(item)


def _int(value: Mapping[str, Json], key: str) -> int | None:
    item = value.get(key)
    return item if isinstance(item, int) and not isinstance(item, bool) else None


def _mode(value: Mapping[str, Json]) -> str:
    mode = _text(value, "mode", AT_LEAST_ONCE)
    return mode if mode in MODES else AT_LEAST_ONCE


def _gather(
    operations: Sequence[Operation],
) -> tuple[dict[tuple[str, str], _Publish], dict[Stream, _Stream], dict[str, list[int]]]:
    publishes: dict[tuple[str, str], _Publish] = {}
    streams: dict[Stream, _Stream] = {}
    drops: dict[str, list[int]] = {}  # queue -> when each drop (that may have happened) ended

    def stream_of(value: Mapping[str, Json]) -> _Stream:
        key = (_text(value, "queue"), _text(value, "group"))
        if key not in streams:
            streams[key] = _Stream()
        return streams[key]

    for op in operations:
        value = op.value
        if op.f == "publish":
            record = publishes.setdefault((_text(value, "queue"), _text(value, "id")), _Publish())
            record.attempts += 1
            if record.first_invoke is None or op.start < record.first_invoke:
                record.first_invoke = op.start
            if op.status == "ok" and (record.first_ok is None or op.end < record.first_ok):
                record.first_ok = op.end
            if op.status == "fail":
                record.failures += 1
        elif op.f == "deliver":
            stream = stream_of(value)
            mode = _mode(value)
            stream.modes.add(mode)
            if op.status != "ok":
                if op.status == "info" and mode == AT_MOST_ONCE:
                    stream.uncertain_amo = True
                continue
            messages = value.get("messages", [])
            batch: list[_Delivery] = []
            for slot, item in enumerate(messages if isinstance(messages, list) else []):
                if not isinstance(item, dict):
                    continue
                redelivery = item.get("redelivery")
                delivery = _Delivery(
                    _text(item, "id"),
                    mode,
                    op.start,
                    op.end,
                    _int(item, "seq"),
                    _int(item, "inc"),
                    _int(item, "attempt"),
                    redelivery if isinstance(redelivery, bool) else None,
                    op.start,
                    slot,
                )
                stream.deliveries.setdefault(delivery.id, []).append(delivery)
                batch.append(delivery)
            stream.batches.append(batch)
        elif op.f == "effect":
            stream = stream_of(value)
            mode = _mode(value)
            stream.modes.add(mode)
            stream.records_effects = True
            message_id = _text(value, "id")
            if op.status == "ok":
                stream.effects_ok.setdefault(message_id, []).append(mode)
            elif op.status == "info":
                stream.effects_maybe.add(message_id)
        elif op.f == "ack":
            stream = stream_of(value)
            if op.status == "ok":
                stream.acked.setdefault(_text(value, "id"), []).append((op.end, _int(value, "seq")))
        elif op.f == "dead_letter" and op.status == "ok":
            stream = stream_of(value)
            ids = value.get("ids")
            if isinstance(ids, list):
                stream.dead.update(str(i) for i in ids)
            else:
                stream.dead.add(_text(value, "id"))
        elif op.f == "drop" and op.status in ("ok", "info"):
            # An unknown drop may have happened: as good as one, for excusing losses.
            end = op.end if op.status == "ok" else 1 << 62
            drops.setdefault(_text(value, "queue"), []).append(end)
    return publishes, streams, drops


# -- judging ---------------------------------------------------------------------------------


class _Findings:
    def __init__(self, max_examples: int) -> None:
        self.max_examples = max_examples
        self.counts: dict[str, int] = dict.fromkeys(KINDS, 0)
        self.by_mode: dict[str, dict[str, int]] = {mode: {} for mode in MODES}
        self.examples: list[Finding] = []
        self._shown: dict[tuple[str, str], int] = {}

    def add(self, kind: str, mode: str, stream: Stream, message_id: str, detail: str) -> None:
        self.counts[kind] += 1
        per_mode = self.by_mode[mode]
        per_mode[kind] = per_mode.get(kind, 0) + 1
        shown = self._shown.get((kind, mode), 0)
        if shown < self.max_examples:
            self._shown[(kind, mode)] = shown + 1
            self.examples.append(Finding(kind, mode, stream[0], stream[1], message_id, detail))


def _stream_mode(modes: set[str]) -> str:
    for mode in (EFFECTIVELY_ONCE, AT_LEAST_ONCE, AT_MOST_ONCE):
        if mode in modes:
            return mode
    return AT_LEAST_ONCE


def _first_deliveries(stream: _Stream) -> list[_Delivery]:
    """Each message's first delivery, as the broker marked it (or its earliest one)."""
    firsts = []
    for deliveries in stream.deliveries.values():
        marked = [
            d
            for d in deliveries
            if d.redelivery is False or (d.redelivery is None and d.attempt == 1)
        ]
        unmarked = all(d.redelivery is None and d.attempt is None for d in deliveries)
        candidates = marked or (deliveries if unmarked else [])
        if candidates:
            firsts.append(min(candidates, key=lambda d: (d.end, d.slot)))
    return firsts


def _check_order(
    stream_key: Stream,
    stream: _Stream,
    mode: str,
    publishes: Mapping[tuple[str, str], _Publish],
    findings: _Findings,
) -> None:
    queue = stream_key[0]
    firsts = _first_deliveries(stream)
    reported: set[str] = set()

    # (1) Real-time order of publishes: if a was confirmed before b was first
    # published, b's first delivery must not complete before a's is invoked.
    candidates = []
    for d in firsts:
        record = publishes.get((queue, d.id))
        if record is not None and record.first_invoke is not None:
            candidates.append((record.first_invoke, d))
    candidates.sort(key=lambda item: item[0])
    invokes = [invoke for invoke, _ in candidates]
    suffix_min: list[tuple[int, str]] = [(0, "")] * len(candidates)
    best = (len(invokes) + 10**18, "")
    for position in range(len(candidates) - 1, -1, -1):
        d = candidates[position][1]
        best = min(best, (d.end, d.id))
        suffix_min[position] = best
    for d in firsts:
        record = publishes.get((queue, d.id))
        if record is None or record.first_ok is None:
            continue
        position = bisect.bisect_right(invokes, record.first_ok)
        if position < len(candidates) and suffix_min[position][0] < d.start:
            other = suffix_min[position][1]
            reported.add(d.id)
            findings.add(
                "reordered",
                mode,
                stream_key,
                d.id,
                f"confirmed before {other!r} was published, but first-delivered after it",
            )

    # (2) Broker sequence numbers of first deliveries that do not overlap in time,
    # within one incarnation of the queue (a queue made again numbers from 1).
    incarnations: dict[int | None, list[_Delivery]] = {}
    for d in firsts:
        if d.seq is not None:
            incarnations.setdefault(d.inc, []).append(d)
    for inc in sorted(incarnations, key=lambda i: -1 if i is None else i):
        with_seq = sorted(incarnations[inc], key=lambda d: d.end)
        ends = [d.end for d in with_seq]
        prefix_max: list[tuple[int, str]] = []
        top = (-1, "")
        for d in with_seq:
            assert d.seq is not None
            top = max(top, (d.seq, d.id))
            prefix_max.append(top)
        for d in with_seq:
            assert d.seq is not None
            position = bisect.bisect_left(ends, d.start)
            if position and prefix_max[position - 1][0] > d.seq and d.id not in reported:
                reported.add(d.id)
                earlier = prefix_max[position - 1]
                findings.add(
                    "reordered",
                    mode,
                    stream_key,
                    d.id,
                    f"first delivery of sequence {d.seq} after that of "
                    f"{earlier[0]} ({earlier[1]!r}) had completed",
                )

    # (3) One batch in sequence order.
    first_ids = {id(d) for d in firsts}
    for batch in stream.batches:
        last = -1
        for d in batch:
            if id(d) not in first_ids or d.seq is None:
                continue
            if d.seq < last and d.id not in reported:
                reported.add(d.id)
                findings.add(
                    "reordered", mode, stream_key, d.id, f"sequence {d.seq} after {last} in a batch"
                )
            last = max(last, d.seq)


def _attempt_regression(deliveries: list[_Delivery]) -> str | None:
    """A delivery completed before another began, yet the later one's attempt number is
    not higher (compared within one stored copy: same sequence, when both have one)."""
    ordered = sorted(deliveries, key=lambda d: d.end)
    for position, earlier in enumerate(ordered):
        if earlier.attempt is None:
            continue
        for later in ordered[position + 1 :]:
            if (
                later.attempt is not None
                and later.start > earlier.end
                and later.attempt <= earlier.attempt
                and (later.seq is None or earlier.seq is None or later.seq == earlier.seq)
            ):
                return f"attempt {later.attempt} after attempt {earlier.attempt}"
    return None


def check_queue(history: Sequence[Op], *, max_examples: int = 10) -> QueueCheckResult:
    """Check a queue history; see the module docstring for what is found and how it
    is attributed to delivery modes. Raises HistoryFormatError for a malformed one."""
    operations = list(pair_operations(history))
    publishes, streams, drops = _gather(operations)
    findings = _Findings(max_examples)
    mode_streams: dict[str, int] = dict.fromkeys(MODES, 0)
    mode_confirmed: dict[str, int] = dict.fromkeys(MODES, 0)
    mode_delivered: dict[str, int] = dict.fromkeys(MODES, 0)

    confirmed_by_queue: dict[str, list[str]] = {}
    for (queue, message_id), record in publishes.items():
        if record.first_ok is not None:
            confirmed_by_queue.setdefault(queue, []).append(message_id)

    for stream_key in sorted(streams):
        stream = streams[stream_key]
        queue = stream_key[0]
        mode = _stream_mode(stream.modes)
        mode_streams[mode] += 1
        confirmed = confirmed_by_queue.get(queue, [])
        mode_confirmed[mode] += len(confirmed)

        # Delivered ids, attributed to the mode they were delivered in.
        for message_id, deliveries in stream.deliveries.items():
            modes = {d.mode for d in deliveries}
            delivered_mode = AT_MOST_ONCE if AT_MOST_ONCE in modes else _stream_mode(modes)
            mode_delivered[delivered_mode] += 1
            published = publishes.get((queue, message_id))
            if published is None or published.failures == published.attempts:
                why = "never published" if published is None else "every publish of it failed"
                findings.add("unexpected", mode, stream_key, message_id, f"delivered; {why}")
            if len(deliveries) > 1:
                findings.add(
                    "duplicated",
                    delivered_mode,
                    stream_key,
                    message_id,
                    f"delivered {len(deliveries)} times (ops at "
                    f"{', '.join(str(d.start) for d in deliveries[:5])})",
                )
            sequences = sorted({d.seq for d in deliveries if d.seq is not None})
            if len(sequences) > 1:
                findings.add(
                    "copy", delivered_mode, stream_key, message_id, f"stored as {sequences}"
                )
            late = next(
                (
                    (d, end)
                    for d in deliveries
                    for end, seq in stream.acked.get(message_id, ())
                    if d.start > end and (seq is None or d.seq is None or seq == d.seq)
                ),
                None,
            )
            if late is not None:
                findings.add(
                    "redelivered_after_ack",
                    delivered_mode,
                    stream_key,
                    message_id,
                    f"delivered by the op at {late[0].start}, after the ack ending at {late[1]}",
                )
            regression = _attempt_regression(deliveries)
            if regression is not None:
                findings.add(
                    "attempt_regression", delivered_mode, stream_key, message_id, regression
                )

        for message_id, effect_modes in stream.effects_ok.items():
            if (queue, message_id) not in publishes:
                findings.add(
                    "unexpected", mode, stream_key, message_id, "processed, never published"
                )
            elif message_id not in stream.deliveries:
                findings.add(
                    "unexpected", mode, stream_key, message_id, "processed, never delivered"
                )
            if len(effect_modes) > 1:
                effect_mode = AT_MOST_ONCE if AT_MOST_ONCE in effect_modes else effect_modes[-1]
                findings.add(
                    "duplicated_effect",
                    effect_mode,
                    stream_key,
                    message_id,
                    f"processed {len(effect_modes)} times",
                )

        loss_mode = mode
        if stream.uncertain_amo or mode == AT_MOST_ONCE:
            loss_mode = AT_MOST_ONCE
        dropped_until = max(drops.get(queue, ()), default=None)
        for message_id in confirmed:
            if message_id in stream.dead:
                continue
            if dropped_until is not None:
                first_invoke = publishes[(queue, message_id)].first_invoke
                if first_invoke is not None and first_invoke < dropped_until:
                    # It may have been thrown away with the queue's messages.
                    continue
            if message_id not in stream.deliveries:
                findings.add(
                    "lost", loss_mode, stream_key, message_id, "confirmed, never delivered"
                )
            elif (
                stream.records_effects
                and message_id not in stream.effects_ok
                and message_id not in stream.effects_maybe
            ):
                findings.add(
                    "lost", loss_mode, stream_key, message_id, "delivered, never processed"
                )

        _check_order(stream_key, stream, mode, publishes, findings)

    by_mode = {
        mode: ModeCounts(
            streams=mode_streams[mode],
            confirmed=mode_confirmed[mode],
            delivered=mode_delivered[mode],
            **findings.by_mode[mode],
        )
        for mode in MODES
    }
    attempted = len(publishes)
    confirmed_total = sum(1 for r in publishes.values() if r.first_ok is not None)
    failed = sum(1 for r in publishes.values() if r.failures == r.attempts)
    return QueueCheckResult(
        attempted=attempted,
        confirmed=confirmed_total,
        failed=failed,
        indeterminate=attempted - confirmed_total - failed,
        by_mode=by_mode,
        counts=dict(findings.counts),
        findings=tuple(findings.examples),
    )
