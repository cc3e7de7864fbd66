"""The asyncio consumer: :class:`Consumer`, an async iterator of :class:`Delivery`.

A thin shell over :class:`~herald.client.core.ConsumerCore`, which makes every
decision (the prefetch window, fetches, re-joins, heartbeats, lease
extension): the shell only waits. It joins its group (``Subscribe``) on first
use, then keeps up to ``prefetch`` messages leased to it. In ``at_least_once``
mode a message takes a place in the window from its delivery until it is
settled (ack, nack, reject); in ``at_most_once`` mode, until the iterator hands
it out.

Settles are plain requests: every ack issued in one event-loop iteration goes
out in the same frame as the others, so acking each message as it is processed
costs one frame per batch, not one round trip per message. ``ack()`` returns at
once with a future; await it to know the broker settled the message.
"""

from __future__ import annotations

import asyncio
import logging
from types import TracebackType
from typing import TYPE_CHECKING, Any, cast

from herald.errors import HeraldError, UsageError

from ._consumer_core import MAX_DELIVER, ConsumerCore, CoreDelivery, Mode
from ._ops import Op

if TYPE_CHECKING:
    from .client import _Session


def settle_future(op: Op[Any]) -> None:
    """An op's ``on_done`` in the asyncio shell: complete the future in its ``tag``."""
    future: asyncio.Future[Any] = op.tag  # type: ignore[assignment]
    if not future.done():
        error = op.error
        if error is None:
            future.set_result(op.value)
        else:
            future.set_exception(error)


__all__ = ["MAX_DELIVER", "Consumer", "Delivery", "Mode"]

log = logging.getLogger("herald.client")


def _micros(seconds: float, what: str) -> int:
    if seconds < 0:
        raise UsageError(f"{what} must not be negative, not {seconds}")
    return round(seconds * 1_000_000)


