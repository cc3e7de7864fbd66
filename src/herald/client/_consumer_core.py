"""The consumer core: a prefetch window of leased deliveries, settles, leases kept alive.

A :class:`ConsumerCore` is one member of one consumer group, sans-IO: the
decisions of consuming live here, the waiting lives in the shells. It joins
its group (``Subscribe``) when started, then keeps up to ``prefetch`` messages
leased to it: it asks for more (``Deliver`` with ``max_messages`` and a
long-poll ``wait``) whenever room opens, with at most two such requests in
flight. In ``at_least_once`` mode a message takes a place in the window from
its delivery until it is settled (ack, nack, reject); in ``at_most_once``
mode, until :meth:`ConsumerCore.take` hands it out. With ``limit``, the
consumer never leases more than that many messages in all.

On its own timers it re-subscribes every ``session_timeout / 3`` (any command
naming the consumer keeps its broker session, but an idle long poll may not
reach the log), backs off after an empty answer that came early or a failed
fetch, joins again after ``UnknownConsumerError`` (its session expired), and
with ``auto_extend`` extends each unsettled lease at half its duration.

Settles are plain requests that go out with everything else in the next frame.
A settle resent after a lost connection reads its answer knowing the first
attempt may have landed (see :mod:`herald.client.client`).
"""

from __future__ import annotations

import functools
import heapq
from collections import deque
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Final, Literal

from herald.errors import (
    AlreadySettledError,
    ConnectionClosedError,
    HeraldError,
    ProtocolError,
    RequestTimeoutError,
    StaleLeaseError,
    UnknownConsumerError,
    UnknownDeliveryError,
    UsageError,
)
from herald.wire.protocol import Ack, Deliver, Extend, Leave, Nack, Reject, Stats, Subscribe

from ._errors import UnreachableError
from ._ops import Call, Op, done_op, encode

if TYPE_CHECKING:
    from .core import ClientCore, Timer

__all__ = ["MAX_DELIVER", "ConsumerCore", "CoreDelivery", "Mode"]

Mode = Literal["at_least_once", "at_most_once"]
_MODES: Final = ("at_least_once", "at_most_once")
#: The most messages one Deliver may lease (the broker's limit).
MAX_DELIVER: Final = 1000
#: The lease assumed when the queue's cannot be read (auto-extend, extend()).
DEFAULT_LEASE: Final = 30_000_000
#: Pause after an empty answer that came well before the long-poll wait.
EMPTY_PAUSE: Final = 50_000
#: Backoff after failed fetches: base, cap (microseconds).
FETCH_BACKOFF: Final = 20_000
FETCH_BACKOFF_CAP: Final = 1_000_000
_NEW, _JOINING, _OPEN, _CLOSED = 0, 1, 2, 3


class CoreDelivery:
    """One message delivered to a consumer: plain data plus its settle state.

    In ``at_least_once`` mode it is a lease: ``token`` must be shown to settle
    it before ``deadline`` (microseconds on the leader's clock). In
    ``at_most_once`` mode it was settled when it was delivered: ``token`` and
    ``deadline`` are 0. ``incarnation`` tells the queue from a deleted queue of
    the same name (which numbered its messages from 1 too).
    """

    __slots__ = (
        "arrived_at",
        "attempt",
        "body",
        "consumer",
        "deadline",
        "extending",
        "fetched_at",
        "header_pairs",
        "incarnation",
        "message_id",
        "published_at",
        "reason",
        "redelivery",
        "sequence",
        "settled_as",
        "token",
    )

    def __init__(self, consumer: ConsumerCore, wire: Sequence[Any]) -> None:
        """``wire``: a :class:`~herald.wire.protocol.DeliveryWire` as decoded
        (a list of 11 fields; 10 from a server without incarnations). Raises
        ValueError or TypeError if it is not one."""
        self.consumer = consumer
        if len(wire) == 11:
            (
                self.sequence,
                self.body,
                self.header_pairs,
                self.message_id,
                self.published_at,
                self.attempt,
                self.token,
                self.deadline,
                self.redelivery,
                self.reason,
                self.incarnation,
            ) = wire
        else:
            (
                self.sequence,
                self.body,
                self.header_pairs,
                self.message_id,
                self.published_at,
                self.attempt,
                self.token,
                self.deadline,
                self.redelivery,
                self.reason,
            ) = wire
            self.incarnation = 0
        #: How it was settled: "ack", "nack", "reject", "at_most_once"; None while leased.
        self.settled_as: str | None = None if self.token else "at_most_once"
        self.extending = False
        #: When the Deliver request that leased it was issued, and when its answer
        #: arrived (µs, the driver's clock): the delivery happened in between, even
        #: if it waits in the prefetch buffer long after (for histories).
        self.fetched_at = consumer._batch_fetched_at
        self.arrived_at = consumer._batch_arrived_at

    sequence: int
    body: bytes
    header_pairs: list[tuple[str, str]]
    message_id: str | None
    published_at: int
    attempt: int
    token: int
    deadline: int
    redelivery: bool
    reason: str | None
    incarnation: int

    @property
    def queue(self) -> str:
        return self.consumer.queue

    @property
    def group(self) -> str:
        return self.consumer.group

    @property
    def headers(self) -> dict[str, str]:
        """The message's headers (a new dict each time)."""
        pairs = self.header_pairs
        return {name: value for name, value in pairs} if pairs else {}

    @property
    def settled(self) -> bool:
        """True once ack, nack or reject was called (or always, at most once)."""
        return self.settled_as is not None

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(queue={self.queue!r}, sequence={self.sequence}, "
            f"attempt={self.attempt}, redelivery={self.redelivery}, body={self.body[:32]!r})"
        )


