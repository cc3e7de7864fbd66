"""One round of the Outbox relay, sans-IO: from per-row publish outcomes to what each row becomes.

A round reads some pending rows, publishes them, and then settles each row by
what its own publish did -- never by what the rest of the batch did:

1. **confirmed** (the broker stored it, or recognised its key: ``duplicate``):
   the row is marked sent, whatever happened to the others;
2. **refused for good** (an error that retrying the same publish cannot change,
   :func:`is_permanent_refusal`): the row is *set aside* with the error's class
   and message. It is no longer picked up, so it cannot block the rows behind
   it; an operator lists it, fixes the cause and requeues it;
3. anything else -- a transient failure (overload, a full queue, no leader,
   a timeout, a dropped connection, an unknown outcome), or no outcome at all --
   leaves the row **pending**: a later round publishes it again with the same
   idempotency key, which the broker deduplicates.

Rows the Outbox would refuse to write today (see :func:`row_problem`; rows
written by older versions may have them) are set aside before publishing, as
``UsageError``: the client would refuse them on every attempt.

This module holds no clock, no database and no event loop, so the asyncio
relay (:class:`herald.processing.OutboxRelay`) and a deterministic simulator
drive the same decisions with their own publish paths:

    relay_round = RelayRound(outbox.pending(100))
    for message in relay_round.to_publish:
        ...  # publish(message.queue, message.body, headers=..., key=message.key)
        relay_round.confirmed(message.id, duplicate=receipt.duplicate)  # or
        relay_round.failed(message.id, error)
    outbox.record(relay_round.decide())

Which refusals are permanent
----------------------------

:class:`~herald.errors.UnknownQueueError`,
:class:`~herald.errors.MessageTooLargeError` and
:class:`~herald.errors.InvalidCommandError` (a field of *this* message the broker
will not take, and its subclasses) are. Not :class:`~herald.errors.MalformedCommandError`:
it says a log entry did not decode, which is about the nodes (a version skew
in a rolling upgrade, a bug), not about the message, and would set aside every
row while it lasts. Not :class:`~herald.errors.UsageError` either: the client
raises it for malformed arguments, but also for a caller's mistake that has
nothing to do with the row (a client not started, or already closed while the
relay still runs), and setting rows aside for those would quietly move a whole
outbox out of the way. The rows that *would* earn a UsageError are refused when
written and caught by :func:`row_problem`, so a UsageError left at publish time
is the caller's bug: it is raised, and the rows wait. Everything else is
transient. A publisher for another broker passes its own ``is_permanent``.

Set-aside rows break the order of their queue: the rows behind them go on.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, final

from herald.errors import (
    InvalidCommandError,
    MalformedCommandError,
    MessageTooLargeError,
    UnknownQueueError,
    UsageError,
)

if TYPE_CHECKING:
    from .outbox import OutboxMessage

__all__ = [
    "MAX_QUEUE_NAME",
    "PERMANENT_REFUSALS",
    "RelayRound",
    "RoundDecision",
    "SetAside",
    "is_permanent_refusal",
    "row_problem",
]

#: Refusals that retrying the same publish cannot change: the row is set aside.
PERMANENT_REFUSALS: Final[tuple[type[BaseException], ...]] = (
    UnknownQueueError,
    MessageTooLargeError,
    InvalidCommandError,
)
#: Subclasses of the above that describe the cluster rather than the message.
_NOT_ABOUT_THE_MESSAGE: Final[tuple[type[BaseException], ...]] = (MalformedCommandError,)

#: The broker's longest queue name (``herald.broker.commands.MAX_NAME``), in characters.
MAX_QUEUE_NAME: Final = 255


def is_permanent_refusal(error: BaseException) -> bool:
    """Whether ``error``, the outcome of publishing one row, will be the same on every retry."""
    return isinstance(error, PERMANENT_REFUSALS) and not isinstance(error, _NOT_ABOUT_THE_MESSAGE)


def row_problem(queue: str, headers: Mapping[str, str]) -> str | None:
    """Why a message with this queue and these headers cannot be published (None: it can).

    The Outbox refuses to write such a message (UsageError); the relay sets
    aside such rows written by older versions instead of retrying them forever.
    """
    if not queue or len(queue) > MAX_QUEUE_NAME or not queue.isprintable():
        return f"queue name must be 1..{MAX_QUEUE_NAME} printable characters: {queue!r}"
    for name, value in headers.items():
        if not name or "=" in name or "\n" in name:
            return f"header name {name!r} must be non-empty, without '=' or newlines"
        if "\n" in value:
            return f"header value of {name!r} must not contain newlines"
    return None


@dataclass(frozen=True, slots=True)
class SetAside:
    """A row refused for good: ``error`` is the error's class name, ``reason`` its message."""

    message: OutboxMessage
    error: str
    reason: str

    @property
    def row(self) -> int:
        return self.message.id