class Delivery(CoreDelivery):
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

    Fields: ``queue``, ``group``, ``sequence``, ``body``, ``headers`` (a dict),
    ``message_id``, ``published_at``, ``attempt``, ``token``, ``deadline``,
    ``redelivery``, ``reason`` and ``incarnation`` (which queue of that name:
    a queue deleted and created again numbers its messages from 1 again).

    Each method returns at once with an :class:`asyncio.Future`; the request
    goes out in the current iteration's frame. Await the future to learn the
    outcome; a future nobody awaits logs its error when collected.
    """

    __slots__ = ()

    def _shell(self) -> Consumer:
        return cast(Consumer, self.consumer.context)

    def ack(self) -> asyncio.Future[None]:
        """Settle the message: processed. Raises (in the future) StaleLeaseError if the
        lease had ended, so the message may be delivered again."""
        # Consumer._settle and Client._future, spelled out: an ack per message is
        # the hot path.
        core = self.consumer
        client = core.context._client  # type: ignore[attr-defined]
        loop = client._loop
        now = int(loop.time() * 1_000_000)
        op = core._settle(self, "ack", 0, now)
        future: asyncio.Future[None] = loop.create_future()
        if op.done:
            if op.error is None:
                future.set_result(None)
            else:
                future.set_exception(op.error)
        else:
            op.tag = future
            op.on_done = settle_future
        client_core = client._core
        if client_core._actions or (client._soon is None and client_core.wakeup_changed):
            client._drive(now)
        return future

    def nack(self, delay: float = 0.0) -> asyncio.Future[bool]:
        """Give the message back for redelivery after ``delay`` seconds. The future's
        value is true if it went to the dead letters instead (deliveries used up)."""
        return self._shell()._settle(self, "nack", _micros(delay, "delay"))

    def reject(self) -> asyncio.Future[None]:
        """Send the message straight to the dead letters (it can never be processed)."""
        return self._shell()._settle(self, "reject", 0)

    def extend(self, seconds: float | None = None) -> asyncio.Future[int]:
        """Push the lease's deadline ``seconds`` past now (default: the consumer's
        lease). The future's value is the new deadline (microseconds, leader's clock)."""
        duration = None if seconds is None else max(1, _micros(seconds, "seconds"))
        return self._shell()._extend(self, duration)


class Consumer:
    """An async iterator of :class:`Delivery` from one queue, for one consumer of a group.

    Made by :meth:`herald.Client.consume`; see there. Use it as an async context
    manager (or call :meth:`close`) so the consumer leaves its group when done:
    its unsettled leases then come back at once (reason ``consumer_gone``) rather
    than when they expire.
    """

    def __init__(self, client: _Session, core: ConsumerCore) -> None:
        # ``client`` is the session of the queue's data group (herald.client.client):
        # it drives the core this consumer lives in.
        self._client = client
        self._core = core
        self._waiter: asyncio.Future[None] | None = None
        core.context = self
        core.on_ready = self._wake

    @property
    def core(self) -> ConsumerCore:
        """The sans-IO consumer underneath."""
        return self._core

    @property
    def queue(self) -> str:
        return self._core.queue

    @property
    def group(self) -> str:
        return self._core.group

    @property
    def name(self) -> str:
        return self._core.name

    @property
    def mode(self) -> Mode:
        return self._core.mode

    @property
    def prefetch(self) -> int:
        return self._core.prefetch

    @property
    def auto_extend(self) -> bool:
        return self._core.auto_extend

    @property
    def held(self) -> int:
        """Messages delivered to this consumer and not yet settled (at least once)."""
        return self._core.held

    @property
    def delivered(self) -> int:
        """Messages delivered to this consumer so far."""
        return self._core.delivered

    @property
    def fetches(self) -> int:
        """Deliver requests sent so far."""
        return self._core.fetches

    # -- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        """Join the group (creating it on first use). Called by the first ``__anext__``;
        if joining fails, the next use tries again."""
        client = self._client
        now = client._now()
        future = client._future(self._core.start(now))
        client._drive(now)
        await asyncio.shield(future)

    async def close(self) -> None:
        """Leave the group: every message still leased to this consumer comes back for
        redelivery now (settle what you processed first). Idempotent."""
        client = self._client
        core = self._core
        was_closed = core.closed
        now = client._now()
        future = client._future(core.close(now))
        client._drive(now)
        client._forget_consumer(self)
        self._wake()
        if was_closed:
            return
        try:
            await asyncio.shield(future)
        except HeraldError as error:
            log.info(
                "herald: consumer %s could not leave %s/%s: %s",
                core.name,
                core.queue,
                core.group,
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
        core = self._core
        if not core.joined and not core.closed:
            await self.start()
        client = self._client
        time = client._loop_or_raise().time
        while True:
            now = int(time() * 1_000_000)
            delivery = core.take(now)
            client_core = client._core
            if client_core._actions or (client._soon is None and client_core.wakeup_changed):
                client._drive(now)
            if delivery is not None:
                return delivery  # type: ignore[return-value]  # made as a Delivery
            error = core.take_error()
            if error is not None:
                raise error
            if core.closed or core.exhausted:
                raise StopAsyncIteration
            waiter = self._waiter = client._loop_or_raise().create_future()
            try:
                await waiter
            finally:
                self._waiter = None

    async def get(self, timeout: float | None = None) -> Delivery | None:
        """The next delivery, or None if none arrives within ``timeout`` seconds (or
        the consumer is done)."""
        try:
            return await asyncio.wait_for(self.__anext__(), timeout)
        except TimeoutError:
            return None
        except StopAsyncIteration:
            return None

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- settling -----------------------------------------------------------------------

    def _settle(self, delivery: Delivery, kind: str, delay: int) -> asyncio.Future[Any]:
        client = self._client
        core = self._core
        now = client._now()
        if kind == "ack":
            op: Any = core.ack(delivery, now)
        elif kind == "nack":
            op = core.nack(delivery, delay, now)
        else:
            op = core.reject(delivery, now)
        future = client._future(op)
        client._drive(now)
        return future

    def _extend(self, delivery: Delivery, duration: int | None) -> asyncio.Future[int]:
        client = self._client
        now = client._now()
        future = client._future(self._core.extend(delivery, duration, now))
        client._drive(now)
        return future