class _DeliverCall(Call):
    """A fetch: never resent (what a lost fetch leased comes back when its leases
    expire); its outcome goes to the consumer, not to a caller."""

    __slots__ = ("consumer", "count", "issued")

    def __init__(self, consumer: ConsumerCore, request: Deliver, deadline: int) -> None:
        super().__init__(request, deadline, False)
        self.consumer = consumer
        self.count = request.max_messages
        self.issued = consumer.core.now

    def resolve(self, value: Any) -> None:
        self.done = True
        self.consumer._on_delivered(self, value)

    def reject(self, error: HeraldError) -> None:
        self.done = True
        self.consumer._on_fetch_failed(self, error)


class _SettleCall(Call):
    """An ack, nack, reject, extend, subscribe or leave; resent after a lost
    connection, with the retry's answer read knowing the first attempt may have
    landed."""

    __slots__ = ("delivery", "done_if", "kind")

    def __init__(
        self,
        request: Any,
        deadline: int,
        kind: str,
        done_if: tuple[type[HeraldError], ...],
        delivery: CoreDelivery | None,
    ) -> None:
        # Call.__init__, spelled out (an ack per message is the hot path).
        self.done = False
        self.value = None
        self.error = None
        self.on_done = None
        self.tag = None
        self._listeners = None
        self.request = request
        self.id = request.id
        self.data = encode(request)
        self.deadline = deadline
        self.retry = True
        self.lost_sends = 0
        self.suspect = False
        self.forgotten = False
        self.kind = kind
        self.done_if = done_if
        self.delivery = delivery

    def resolve(self, value: Any) -> None:
        kind = self.kind
        if kind == "ack" and not self.done:  # Op.succeed(None), spelled out
            self.done = True
            callback = self.on_done
            if callback is not None:
                callback(self)
            if self._listeners is not None:
                self._call_listeners()
        elif kind == "nack":
            self.succeed(bool(value.get("dead_lettered", False)) if value else False)
        elif kind == "extend":
            deadline = int(value["deadline"]) if value else 0
            if self.delivery is not None and deadline:
                self.delivery.deadline = deadline
            self.succeed(deadline)
        elif kind == "subscribe":
            self.succeed(value)
        else:
            self.succeed(None)

    def reject(self, error: HeraldError) -> None:
        if isinstance(error, self.done_if) and (self.lost_sends or self.kind == "leave"):
            # A retry after a lost connection: the first attempt landed (or the
            # message is settled anyway). A leave is done when the broker does not
            # know the consumer. See the Client docstring.
            self.succeed(False if self.kind == "nack" else None)
        else:
            self.fail(error)


# The answers to a *retried* settle that mean the settle holds.
_DONE_IF: Final[dict[str, tuple[type[HeraldError], ...]]] = {
    "ack": (AlreadySettledError,),
    "reject": (AlreadySettledError,),
    "nack": (StaleLeaseError,),
    "extend": (),
    "leave": (UnknownConsumerError,),
    "subscribe": (),
}
#: The answers to an automatic extension that mean the lease is gone for good.
_LEASE_GONE: Final = (StaleLeaseError, UnknownDeliveryError, AlreadySettledError)