@dataclass(frozen=True, slots=True)
class RoundDecision:
    """What one round makes of its rows; every row read is in exactly one of
    ``sent``, ``set_aside`` and ``pending``, each in row order."""

    #: Confirmed by the broker: mark sent.
    sent: tuple[int, ...] = ()
    #: How many of ``sent`` the broker recognised by their key (published before).
    duplicates: int = 0
    #: Refused for good: record why, and stop picking them up.
    set_aside: tuple[SetAside, ...] = ()
    #: Failed transiently, or no outcome: publish again later, with the same key.
    pending: tuple[int, ...] = ()
    #: The transient failures, in row order (the relay raises the first).
    errors: tuple[BaseException, ...] = ()

    @property
    def progress(self) -> bool:
        """Whether the round moved any row out of the pending set."""
        return bool(self.sent or self.set_aside)


@dataclass(frozen=True, slots=True)
class _Confirmed:
    duplicate: bool


@dataclass(frozen=True, slots=True)
class _Failed:
    error: BaseException


@final
class RelayRound:
    """The rows of one round and the outcome of each row's publish.

    Construct it with the rows read (oldest first), publish each of
    :attr:`to_publish`, report each outcome with :meth:`confirmed` or
    :meth:`failed`, then :meth:`decide`. Raises UsageError when a row is given
    twice, or an outcome is reported for a row not to publish or reported twice.
    """

    __slots__ = ("_is_permanent", "_messages", "_outcomes", "_refused", "to_publish")

    def __init__(
        self,
        messages: Sequence[OutboxMessage],
        *,
        is_permanent: Callable[[BaseException], bool] = is_permanent_refusal,
    ) -> None:
        self._is_permanent = is_permanent
        self._messages: dict[int, OutboxMessage] = {}
        self._refused: dict[int, SetAside] = {}
        self._outcomes: dict[int, _Confirmed | _Failed] = {}
        for message in messages:
            if message.id in self._messages:
                raise UsageError(f"outbox row {message.id} given twice to one relay round")
            self._messages[message.id] = message
            problem = row_problem(message.queue, message.headers)
            if problem is not None:
                self._refused[message.id] = SetAside(message, UsageError.__name__, problem)
        #: The rows to publish, in row order (those that cannot be are already set aside).
        self.to_publish: tuple[OutboxMessage, ...] = tuple(
            message for message in self._messages.values() if message.id not in self._refused
        )

    def confirmed(self, row: int, *, duplicate: bool = False) -> None:
        """The broker confirmed row ``row`` (``duplicate``: it recognised the key)."""
        self._report(row, _Confirmed(duplicate))

    def failed(self, row: int, error: BaseException) -> None:
        """Publishing row ``row`` raised ``error``."""
        self._report(row, _Failed(error))

    def _report(self, row: int, outcome: _Confirmed | _Failed) -> None:
        if row not in self._messages or row in self._refused:
            raise UsageError(f"outbox row {row} is not to be published in this round")
        if row in self._outcomes:
            raise UsageError(f"outbox row {row} already has an outcome in this round")
        self._outcomes[row] = outcome

    def decide(self) -> RoundDecision:
        """What becomes of each row: sent, set aside, or pending (no outcome: pending)."""
        sent: list[int] = []
        set_aside: list[SetAside] = []
        pending: list[int] = []
        errors: list[BaseException] = []
        duplicates = 0
        for row, message in self._messages.items():
            refused = self._refused.get(row)
            if refused is not None:
                set_aside.append(refused)
                continue
            outcome = self._outcomes.get(row)
            if isinstance(outcome, _Confirmed):
                sent.append(row)
                duplicates += outcome.duplicate
            elif isinstance(outcome, _Failed) and self._is_permanent(outcome.error):
                error = outcome.error
                set_aside.append(SetAside(message, type(error).__name__, str(error)))
            else:
                pending.append(row)
                if outcome is not None:
                    errors.append(outcome.error)
        return RoundDecision(
            tuple(sent), duplicates, tuple(set_aside), tuple(pending), tuple(errors)
        )
