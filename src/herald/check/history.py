"""Jepsen-style histories of queue operations, and their JSON Lines form.

A history is the list of operations clients performed, as they saw them. Each
operation appears twice: once when a process *invokes* it, once when it
*completes*:

- ``ok``: it happened;
- ``fail``: it surely did not happen (the broker refused it before any effect);
- ``info``: unknown -- it may or may not have happened (a timeout, a crash, a
  lost connection). A process whose invocation never completes (the history
  ends first) is treated as ``info``.

A process performs one operation at a time: a completion completes the
process's latest invocation. The order of the operations in the history is
real-time order (what the checkers use); ``time`` is informational.

The file format
---------------

One JSON object per line (JSON Lines, UTF-8)::

    {"index": 0, "process": 3, "type": "invoke", "f": "publish",
     "value": {"queue": "q", "id": "c3-1"}, "time": 1200}

(one line in the file; wrapped here).

- ``index`` (int, optional): position in the history; when absent it is the
  line's position among the non-blank lines. Blank lines are ignored.
- ``process`` (int or string): who did it, e.g. a client number.
- ``type``: ``invoke``, ``ok``, ``fail`` or ``info``.
- ``f`` (string): the operation; the queue checker knows the ones below and
  ignores others (so a history may also carry, say, nemesis operations).
- ``value`` (object): the operation's arguments on ``invoke``, its results on
  completion. A completion's value is merged over its invocation's, so a
  completion need only carry what it learned.
- ``time`` (int, optional, default 0): when, in microseconds on any clock.

Operations of the queue checker (``value`` fields; ``?`` means optional):

``publish``
    ``queue``, ``id``: the message's identity, unique per queue across the
    whole run (a workload derives it from the body or uses the message id; a
    retry of the same message reuses it). ``producer?``, ``seq?`` (the broker's
    sequence number, on ``ok``), ``duplicate?`` (the receipt's flag, on ``ok``).
``deliver``
    ``queue``, ``group`` (optional for brokers without groups; default ``""``),
    ``mode``: ``at_most_once``, ``at_least_once`` (default) or
    ``effectively_once`` (at-least-once delivery whose consumer deduplicates
    its side effects). On ``ok``: ``messages``, a list of objects with ``id``
    and, when the broker reports them, ``seq``, ``attempt``, ``redelivery``
    (bool) and ``token``. An empty list is a poll that found nothing.
``ack``
    ``queue``, ``group``, ``id``, ``seq?``, ``token?``. ``ok``: the broker
    settled the message in that group.
``effect``
    ``queue``, ``group``, ``id``, ``mode``: the consumer's side effect of
    processing the message (for effectively-once: the inbox transaction that
    records "done" together with the effect). ``ok``: it took effect;
    ``info``: it may have.
``dead_letter``
    ``queue``, ``group``, and ``id`` or ``ids`` (a list): the message was found
    in the group's dead letters (typically when the workload drains at the end).

This module only parses and prints; it never opens a file. Pass it the lines
of a file you opened (``read_history(open(path))``) or a stream to write to.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TextIO, TypeAlias

from herald.errors import HistoryFormatError

__all__ = [
    "COMPLETIONS",
    "TYPES",
    "Json",
    "Op",
    "Operation",
    "Recorder",
    "dumps_history",
    "loads_history",
    "op_from_json",
    "op_to_json",
    "pair_operations",
    "read_history",
    "write_history",
]

Json: TypeAlias = bool | int | float | str | list["Json"] | dict[str, "Json"] | None

TYPES = ("invoke", "ok", "fail", "info")
COMPLETIONS = ("ok", "fail", "info")


@dataclass(frozen=True, slots=True)
class Op:
    """One line of a history."""

    process: int | str
    type: str
    f: str
    value: Mapping[str, Json] = field(default_factory=dict)
    time: int = 0
    index: int = -1

    def __post_init__(self) -> None:
        if self.type not in TYPES:
            raise HistoryFormatError(0, f"type must be one of {TYPES}, not {self.type!r}")


def op_to_json(op: Op) -> str:
    """One line of JSON (no newline). Keys are written in a fixed order."""
    record: dict[str, Json] = {
        "index": op.index,
        "process": op.process,
        "type": op.type,
        "f": op.f,
        "value": dict(op.value),
        "time": op.time,
    }
    return json.dumps(record, separators=(",", ":"), ensure_ascii=False)


def op_from_json(line: str, index: int, line_number: int = 0) -> Op:
    """Parse one line; ``index`` is used when the line has none. Raises HistoryFormatError."""
    try:
        record = json.loads(line)
    except ValueError as error:
        raise HistoryFormatError(line_number, f"not JSON: {error}") from None
    if not isinstance(record, dict):
        raise HistoryFormatError(line_number, "an operation must be a JSON object")
    process = record.get("process")
    if not isinstance(process, (int, str)) or isinstance(process, bool):
        raise HistoryFormatError(line_number, "process must be an integer or a string")
    op_type = record.get("type")
    if op_type not in TYPES:
        raise HistoryFormatError(line_number, f"type must be one of {TYPES}, not {op_type!r}")
    f = record.get("f")
    if not isinstance(f, str):
        raise HistoryFormatError(line_number, "f must be a string")
    value = record.get("value", {})
    if value is None:
        value = {}
    if not isinstance(value, dict):
        raise HistoryFormatError(line_number, "value must be a JSON object")
    time = record.get("time", 0)
    if not isinstance(time, int) or isinstance(time, bool):
        raise HistoryFormatError(line_number, "time must be an integer")
    position = record.get("index", index)
    if not isinstance(position, int) or isinstance(position, bool):
        raise HistoryFormatError(line_number, "index must be an integer")
    return Op(process, op_type, f, value, time, position)


def read_history(lines: Iterable[str]) -> list[Op]:
    """Parse a JSON Lines history (an open file, a list of lines). Raises HistoryFormatError."""
    ops: list[Op] = []
    for line_number, line in enumerate(lines, start=1):
        if line.strip():
            ops.append(op_from_json(line, len(ops), line_number))
    return ops


def loads_history(text: str) -> list[Op]:
    return read_history(text.splitlines())


def write_history(ops: Iterable[Op], out: TextIO) -> None:
    """Write ``ops`` as JSON Lines to an open text stream."""
    for op in ops:
        out.write(op_to_json(op))
        out.write("\n")


def dumps_history(ops: Iterable[Op]) -> str:
    return "".join(op_to_json(op) + "\n" for op in ops)


class Recorder:
    """Builds a history as a workload runs: indexes ops in the order they are recorded."""

    def __init__(self) -> None:
        self.ops: list[Op] = []

    def record(
        self, process: int | str, op_type: str, f: str, value: Mapping[str, Json], time: int = 0
    ) -> Op:
        op = Op(process, op_type, f, dict(value), time, len(self.ops))
        self.ops.append(op)
        return op

    def invoke(self, process: int | str, f: str, value: Mapping[str, Json], time: int = 0) -> Op:
        return self.record(process, "invoke", f, value, time)

    def ok(self, process: int | str, f: str, value: Mapping[str, Json], time: int = 0) -> Op:
        return self.record(process, "ok", f, value, time)

    def fail(self, process: int | str, f: str, value: Mapping[str, Json], time: int = 0) -> Op:
        return self.record(process, "fail", f, value, time)

    def info(self, process: int | str, f: str, value: Mapping[str, Json], time: int = 0) -> Op:
        return self.record(process, "info", f, value, time)


@dataclass(frozen=True, slots=True)
class Operation:
    """An invocation with its completion (None: never completed, which means info).

    ``start`` and ``end`` are positions in the history (``end`` is the history's
    length for an operation that never completed): real time as the checkers see it.
    """

    process: int | str
    f: str
    status: str  # ok, fail or info
    value: Mapping[str, Json]  # the completion's value merged over the invocation's
    start: int
    end: int


def pair_operations(history: Sequence[Op]) -> Iterator[Operation]:
    """Each invocation with its completion, in order of invocation.

    A completion without an invocation (some recorders log only outcomes) stands
    alone, starting and ending where it is. Raises HistoryFormatError when a
    process invokes while its previous operation is still open, or completes a
    different ``f`` than it invoked.
    """
    open_by_process: dict[int | str, tuple[int, Op]] = {}
    done: list[tuple[int, Operation]] = []
    for position, op in enumerate(history):
        if op.type == "invoke":
            if op.process in open_by_process:
                raise HistoryFormatError(
                    0, f"process {op.process!r} invokes at op {op.index} with an op still open"
                )
            open_by_process[op.process] = (position, op)
            continue
        opened = open_by_process.pop(op.process, None)
        if opened is None:
            done.append(
                (position, Operation(op.process, op.f, op.type, op.value, position, position))
            )
            continue
        start, invocation = opened
        if invocation.f != op.f:
            raise HistoryFormatError(
                0, f"process {op.process!r} invoked {invocation.f!r} but completed {op.f!r}"
            )
        value = {**invocation.value, **op.value}
        done.append((start, Operation(op.process, op.f, op.type, value, start, position)))
    end = len(history)
    for start, invocation in open_by_process.values():
        done.append(
            (
                start,
                Operation(invocation.process, invocation.f, "info", invocation.value, start, end),
            )
        )
    done.sort(key=lambda item: item[0])
    for _, operation in done:
        yield operation
