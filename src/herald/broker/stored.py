"""Where a retained message is: its publish command in the log, read back when someone looks.

The broker keeps no bodies. A retained message is known by the log entry that
published it and the place of its Publish command inside that entry (the whole
entry, or one command of a batch); :meth:`MessageRef.load` reads the entry back
through the broker's :data:`EntryReader` and decodes that command alone. The
state machine never loads a body while applying, so a replica pays nothing for
messages it never hands out; the node answering a client loads what it sends.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeAlias

from herald.errors import InvariantError, UsageError

from .codec import publish_fields
from .model import Message

__all__ = ["EntryReader", "MessageRef"]

#: The data of the committed log entry at an index. Raises CompactedError (a
#: StorageError) if this node no longer holds it.
EntryReader: TypeAlias = Callable[[int], bytes]


def _no_log(index: int) -> bytes:
    raise UsageError("this broker was given no log to read message bodies from")


class MessageRef:
    """A retained message: its queue sequence and where its publish is in the log.

    Immutable by contract (a plain slotted class, not a frozen dataclass: one is
    made per delivery, on every replica, so its construction is on the hot path).
    Two refs are equal when they name the same place; the reader does not count.
    """

    __slots__ = ("index", "length", "offset", "publish_time", "reader", "sequence")

    def __init__(
        self,
        sequence: int,
        index: int,
        offset: int,
        length: int,
        publish_time: int,
        reader: EntryReader = _no_log,
    ) -> None:
        self.sequence = sequence
        self.index = index  # the log entry that published it
        self.offset = offset  # where its Publish command starts in the entry's data
        self.length = length  # and how long it is
        self.publish_time = publish_time
        self.reader = reader

    def _key(self) -> tuple[int, int, int, int, int]:
        return (self.sequence, self.index, self.offset, self.length, self.publish_time)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, MessageRef) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return (
            f"MessageRef(sequence={self.sequence}, index={self.index}, "
            f"offset={self.offset}, length={self.length}, publish_time={self.publish_time})"
        )

    def moved(self, index: int, offset: int, length: int) -> MessageRef:
        """The same message, its publish now at ``index`` (a Carry copied it there)."""
        return MessageRef(self.sequence, index, offset, length, self.publish_time, self.reader)

    def load(self) -> Message:
        """The message, read back from the log. Raises what the reader raises."""
        data = self.reader(self.index)
        end = self.offset + self.length
        if end > len(data):
            raise InvariantError(
                f"message {self.sequence}: entry {self.index} holds {len(data)} bytes, "
                f"not the {end} its publish needs"
            )
        body, headers, message_id, producer = publish_fields(data, self.offset, self.length)
        return Message(self.sequence, body, headers, message_id, self.publish_time, producer)
