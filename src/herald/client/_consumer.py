"""Consuming: a prefetch window of leased deliveries, batched settles, lease extension.

A :class:`Consumer` is an async iterator of :class:`Delivery`. It joins its
group (``Subscribe``) on first use, then keeps up to ``prefetch`` messages
leased to it: it asks for more (``Deliver`` with ``max_messages`` and a long-poll
``wait``) whenever room opens, with at most two such requests in flight. In
``at_least_once`` mode a message takes a place in the window from its delivery
until it is settled (ack, nack, reject); in ``at_most_once`` mode, until the
iterator hands it out.

Settles are plain requests: every ack issued in one event-loop iteration goes
out in the same frame as the others, so acking each message as it is processed
costs one frame per batch, not one round trip per message. ``ack()`` returns at
once with a future; await it to know the broker settled the message.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from types import TracebackType
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
from herald.wire.protocol import (
    Ack,
    Deliver,
    Extend,
    Leave,
    Nack,
    Reject,
    Subscribe,
)

from ._errors import UnreachableError
from ._session import Call, Session

if TYPE_CHECKING:
    from .client import Client

__all__ = ["MAX_DELIVER", "Consumer", "Delivery", "Mode"]

log = logging.getLogger("herald.client")

Mode = Literal["at_least_once", "at_most_once"]
_MODES: Final = ("at_least_once", "at_most_once")
#: The most messages one Deliver may lease (the broker's limit).
MAX_DELIVER: Final = 1000
_NEW, _OPEN, _CLOSED = 0, 1, 2


def _micros(seconds: float, what: str) -> int:
    if seconds < 0:
        raise UsageError(f"{what} must not be negative, not {seconds}")
    return round(seconds * 1_000_000)


class Delivery:
    """One message delivered to this consumer.

    In ``at_least_once`` mode it is a *lease*: settle it before ``deadline``
    (microseconds on the leader's clock) with :meth:`ack`, :meth:`nack` or
    :meth:`reject`, or push the deadline with :meth:`extend`; otherwise it comes
    back (``attempt`` + 1, ``redelivery`` true, ``reason`` ``"expired"``). A
    settle that shows a lease that has ended raises
    :class:`~herald.errors.StaleLeaseError`: the message may already be with
    another consumer.

    In ``at_most_once`` mode the message was settled when it was delivered:
    ``token`` and ``deadline`` are 0 and the four methods do nothing.

    Each method returns at once with an :class:`asyncio.Future`; the request
    goes out in the current iteration's frame. Await the future to learn the
    outcome; a future nobody awaits logs its error when collected.
    """

    __slots__ = (
        "_consumer",
        "_extend_at",
        "_extending",
        "_headers",
        "_settled",
        "attempt",
        "body",
        "deadline",
        "message_id",
        "published_at",
        "reason",
        "redelivery",
        "sequence",
        "token",
    )

    def __init__(self, consumer: Consumer, wire: list[Any]) -> None:
        self._consumer = consumer
        (
            self.sequence,
            self.body,
            self._headers,
            self.message_id,
            self.published_at,
            self.attempt,
            self.token,
            self.deadline,
            self.redelivery,
            self.reason,
        ) = wire
        self._settled: str | None = None if self.token else "at_most_once"
        self._extend_at = 0.0
        self._extending = False

    sequence: int
    body: bytes
    message_id: str | None
    published_at: int
    attempt: int
    token: int
    deadline: int
    redelivery: bool
    reason: str | None

    @property
    def queue(self) -> str:
        return self._consumer.queue

    @property
    def group(self) -> str:
        return self._consumer.group

    @property
    def headers(self) -> dict[str, str]:
        """The message's headers (a new dict each time)."""
        return {name: value for name, value in self._headers} if self._headers else {}

    @property
    def settled(self) -> bool:
        """True once ack, nack or reject was called (or always, at most once)."""
        return self._settled is not None

    def ack(self) -> asyncio.Future[None]:
        """Settle the message: processed. Raises (in the future) StaleLeaseError if the
        lease had ended, so the message may be delivered again."""
        return self._consumer._settle(self, "ack", 0)

    def nack(self, delay: float = 0.0) -> asyncio.Future[bool]:
        """Give the message back for redelivery after ``delay`` seconds. The future's
        value is true if it went to the dead letters instead (deliveries used up)."""
        return self._consumer._settle(self, "nack", _micros(delay, "delay"))

    def reject(self) -> asyncio.Future[None]:
        """Send the message straight to the dead letters (it can never be processed)."""
        return self._consumer._settle(self, "reject", 0)

    def extend(self, seconds: float | None = None) -> asyncio.Future[int]:
        """Push the lease's deadline ``seconds`` past now (default: the consumer's
        lease). The future's value is the new deadline (microseconds, leader's clock)."""
        return self._consumer._extend(self, seconds)

    def __repr__(self) -> str:
        return (
            f"Delivery(queue={self.queue!r}, sequence={self.sequence}, attempt={self.attempt}, "
            f"redelivery={self.redelivery}, body={self.body[:32]!r})"
        )


class _DeliverCall(Call):
    __slots__ = ("consumer", "count")

    def __init__(self, consumer: Consumer, request: Deliver, deadline: float) -> None:
        super().__init__(request, None, deadline, False)
        self.consumer = consumer
        self.count = request.max_messages

    def resolve(self, value: Any) -> None:
        self.consumer._on_delivered(self, value)

    def reject(self, error: HeraldError) -> None:
        self.consumer._on_fetch_failed(self, error)


class _SettleCall(Call):
    """An ack, nack, reject, extend or leave; resent after a lost connection, with
    the retry's answer read knowing the first attempt may have landed."""

    __slots__ = ("delivery", "done_if", "kind")

    def __init__(
        self,
        request: Any,
        future: asyncio.Future[Any],
        deadline: float,
        kind: str,
        done_if: tuple[type[HeraldError], ...],
        delivery: Delivery | None,
    ) -> None:
        super().__init__(request, future, deadline, True)
        self.kind = kind
        self.done_if = done_if
        self.delivery = delivery

    def resolve(self, value: Any) -> None:
        future = self.future
        if future is None or future.done():
            return
        kind = self.kind
        if kind == "nack":
            future.set_result(bool(value.get("dead_lettered", False)) if value else False)
        elif kind == "extend":
            deadline = int(value["deadline"]) if value else 0
            if self.delivery is not None and deadline:
                self.delivery.deadline = deadline
            future.set_result(deadline)
        else:
            future.set_result(None)

    def reject(self, error: HeraldError) -> None:
        future = self.future
        if future is None or future.done():
            return
        if self.attempts > 1 and isinstance(error, self.done_if):
            # A retry after a lost connection: the first attempt landed (or the
            # message is settled anyway). See the Client docstring.
            future.set_result(False if self.kind == "nack" else None)
        else:
            future.set_exception(error)


# The answers to a *retried* settle that mean the settle holds.
_DONE_IF: Final[dict[str, tuple[type[HeraldError], ...]]] = {
    "ack": (AlreadySettledError,),
    "reject": (AlreadySettledError,),
    "nack": (StaleLeaseError,),
    "extend": (),
    "leave": (UnknownConsumerError,),
}


class Consumer:
    """An async iterator of :class:`Delivery` from one queue, for one consumer of a group.

    Made by :meth:`herald.Client.consume`; see there. Use it as an async context
    manager (or call :meth:`close`) so the consumer leaves its group when done:
    its unsettled leases then come back at once (reason ``consumer_gone``) rather
    than when they expire.
    """

    def __init__(
        self,
        client: Client,
        session: Session,
        queue: str,
        group: str,
        *,
        mode: Mode,
        prefetch: int,
        consumer: str,
        auto_extend: bool,
        lease: float | None,
        wait: float,
        session_timeout: float,
        timeout: float,
    ) -> None:
        if mode not in _MODES:
            raise UsageError(f"mode must be 'at_least_once' or 'at_most_once', not {mode!r}")
        if prefetch < 1:
            raise UsageError(f"prefetch must be at least 1, not {prefetch}")
        if lease is not None and lease <= 0:
            raise UsageError(f"lease must be positive, not {lease}")
        if wait < 0 or session_timeout <= 0:
            raise UsageError("wait must not be negative and session_timeout must be positive")
        self._client = client
        self._session = session
        self._loop = session.loop
        self.queue = queue
        self.group = group
        self.name = consumer
        self.mode: Mode = mode
        self.prefetch = prefetch
        self.auto_extend = auto_extend and mode == "at_least_once"
        self._lease_us = 0 if lease is None else _micros(lease, "lease")
        self._lease_s = lease
        self._wait_us = _micros(wait, "wait")
        self._wait = wait
        self._session_timeout = session_timeout
        self._timeout = timeout
        self._at_least_once = mode == "at_least_once"
        self._state = _NEW
        self._buffer: deque[Delivery] = deque()
        self._held = 0  # at least once: delivered and not yet settled (buffered ones too)
        self._requested = 0  # messages asked for by the Deliver requests in flight
        self._fetching = 0  # Deliver requests in flight
        self._paused = False  # re-subscribing, or backing off after a failed fetch
        self._fetch_failures = 0
        self._waiter: asyncio.Future[None] | None = None
        self._error: BaseException | None = None
        self._start_task: asyncio.Task[None] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._unsettled: dict[int, Delivery] = {}
        #: Counters for monitoring and tests.
        self.delivered = 0
        self.fetches = 0

    # -- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        """Join the group (creating it on first use). Called by the first ``__anext__``."""
        if self._state != _NEW:
            return
        task = self._start_task
        if task is None:
            task = self._start_task = self._loop.create_task(self._start())
        try:
            await asyncio.shield(task)
        except BaseException:
            if task.done() and self._start_task is task:
                self._start_task = None  # the next use tries to join again
            raise

    async def _start(self) -> None:
        await self._subscribe()
        if self._state != _NEW:
            return
        self._state = _OPEN
        self._tasks.append(self._loop.create_task(self._heartbeat_loop()))
        if self.auto_extend:
            if self._lease_s is None:
                try:
                    stats = await self._client.stats(self.queue)
                    self._lease_s = stats.options.lease_duration / 1_000_000
                except HeraldError:
                    self._lease_s = 30.0
            self._tasks.append(self._loop.create_task(self._extend_loop()))
        self._maybe_fetch()

    async def _subscribe(self) -> None:
        session = self._session
        request = Subscribe(
            session.new_id(),
            self.queue,
            self.group,
            self.name,
            self.mode,
            _micros(self._session_timeout, "session_timeout"),
        )
        future: asyncio.Future[Any] = self._loop.create_future()
        session.submit(
            _SettleCall(request, future, self._loop.time() + self._timeout, "subscribe", (), None)
        )
        await future

    async def close(self) -> None:
        """Leave the group: every message still leased to this consumer comes back for
        redelivery now (settle what you processed first). Idempotent."""
        if self._state == _CLOSED:
            return
        was_open = self._state == _OPEN
        self._state = _CLOSED
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        if self._start_task is not None and not self._start_task.done():
            self._start_task.cancel()
        self._buffer.clear()
        self._unsettled.clear()
        self._wake()
        self._client._consumers.discard(self)
        if was_open and not self._session.closed:
            request = Leave(self._session.new_id(), self.queue, self.group, self.name)
            future: asyncio.Future[Any] = self._loop.create_future()
            self._session.submit(
                _SettleCall(
                    request,
                    future,
                    self._loop.time() + self._timeout,
                    "leave",
                    _DONE_IF["leave"],
                    None,
                )
            )
            try:
                await future
            except HeraldError as error:
                log.info(
                    "herald: consumer %s could not leave %s/%s: %s",
                    self.name,
                    self.queue,
                    self.group,
                    error,
                )

    async def __aenter__(self) -> Consumer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def __aiter__(self) -> Consumer:
        return self

    async def __anext__(self) -> Delivery:
        if self._state == _NEW:
            await self.start()
        buffer = self._buffer
        while True:
            if buffer:
                delivery = buffer.popleft()
                if not self._at_least_once:
                    self._maybe_fetch()
                return delivery
            if self._error is not None:
                error, self._error = self._error, None
                raise error
            if self._state == _CLOSED:
                raise StopAsyncIteration
            self._maybe_fetch()
            waiter = self._waiter = self._loop.create_future()
            try:
                await waiter
            finally:
                self._waiter = None

    async def get(self, timeout: float | None = None) -> Delivery | None:
        """The next delivery, or None if none arrives within ``timeout`` seconds."""
        try:
            return await asyncio.wait_for(self.__anext__(), timeout)
        except TimeoutError:
            return None
        except StopAsyncIteration:
            return None

    @property
    def held(self) -> int:
        """Messages delivered to this consumer and not yet settled (at least once)."""
        return self._held

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- fetching -----------------------------------------------------------------------

    def _maybe_fetch(self) -> None:
        if self._state != _OPEN or self._paused:
            return
        prefetch = self.prefetch
        while self._fetching < 2:
            used = self._held if self._at_least_once else len(self._buffer)
            credit = prefetch - used - self._requested
            need = 1 if self._fetching == 0 else max(1, prefetch // 2)
            if credit < need:
                return
            self._fetch(min(credit, MAX_DELIVER))

    def _fetch(self, count: int) -> None:
        session = self._session
        request = Deliver(
            session.new_id(),
            self.queue,
            self.group,
            self.name,
            count,
            self._lease_us,
            self._wait_us,
        )
        self._fetching += 1
        self._requested += count
        self.fetches += 1
        session.submit(_DeliverCall(self, request, self._loop.time() + self._wait + self._timeout))

    def _on_delivered(self, call: _DeliverCall, value: Any) -> None:
        try:
            deliveries = [Delivery(self, wire) for wire in value]
        except (TypeError, ValueError) as error:
            self._on_fetch_failed(call, ProtocolError(f"malformed deliveries: {error}"))
            return
        self._fetching -= 1
        self._requested -= call.count
        if self._state == _CLOSED:
            return  # leased after we decided to leave: the Leave gives them back
        self._fetch_failures = 0
        count = len(deliveries)
        if count:
            self._buffer.extend(deliveries)
            self.delivered += count
            if self._at_least_once:
                self._held += count
                if self.auto_extend:
                    assert self._lease_s is not None
                    due = self._loop.time() + self._lease_s / 2
                    unsettled = self._unsettled
                    for delivery in deliveries:
                        delivery._extend_at = due
                        unsettled[delivery.sequence] = delivery
            self._wake()
        elif self._loop.time() - call.sent_at < self._wait / 2:
            # An empty answer well before the long-poll wait: do not spin.
            self._pause(0.05)
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
            self._paused = True
            self._tasks.append(self._loop.create_task(self._rejoin()))
        elif isinstance(error, (ConnectionClosedError, RequestTimeoutError, UnreachableError)):
            # A lost Deliver's leases come back when they expire (at most once: the
            # messages are lost -- that is the mode's contract).
            self._fetch_failures += 1
            self._pause(min(1.0, 0.02 * 2**self._fetch_failures))
        else:
            self._error = error
            self._wake()

    def _pause(self, seconds: float) -> None:
        self._paused = True

        def resume() -> None:
            self._paused = False
            self._maybe_fetch()

        self._loop.call_later(seconds, resume)

    async def _rejoin(self) -> None:
        try:
            await self._subscribe()
        except HeraldError as error:
            self._error = error
            self._wake()
        finally:
            self._paused = False
        self._maybe_fetch()

    async def _heartbeat_loop(self) -> None:
        # Any command naming the consumer keeps its session; an idle long-poll does
        # not necessarily reach the log, so re-subscribe now and then.
        interval = self._session_timeout / 3
        while self._state == _OPEN:
            await asyncio.sleep(interval)
            try:
                await self._subscribe()
            except HeraldError as error:
                log.debug("herald: heartbeat of %s failed: %s", self.name, error)

    # -- settling -----------------------------------------------------------------------

    def _settle(self, delivery: Delivery, kind: str, delay: int) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = self._loop.create_future()
        settled = delivery._settled
        if settled is not None:
            if settled == "at_most_once":
                future.set_result(False if kind == "nack" else None)
                return future
            raise UsageError(f"message {delivery.sequence} was already settled ({settled})")
        delivery._settled = kind
        self._held -= 1
        if self.auto_extend:
            self._unsettled.pop(delivery.sequence, None)
        session = self._session
        rid = session.new_id()
        request: Ack | Nack | Reject
        if kind == "ack":
            request = Ack(rid, self.queue, self.group, delivery.sequence, delivery.token)
        elif kind == "nack":
            request = Nack(rid, self.queue, self.group, delivery.sequence, delivery.token, delay)
        else:
            request = Reject(rid, self.queue, self.group, delivery.sequence, delivery.token)
        session.submit(
            _SettleCall(
                request, future, self._loop.time() + self._timeout, kind, _DONE_IF[kind], delivery
            )
        )
        if self._state == _OPEN and not self._paused and self._fetching < 2:
            self._maybe_fetch()
        return future

    def _extend(self, delivery: Delivery, seconds: float | None) -> asyncio.Future[int]:
        future: asyncio.Future[int] = self._loop.create_future()
        settled = delivery._settled
        if settled is not None:
            if settled == "at_most_once":
                future.set_result(0)
                return future
            raise UsageError(f"message {delivery.sequence} was already settled ({settled})")
        duration = seconds if seconds is not None else (self._lease_s or 30.0)
        self._send_extend(delivery, _micros(duration, "seconds") or 1, future)
        return future

    def _send_extend(self, delivery: Delivery, duration: int, future: asyncio.Future[Any]) -> None:
        session = self._session
        request = Extend(
            session.new_id(), self.queue, self.group, delivery.sequence, delivery.token, duration
        )
        session.submit(
            _SettleCall(request, future, self._loop.time() + self._timeout, "extend", (), delivery)
        )

    async def _extend_loop(self) -> None:
        assert self._lease_s is not None
        lease = self._lease_s
        duration = max(1, _micros(lease, "lease"))
        interval = max(0.01, lease / 8)
        loop = self._loop
        while self._state == _OPEN:
            await asyncio.sleep(interval)
            now = loop.time()
            for delivery in list(self._unsettled.values()):
                if delivery._extending or delivery._extend_at > now:
                    continue
                delivery._extending = True
                future: asyncio.Future[Any] = loop.create_future()
                future.add_done_callback(
                    lambda f, d=delivery: self._extended(d, f, lease)  # type: ignore[misc]
                )
                self._send_extend(delivery, duration, future)

    def _extended(self, delivery: Delivery, future: asyncio.Future[Any], lease: float) -> None:
        delivery._extending = False
        if future.cancelled():
            return
        error = future.exception()
        if error is None:
            delivery._extend_at = self._loop.time() + lease / 2
        elif isinstance(error, (StaleLeaseError, UnknownDeliveryError, AlreadySettledError)):
            # The lease is gone; a settle will say so. Stop extending it.
            self._unsettled.pop(delivery.sequence, None)
        else:
            delivery._extend_at = self._loop.time() + min(1.0, lease / 8)
