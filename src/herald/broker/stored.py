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
from dataclasses import dataclass, field
from typing import TypeAlias

from herald.errors import InvariantError, UsageError

from .codec import decode_publish
from .model import Message

__all__ = ["EntryReader", "MessageRef"]

#: The data of the committed log entry at an index. Raises CompactedError (a
#: StorageError) if this node no longer holds it.
EntryReader: TypeAlias = Callable[[int], bytes]


def _no_log(index: int) -> bytes:
    raise UsageError("this broker was given no log to read message bodies from")


@dataclass(frozen=True, slots=True)
class MessageRef:
    """A retained message: its queue sequence and where its publish is in the log."""

    sequence: int
    index: int  # the log entry that published it
    offset: int  # where its Publish command starts in the entry's data
    length: int  # and how long it is
    publish_time: int
    reader: EntryReader = field(default=_no_log, compare=False, repr=False)

    def load(self) -> Message:
        """The message, read back from the log. Raises what the reader raises."""
        data = self.reader(self.index)
        end = self.offset + self.length
        if end > len(data):
            raise InvariantError(
                f"message {self.sequence}: entry {self.index} holds {len(data)} bytes, "
                f"not the {end} its publish needs"
            )
        publish = decode_publish(data[self.offset : end] if self.length != len(data) else data)
        return Message(
            self.sequence,
            publish.body,
            publish.headers,
            publish.message_id,
            self.publish_time,
            publish.producer,
        )
