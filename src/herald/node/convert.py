"""Wire requests to broker commands, and broker results to reply values.

Pure functions, no IO: the shapes of every reply ``value`` are the ones the
request docstrings of :mod:`herald.wire.protocol` promise.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from herald import broker as b
from herald.broker.model import DeliveryRecord
from herald.errors import InvalidCommandError, InvalidOptionsError
from herald.wire import protocol as w

__all__ = [
    "WRITE_REQUESTS",
    "command_for",
    "dead_letter_wire",
    "delivery_wire",
    "error_info",
    "peeked_wire",
    "reply_value",
]

_DURABLE: Final = b.Durability.DURABLE.value
_MODES: Final = {mode.value: mode for mode in b.DeliveryMode}
_OPTION_NAMES: Final = frozenset(b.QueueOptions.__dataclass_fields__)
#: Longest long-poll wait a Deliver may ask for (the broker's longest lease).
MAX_WAIT: Final = 12 * b.HOUR


def error_info(error: BaseException, leader_address: str = "") -> w.ErrorInfo:
    """An error as the wire carries it: its class name (from herald.errors) and text."""
    return w.ErrorInfo(type(error).__name__, str(error), leader_address)


# -- requests to commands ------------------------------------------------------------------


def _publish(r: w.Publish, now: int) -> b.Command:
    return b.Publish(
        r.queue,
        r.body,
        tuple(r.headers),
        r.message_id,
        r.producer,
        r.sequence,
        time=now,
    )


def _subscribe(r: w.Subscribe, now: int) -> b.Command:
    mode = _MODES.get(r.mode)
    if mode is None:
        raise InvalidCommandError(
            f"unknown delivery mode {r.mode!r} (choose {', '.join(sorted(_MODES))})"
        )
    return b.Subscribe(r.queue, r.group, r.consumer, mode, r.session_timeout, time=now)


def _deliver(r: w.Deliver, now: int) -> b.Command:
    if not 0 <= r.wait <= MAX_WAIT:
        raise InvalidCommandError(f"wait must be in 0..{MAX_WAIT} microseconds, not {r.wait}")
    return b.Deliver(r.queue, r.group, r.consumer, r.max_messages, r.lease, time=now)


def _ack(r: w.Ack, now: int) -> b.Command:
    return b.Ack(r.queue, r.group, r.sequence, r.token, time=now)


def _nack(r: w.Nack, now: int) -> b.Command:
    return b.Nack(r.queue, r.group, r.sequence, r.token, r.delay, time=now)


def _extend(r: w.Extend, now: int) -> b.Command:
    return b.Extend(r.queue, r.group, r.sequence, r.token, r.duration, time=now)


def _reject(r: w.Reject, now: int) -> b.Command:
    return b.Reject(r.queue, r.group, r.sequence, r.token, time=now)


def _leave(r: w.Leave, now: int) -> b.Command:
    return b.Leave(r.queue, r.group, r.consumer, time=now)


def _queue_options(options: dict[str, Any]) -> b.QueueOptions:
    unknown = sorted(set(options) - _OPTION_NAMES)
    if unknown:
        raise InvalidOptionsError(f"unknown queue option(s): {', '.join(unknown)}")
    for name, value in options.items():
        if value is not None and (type(value) is not int):
            raise InvalidOptionsError(f"queue option {name} must be an integer or None")
    try:
        return b.QueueOptions(**options)
    except (TypeError, ValueError) as error:
        raise InvalidOptionsError(f"invalid queue options: {error}") from None


def _create_queue(r: w.CreateQueue, now: int) -> b.Command:
    return b.CreateQueue(r.queue, _queue_options(r.options), time=now)


def _delete_queue(r: w.DeleteQueue, now: int) -> b.Command:
    return b.DeleteQueue(r.queue, time=now)


def _purge_queue(r: w.PurgeQueue, now: int) -> b.Command:
    return b.PurgeQueue(r.queue, r.dead_letters, time=now)


def _delete_group(r: w.DeleteGroup, now: int) -> b.Command:
    return b.DeleteGroup(r.queue, r.group, time=now)


def _redrive(r: w.Redrive, now: int) -> b.Command:
    return b.Redrive(r.queue, r.group, tuple(r.sequences), time=now)


_COMMANDS: Final[dict[type, Callable[[Any, int], b.Command]]] = {
    w.Publish: _publish,
    w.Subscribe: _subscribe,
    w.Deliver: _deliver,
    w.Ack: _ack,
    w.Nack: _nack,
    w.Extend: _extend,
    w.Reject: _reject,
    w.Leave: _leave,
    w.CreateQueue: _create_queue,
    w.DeleteQueue: _delete_queue,
    w.PurgeQueue: _purge_queue,
    w.DeleteGroup: _delete_group,
    w.Redrive: _redrive,
}
#: The request types that become broker commands (everything else is a read).
WRITE_REQUESTS: Final = frozenset(_COMMANDS)


def command_for(request: Any, now: int) -> b.Command:
    """The broker command a write request asks for, stamped ``now`` (microseconds).

    Raises InvalidCommandError (or InvalidOptionsError) for a request whose fields
    the broker would refuse to build a command from.
    """
    try:
        return _COMMANDS[type(request)](request, now)
    except (TypeError, ValueError, OverflowError) as error:
        # Only reachable through values msgspec let through that a command's
        # checks do not expect (they are typed, so this is a last line).
        raise InvalidCommandError(f"invalid {type(request).__name__}: {error}") from None


# -- results to reply values -----------------------------------------------------------------


def delivery_wire(d: b.Delivery) -> w.DeliveryWire:
    message = d.message
    reason = d.reason
    return w.DeliveryWire(
        message.sequence,
        message.body,
        message.headers,  # type: ignore[arg-type]  # a tuple encodes as the list it stands for
        message.message_id,
        message.publish_time,
        d.attempt,
        d.token,
        d.deadline,
        d.redelivery,
        None if reason is None else reason.value,
        d.incarnation,
    )


def peeked_wire(p: b.Peeked) -> w.PeekedMessage:
    message = p.message
    return w.PeekedMessage(
        message.sequence,
        message.body,
        list(message.headers),
        message.message_id,
        message.publish_time,
        p.attempts,
        p.state,
        p.incarnation,
    )


def _record(record: DeliveryRecord) -> dict[str, Any]:
    return {
        "attempt": record.attempt,
        "token": record.token,
        "consumer": record.consumer,
        "delivered_at": record.delivered_at,
        "deadline": record.deadline,
        "outcome": record.outcome,
    }


def dead_letter_wire(letter: b.DeadLetter) -> w.DeadLetter:
    message = letter.message
    return w.DeadLetter(
        message.sequence,
        message.body,
        list(message.headers),
        message.message_id,
        letter.attempts,
        letter.reason.value,
        letter.time,
        [_record(record) for record in letter.history],
    )


def _receipt(r: b.Receipt) -> Any:
    # Applied means committed, and committed means fsynced on a majority.
    return [r.queue, r.sequence, r.duplicate, _DURABLE, r.incarnation]


def _none(_: object) -> Any:
    return None


_VALUES: Final[dict[type, Callable[[Any], Any]]] = {
    b.Receipt: _receipt,
    b.Session: lambda r: {"expires_at": r.expires_at},
    b.Deliveries: lambda r: [delivery_wire(d) for d in r.deliveries],
    b.Acked: _none,
    b.Nacked: lambda r: {"dead_lettered": r.dead_lettered, "available_at": r.available_at},
    b.Extended: lambda r: {"deadline": r.deadline},
    b.Rejected: _none,
    b.Left: lambda r: {"released": r.released},
    b.QueueCreated: lambda r: {"created": r.created},
    b.QueueDeleted: _none,
    b.QueuePurged: lambda r: {"purged": r.messages},
    b.GroupDeleted: _none,
    b.Redriven: lambda r: {"redriven": len(r.sequences)},
    b.Ticked: _none,
}


def reply_value(result: object) -> Any:
    """The reply value for a broker result that is not an error. Raises KeyError for
    a result type no request produces."""
    return _VALUES[type(result)](result)