class ConsumerCore:
    """One consumer of one group, sans-IO. Made by :meth:`ClientCore.consumer`.

    The shell's loop: :meth:`start`; then, whenever ``on_ready`` is called (or
    before waiting), :meth:`take` deliveries until it returns None, then
    :meth:`take_error`; stop when :attr:`closed` or :attr:`exhausted`. Settle
    each delivery with :meth:`ack`, :meth:`nack` or :meth:`reject`, and
    :meth:`close` at the end. Times and durations are microseconds.
    """

    def __init__(
        self,
        core: ClientCore,
        queue: str,
        group: str,
        *,
        mode: Mode,
        prefetch: int,
        consumer: str,
        auto_extend: bool,
        lease: int | None,
        wait: int,
        session_timeout: int,
        limit: int | None,
        delivery_type: type[CoreDelivery],
    ) -> None:
        if mode not in _MODES:
            raise UsageError(f"mode must be 'at_least_once' or 'at_most_once', not {mode!r}")
        if prefetch < 1:
            raise UsageError(f"prefetch must be at least 1, not {prefetch}")
        if lease is not None and lease <= 0:
            raise UsageError(f"lease must be positive, not {lease}")
        if wait < 0 or session_timeout <= 0:
            raise UsageError("wait must not be negative and session_timeout must be positive")
        if limit is not None and limit < 1:
            raise UsageError(f"limit must be at least 1, not {limit}")
        self.core = core
        self.queue = queue
        self.group = group
        self.name = consumer
        self.mode: Mode = mode
        self.prefetch = prefetch
        self.limit = limit
        self.auto_extend = auto_extend and mode == "at_least_once"
        self.lease = lease
        self.wait = wait
        self.session_timeout = session_timeout
        self.delivery_type = delivery_type
        #: Called (no arguments) when deliveries or an error are waiting, or the
        #: consumer closed: the shell's cue to take them.
        self.on_ready: Callable[[], None] | None = None
        #: For the shell (the asyncio Consumer keeps itself here).
        self.context: object = None
        self._at_least_once = mode == "at_least_once"
        self._state = _NEW
        #: Joined its group: fetching (a plain attribute: the shells read it per message).
        self.joined = False
        self._start_op: Op[None] | None = None
        self._close_op: Op[None] | None = None
        self._buffer: deque[CoreDelivery] = deque()
        self._held = 0  # at least once: delivered and not yet settled (buffered ones too)
        self._requested = 0  # messages asked for by the Deliver requests in flight
        self._fetching = 0  # Deliver requests in flight
        self._rejoining = False
        self._pause_timer: Timer | None = None
        self._fetch_failures = 0
        self._error: HeraldError | None = None
        self._heartbeat_timer: Timer | None = None
        self._beating = False
        #: Auto-extend: (due, order, delivery), the earliest first.
        self._extends: list[tuple[int, int, CoreDelivery]] = []
        self._extend_order = 0
        self._extend_timer: Timer | None = None
        self._batch_fetched_at = 0  # of the Deliver answer being read
        self._batch_arrived_at = 0
        #: Counters for monitoring and tests.
        self.delivered = 0
        self.fetches = 0
        #: Fetches whose answer never came (the connection broke, or it timed
        #: out). At most once, whatever such a fetch leased was settled and is
        #: gone: the shell hears of each (``on_ready``) so it can say so.
        self.lost_fetches = 0

    # -- state --------------------------------------------------------------------------

    @property
    def started(self) -> bool:
        """Joined (or joining) its group."""
        return self._state in (_JOINING, _OPEN)

    @property
    def closed(self) -> bool:
        return self._state == _CLOSED

    @property
    def exhausted(self) -> bool:
        """Every delivery of a consumer with a ``limit`` was handed out: nothing more
        will come."""
        return (
            self.limit is not None
            and self.delivered >= self.limit
            and not self._buffer
            and self._requested == 0
        )

    @property
    def held(self) -> int:
        """Messages delivered to this consumer and not yet settled (at least once)."""
        return self._held

    @property
    def buffered(self) -> int:
        """Deliveries waiting to be taken."""
        return len(self._buffer)

    # -- lifecycle ----------------------------------------------------------------------

    def start(self, now: int) -> Op[None]:
        """Join the group (creating it on first use). The op completes once joined;
        if joining fails, it fails and the next start tries again."""
        core = self.core
        core.enter(now)
        state = self._state
        if state in (_OPEN, _CLOSED):
            return done_op(None)
        if state == _JOINING:
            assert self._start_op is not None
            return self._start_op
        self._state = _JOINING
        op: Op[None] = Op()
        self._start_op = op
        self._subscribe().add_listener(self._joined)
        return op

    def _subscribe(self) -> _SettleCall:
        core = self.core
        call = _SettleCall(
            Subscribe(
                core.new_id(),
                self.queue,
                self.group,
                self.name,
                self.mode,
                self.session_timeout,
            ),
            core.now + core.timeout,
            "subscribe",
            (),
            None,
        )
        core.register(call)
        return call

    def _joined(self, call: Op[Any]) -> None:
        if self._state != _JOINING:
            return
        if call.error is not None:
            self._state = _NEW
            op, self._start_op = self._start_op, None
            if op is not None:
                op.fail(call.error)
            return
        if self.auto_extend and self.lease is None:
            core = self.core
            stats = Call(Stats(core.new_id(), self.queue), core.now + core.timeout, True)
            core.register(stats)
            stats.add_listener(self._got_lease)
            return
        self._open()

    def _got_lease(self, call: Op[Any]) -> None:
        if self._state != _JOINING:
            return
        lease = DEFAULT_LEASE
        value: Any = call.value
        if call.error is None:
            try:
                lease = int(value["options"]["lease_duration"])
            except (KeyError, TypeError, ValueError):
                lease = DEFAULT_LEASE
        self.lease = max(1, lease)
        self._open()

    def _open(self) -> None:
        self._state = _OPEN
        self.joined = True
        core = self.core
        self._heartbeat_timer = core.schedule(
            core.now + max(1, self.session_timeout // 3), self._heartbeat
        )
        op, self._start_op = self._start_op, None
        if op is not None:
            op.succeed(None)
        self._maybe_fetch()

    def close(self, now: int) -> Op[None]:
        """Leave the group: every message still leased to this consumer comes back
        for redelivery now (settle what you processed first). Buffered deliveries
        are dropped. Idempotent; the op completes when the broker confirmed."""
        core = self.core
        core.enter(now)
        if self._state == _CLOSED:
            return self._close_op or done_op(None)
        joined = self._state in (_JOINING, _OPEN)
        self._shut()
        start_op, self._start_op = self._start_op, None
        if start_op is not None:
            start_op.fail(ConnectionClosedError("the consumer was closed"))
        core.forget_consumer(self)
        if joined and not core.closed:
            call = _SettleCall(
                Leave(core.new_id(), self.queue, self.group, self.name),
                core.now + core.timeout,
                "leave",
                _DONE_IF["leave"],
                None,
            )
            core.register(call)
            self._close_op = call
            return call
        op = self._close_op = done_op(None)
        return op

    def _shut(self) -> None:
        self._state = _CLOSED
        self.joined = False
        for timer in (self._heartbeat_timer, self._pause_timer, self._extend_timer):
            if timer is not None:
                timer.cancel()
        self._heartbeat_timer = self._pause_timer = self._extend_timer = None
        self._buffer.clear()
        self._extends.clear()
        self._notify()

    def client_closed(self) -> None:
        """The client closed: nothing more can happen."""
        if self._state != _CLOSED:
            self._shut()
            start_op, self._start_op = self._start_op, None
            if start_op is not None:
                start_op.fail(ConnectionClosedError("the client was closed"))

    def _notify(self) -> None:
        callback = self.on_ready
        if callback is not None:
            callback()

    # -- taking -------------------------------------------------------------------------

    def take(self, now: int) -> CoreDelivery | None:
        """The next buffered delivery, or None. At most once, handing it out frees
        its place in the window (at least once, settling it does)."""
        core = self.core
        if now > core._now:  # noqa: PLR1730 (ClientCore.enter, inlined: per message)
            core._now = now
        buffer = self._buffer
        if buffer:
            delivery = buffer.popleft()
            if not self._at_least_once:
                self._maybe_fetch()
            return delivery
        self._maybe_fetch()
        return None

    def take_error(self) -> HeraldError | None:
        """The error a fetch or a re-join met (an unknown queue, say), once."""
        error, self._error = self._error, None
        return error

    # -- fetching -----------------------------------------------------------------------

    @property
    def _paused(self) -> bool:
        return self._rejoining or self._pause_timer is not None

    def _maybe_fetch(self) -> None:
        if self._state != _OPEN or self._rejoining or self._pause_timer is not None:
            return
        prefetch = self.prefetch
        limit = self.limit
        while self._fetching < 2:
            used = self._held if self._at_least_once else len(self._buffer)
            credit = prefetch - used - self._requested
            if limit is not None:
                credit = min(credit, limit - self.delivered - self._requested)
            need = 1 if self._fetching == 0 else max(1, prefetch // 2)
            if credit < need:
                return
            self._fetch(min(credit, MAX_DELIVER))

    def _fetch(self, count: int) -> None:
        core = self.core
        request = Deliver(
            core.new_id(),
            self.queue,
            self.group,
            self.name,
            count,
            self.lease or 0,
            self.wait,
        )
        self._fetching += 1
        self._requested += count
        self.fetches += 1
        core.register(_DeliverCall(self, request, core.now + self.wait + core.timeout))

    def _on_delivered(self, call: _DeliverCall, value: Any) -> None:
        make = self.delivery_type
        self._batch_fetched_at = call.issued
        self._batch_arrived_at = self.core.now
        try:
            deliveries = [make(self, wire) for wire in value]
        except (TypeError, ValueError) as error:
            self._on_fetch_failed(call, ProtocolError(f"malformed deliveries: {error}"))
            return
        self._fetching -= 1
        self._requested -= call.count
        if self._state == _CLOSED:
            return  # leased after we decided to leave: the Leave gives them back
        self._fetch_failures = 0
        count = len(deliveries)
        core = self.core
        if count:
            self._buffer.extend(deliveries)
            self.delivered += count
            if self._at_least_once:
                self._held += count
                if self.auto_extend:
                    lease = self.lease or DEFAULT_LEASE
                    self._watch_leases(deliveries, core.now + lease // 2)
            self._notify()
        elif core.now - call.issued < self.wait // 2:
            # An empty answer well before the long-poll wait: do not spin.
            self._pause(EMPTY_PAUSE)
            return
        self._maybe_fetch()

    def _on_fetch_failed(self, call: _DeliverCall, error: HeraldError) -> None:
        self._fetching -= 1
        self._requested -= call.count
        if self._state == _CLOSED:
            return
        if isinstance(error, UnknownConsumerError):
            # Our session expired (silent for session_timeout): join again. The
            # leases we held came back to the group when it expired.
            if not self._rejoining:
                self._rejoining = True
                self._subscribe().add_listener(self._rejoined)
        elif isinstance(error, (ConnectionClosedError, RequestTimeoutError, UnreachableError)):
            # A lost Deliver's leases come back when they expire (at most once: the
            # messages are lost -- that is the mode's contract).
            self._fetch_failures += 1
            self.lost_fetches += 1
            self._pause(min(FETCH_BACKOFF_CAP, FETCH_BACKOFF * 2**self._fetch_failures))
            if not self._at_least_once:
                self._notify()
        else:
            self._error = error
            self._notify()

    def _pause(self, duration: int) -> None:
        if self._pause_timer is not None:
            self._pause_timer.cancel()
        core = self.core
        self._pause_timer = core.schedule(core.now + duration, self._resume)

    def _resume(self, now: int) -> None:
        self._pause_timer = None
        self._maybe_fetch()

    def _rejoined(self, call: Op[Any]) -> None:
        self._rejoining = False
        if self._state != _OPEN:
            return
        if call.error is not None:
            self._error = call.error
            self._notify()
        self._maybe_fetch()

    def _heartbeat(self, now: int) -> None:
        if self._state != _OPEN:
            return
        core = self.core
        self._heartbeat_timer = core.schedule(
            now + max(1, self.session_timeout // 3), self._heartbeat
        )
        if not self._beating:
            self._beating = True
            self._subscribe().add_listener(self._beaten)

    def _beaten(self, call: Op[Any]) -> None:
        self._beating = False
        if call.error is not None:
            self.core._log(10, "herald: heartbeat of %s failed: %s", self.name, call.error)

    # -- settling -----------------------------------------------------------------------

    def ack(self, delivery: CoreDelivery, now: int) -> Op[None]:
        """Settle: processed. Fails with StaleLeaseError if the lease had ended.
        UsageError if the delivery was settled already."""
        return self._settle(delivery, "ack", 0, now)

    def nack(self, delivery: CoreDelivery, delay: int, now: int) -> Op[bool]:
        """Give it back, redelivered after ``delay`` µs; the value is true if it went
        to the dead letters instead (deliveries used up)."""
        if delay < 0:
            raise UsageError(f"delay must not be negative, not {delay}")
        return self._settle(delivery, "nack", delay, now)

    def reject(self, delivery: CoreDelivery, now: int) -> Op[None]:
        """Send it straight to the dead letters."""
        return self._settle(delivery, "reject", 0, now)

    def _settle(self, delivery: CoreDelivery, kind: str, delay: int, now: int) -> Op[Any]:
        core = self.core
        if now > core._now:  # noqa: PLR1730 (ClientCore.enter, inlined: per message)
            core._now = now
        settled = delivery.settled_as
        if settled is not None:
            if settled == "at_most_once":
                return done_op(False if kind == "nack" else None)
            raise UsageError(f"message {delivery.sequence} was already settled ({settled})")
        delivery.settled_as = kind
        self._held -= 1
        rid = core._next_id
        core._next_id = rid + 1
        request: Ack | Nack | Reject
        if kind == "ack":
            request = Ack(rid, self.queue, self.group, delivery.sequence, delivery.token)
        elif kind == "nack":
            request = Nack(rid, self.queue, self.group, delivery.sequence, delivery.token, delay)
        else:
            request = Reject(rid, self.queue, self.group, delivery.sequence, delivery.token)
        call = _SettleCall(request, now + core.timeout, kind, _DONE_IF[kind], delivery)
        core.register(call)
        if self._fetching < 2:
            self._maybe_fetch()
        return call

    def extend(self, delivery: CoreDelivery, duration: int | None, now: int) -> Op[int]:
        """Push the lease's deadline ``duration`` µs past now (default: the
        consumer's lease); the value is the new deadline (µs, leader's clock).
        UsageError if the delivery was settled already."""
        core = self.core
        core.enter(now)
        settled = delivery.settled_as
        if settled is not None:
            if settled == "at_most_once":
                return done_op(0)
            raise UsageError(f"message {delivery.sequence} was already settled ({settled})")
        if duration is not None and duration < 0:
            raise UsageError(f"duration must not be negative, not {duration}")
        length = duration if duration is not None else (self.lease or DEFAULT_LEASE)
        return self._send_extend(delivery, max(1, length))

    def _send_extend(self, delivery: CoreDelivery, duration: int) -> _SettleCall:
        core = self.core
        request = Extend(
            core.new_id(), self.queue, self.group, delivery.sequence, delivery.token, duration
        )
        call = _SettleCall(request, core.now + core.timeout, "extend", (), delivery)
        core.register(call)
        return call

    # -- automatic extension ------------------------------------------------------------

    def _watch_leases(self, deliveries: Sequence[CoreDelivery], due: int) -> None:
        extends = self._extends
        for delivery in deliveries:
            self._extend_order += 1
            heapq.heappush(extends, (due, self._extend_order, delivery))
        self._arm_extends()

    def _arm_extends(self) -> None:
        extends = self._extends
        if not extends or self._state != _OPEN:
            return
        due = extends[0][0]
        timer = self._extend_timer
        if timer is not None and timer.active and timer.when <= due:
            return
        if timer is not None:
            timer.cancel()
        self._extend_timer = self.core.schedule(due, self._extend_due)

    def _extend_due(self, now: int) -> None:
        self._extend_timer = None
        if self._state != _OPEN:
            return
        extends = self._extends
        lease = self.lease or DEFAULT_LEASE
        while extends and extends[0][0] <= now:
            _, _, delivery = heapq.heappop(extends)
            if delivery.settled_as is not None or delivery.extending:
                continue
            delivery.extending = True
            call = self._send_extend(delivery, lease)
            call.add_listener(functools.partial(self._auto_extended, delivery))
        self._arm_extends()

    def _auto_extended(self, delivery: CoreDelivery, op: Op[Any]) -> None:
        delivery.extending = False
        if self._state != _OPEN or delivery.settled_as is not None:
            return
        lease = self.lease or DEFAULT_LEASE
        now = self.core.now
        if op.error is None:
            due = now + lease // 2
        elif isinstance(op.error, _LEASE_GONE):
            return  # the lease is gone; a settle will say so. Stop extending it.
        else:
            due = now + min(1_000_000, max(1, lease // 8))
        self._watch_leases((delivery,), due)
