"""What the client core hands out and takes back: operations, calls and IO actions.

An :class:`Op` is the caller's handle on one operation: it completes once, with
a value or a :class:`~herald.errors.HeraldError`. A :class:`Call` is an op that
travels as one request: its encoded bytes (kept, so a resend sends exactly the
same request), its deadline, whether it may be resent, and what to do with each
kind of answer. The actions (:class:`Dial`, :class:`Send`, :class:`Close`) are
the core's only way to touch the world.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeAlias, TypeVar

import msgspec

from herald.errors import (
    ConnectionClosedError,
    HeraldError,
    MessageTooLargeError,
    RequestTimeoutError,
    UsageError,
)
from herald.wire.protocol import Publish

__all__ = [
    "Action",
    "Call",
    "Close",
    "Dial",
    "Op",
    "Send",
    "ValueCall",
    "encode",
    "frame_limit_error",
]

T = TypeVar("T")

_encoder = msgspec.msgpack.Encoder()
#: One request as MessagePack: the bytes a frame's list is made of.
encode: Callable[[object], bytes] = _encoder.encode


# -- actions --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Dial:
    """Open a connection to ``address`` (``host:port``). Report exactly one of
    :meth:`ClientCore.connected` or :meth:`ClientCore.dial_failed`."""

    address: str


@dataclass(frozen=True, slots=True)
class Send:
    """Write ``data`` (whole frames) on the current connection, in order."""

    data: bytes


@dataclass(frozen=True, slots=True)
class Close:
    """Close the current connection (or abandon the dial in progress). Report
    nothing more about that connection."""

    reason: str = ""


Action: TypeAlias = Dial | Send | Close


# -- operations -----------------------------------------------------------------------------


class Op(Generic[T]):
    """One operation: ``done`` once, with ``value`` or ``error``.

    ``value`` is the result once the op is done without an error (it is None
    before, and after a failure; it is typed as the result for the callers'
    convenience: look at ``error`` first, or use :meth:`result`). ``on_done``
    (set by the caller) is called once, synchronously, when the op completes --
    never if it was already done when the core returned it, so look at ``done``
    after setting it. ``tag`` is for the caller (the asyncio shell keeps the
    op's future there).
    """

    __slots__ = ("_listeners", "done", "error", "on_done", "tag", "value")

    def __init__(self) -> None:
        self.done = False
        self.value: T = None  # type: ignore[assignment]  # (see the class docstring)
        self.error: HeraldError | None = None
        self.on_done: Callable[[Op[T]], None] | None = None
        self.tag: object = None
        self._listeners: list[Callable[[Op[T]], None]] | None = None

    def succeed(self, value: T) -> None:
        """Complete with ``value`` (nothing happens if already done)."""
        if self.done:
            return
        self.done = True
        self.value = value
        callback = self.on_done
        if callback is not None:
            callback(self)
        if self._listeners is not None:
            self._call_listeners()

    def fail(self, error: HeraldError) -> None:
        """Complete with ``error`` (nothing happens if already done)."""
        if self.done:
            return
        self.done = True
        self.error = error
        callback = self.on_done
        if callback is not None:
            callback(self)
        if self._listeners is not None:
            self._call_listeners()

    def _call_listeners(self) -> None:
        listeners = self._listeners
        if listeners is not None:
            self._listeners = None
            for listener in listeners:
                listener(self)

    def add_listener(self, listener: Callable[[Op[T]], None]) -> None:
        """Call ``listener(op)`` when the op completes (at once if it is done). For
        the core's own bookkeeping; callers use ``on_done``."""
        if self.done:
            listener(self)
        elif self._listeners is None:
            self._listeners = [listener]
        else:
            self._listeners.append(listener)

    def result(self) -> T:
        """The value; raises the error. UsageError if the op is not done yet."""
        if not self.done:
            raise UsageError("the operation is not done yet")
        if self.error is not None:
            raise self.error
        return self.value

    def __repr__(self) -> str:
        state = "pending" if not self.done else ("failed" if self.error else "done")
        return f"<{type(self).__name__} {state}>"


def done_op(value: T) -> Op[T]:
    """An op completed with ``value``."""
    op: Op[T] = Op()
    op.done = True
    op.value = value
    return op


def failed_op(error: HeraldError) -> Op[Any]:
    """An op completed with ``error``."""
    op: Op[Any] = Op()
    op.done = True
    op.error = error
    return op


class Call(Op[Any]):
    """An op that is one request on the wire, and what to do with its answer.

    ``retry``: the request may be sent again after a lost connection (it is
    idempotent, or its retry's answer is read knowing it is a retry:
    ``lost_sends`` counts the sends lost with their connection). Whether it is
    on the wire now is the core's to say (:meth:`ClientCore.is_sent`).
    ``suspect``: it was on the wire when the server closed the connection for
    a frame it could not read (see :class:`~herald.client.core.ClientCore`).
    Subclasses override the four outcomes.
    """

    # Slots, each set in every __init__ (subclasses spell it out rather than
    # chain: a call is made per request, and slot reads are the fastest).
    __slots__ = (
        "data",
        "deadline",
        "forgotten",
        "id",
        "lost_sends",
        "request",
        "retry",
        "suspect",
    )

    def __init__(self, request: Any, deadline: int, retry: bool) -> None:
        self.done = False
        self.value = None
        self.error = None
        self.on_done = None
        self.tag = None
        self._listeners = None
        self.request = request
        self.id: int = request.id
        #: The request, encoded (a resend sends these very bytes).
        self.data: bytes = encode(request)
        self.deadline = deadline
        self.retry = retry
        #: Sends of it lost with their connection (so a later answer may be to a retry).
        self.lost_sends = 0
        self.suspect = False
        #: The core stopped waiting for it (expired): if it waits for a frame, it stays out.
        self.forgotten = False

    def resolve(self, value: Any) -> None:
        """The server carried the request out; ``value`` is the reply's value."""
        self.succeed(value)

    def reject(self, error: HeraldError) -> None:
        """The server refused the request (or it can no longer complete)."""
        self.fail(error)

    def expire(self, timeout_error: RequestTimeoutError) -> bool:
        """The deadline passed. Return True to forget the call (a late reply is
        ignored), False to keep it pending (its deadline is pushed back)."""
        self.reject(timeout_error)
        return True

    def lost(self, error: ConnectionClosedError) -> None:
        """The call can no longer complete: it was sent and may not be repeated,
        and the connection closed; or the client closed."""
        self.reject(error)


class ValueCall(Call):
    """A call whose reply value is turned into the result by ``convert``."""

    __slots__ = ("convert",)

    def __init__(
        self,
        request: Any,
        deadline: int,
        retry: bool,
        convert: Callable[[Any], Any] | None = None,
    ) -> None:
        super().__init__(request, deadline, retry)
        self.convert = convert

    def resolve(self, value: Any) -> None:
        convert = self.convert
        if convert is None:
            self.succeed(value)
            return
        try:
            result = convert(value)
        except HeraldError as error:
            self.fail(error)
        else:
            self.succeed(result)


def frame_limit_error(request: object, size: int, limit: int) -> MessageTooLargeError:
    """The error of a request that cannot fit in one frame of ``limit`` bytes."""
    queue = getattr(request, "queue", "")
    if isinstance(request, Publish):
        what = f"a publish to {queue!r}"
    else:
        what = f"a {type(request).__name__} request"
    error = MessageTooLargeError.__new__(MessageTooLargeError)
    Exception.__init__(
        error,
        f"{what} encodes to {size} bytes, more than the server's frame limit of {limit} "
        "bytes (its max_frame, not the queue's max_message_bytes); it was not sent",
    )
    error.queue = queue
    error.size = size
    error.limit = limit
    return error
