"""The blocking client: :class:`SyncClient`, an asyncio :class:`Client` on a background thread.

Every method blocks until the asyncio client's call completes (its own timeout
bounds the wait) and raises what it raises. The event loop runs in a daemon
thread owned by the SyncClient; close the client (or use it as a context
manager) to stop it.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future as ConcurrentFuture
from types import TracebackType
from typing import Any, TypeVar

from herald.wire.protocol import DeadLetter, PeekedMessage

from ._addresses import DEFAULT_SEEDS
from ._consumer import Consumer, Delivery, Mode
from .client import UNSET, Client, _Unset
from .types import ClusterStatus, QueueStats, Receipt

__all__ = ["SyncClient", "SyncConsumer", "SyncDelivery"]

T = TypeVar("T")


class _LoopThread:
    """An event loop running forever in a daemon thread."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        if threading.current_thread() is self._thread:
            coroutine.close()
            raise RuntimeError("a SyncClient cannot be used from its own event-loop thread")
        future: ConcurrentFuture[T] = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        try:
            return future.result()
        except KeyboardInterrupt:
            future.cancel()
            raise

    def stop(self) -> None:
        if self.loop.is_closed():
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        if not self._thread.is_alive():
            self.loop.close()


async def _await(make: Callable[[], Awaitable[T]]) -> T:
    return await make()


class SyncDelivery:
    """A :class:`~herald.client.Delivery` whose settle methods block until confirmed."""

    __slots__ = ("_runner", "delivery")

    def __init__(self, runner: _LoopThread, delivery: Delivery) -> None:
        self._runner = runner
        #: The asyncio delivery underneath.
        self.delivery = delivery

    @property
    def body(self) -> bytes:
        return self.delivery.body

    @property
    def headers(self) -> dict[str, str]:
        return self.delivery.headers

    @property
    def sequence(self) -> int:
        return self.delivery.sequence

    @property
    def attempt(self) -> int:
        return self.delivery.attempt

    @property
    def redelivery(self) -> bool:
        return self.delivery.redelivery

    @property
    def reason(self) -> str | None:
        return self.delivery.reason

    @property
    def deadline(self) -> int:
        return self.delivery.deadline

    @property
    def message_id(self) -> str | None:
        return self.delivery.message_id

    @property
    def published_at(self) -> int:
        return self.delivery.published_at

    @property
    def incarnation(self) -> int:
        return self.delivery.incarnation

    @property
    def token(self) -> int:
        return self.delivery.token

    @property
    def queue(self) -> str:
        return self.delivery.queue

    @property
    def group(self) -> str:
        return self.delivery.group

    @property
    def settled(self) -> bool:
        return self.delivery.settled

    def ack(self) -> None:
        """Settle: processed. Raises StaleLeaseError if the lease had ended."""
        self._runner.run(_await(self.delivery.ack))

    def nack(self, delay: float = 0.0) -> bool:
        """Give it back for redelivery after ``delay`` s; True if it was dead-lettered."""
        return self._runner.run(_await(lambda: self.delivery.nack(delay)))

    def reject(self) -> None:
        """Send it to the dead letters."""
        self._runner.run(_await(self.delivery.reject))

    def extend(self, seconds: float | None = None) -> int:
        """Push the lease's deadline; returns the new deadline (µs, leader's clock)."""
        return self._runner.run(_await(lambda: self.delivery.extend(seconds)))

    def __repr__(self) -> str:
        return f"Sync{self.delivery!r}"


class SyncConsumer:
    """A plain iterator of :class:`SyncDelivery`; a context manager that leaves the group."""

    def __init__(self, runner: _LoopThread, consumer: Consumer) -> None:
        self._runner = runner
        #: The asyncio consumer underneath.
        self.consumer = consumer

    def __iter__(self) -> Iterator[SyncDelivery]:
        return self

    def __next__(self) -> SyncDelivery:
        try:
            delivery = self._runner.run(self.consumer.__anext__())
        except StopAsyncIteration:
            raise StopIteration from None
        return SyncDelivery(self._runner, delivery)

    def get(self, timeout: float | None = None) -> SyncDelivery | None:
        """The next delivery, or None if none arrives within ``timeout`` seconds."""
        delivery = self._runner.run(self.consumer.get(timeout))
        return None if delivery is None else SyncDelivery(self._runner, delivery)

    def close(self) -> None:
        """Leave the group (unsettled leases come back now)."""
        self._runner.run(self.consumer.close())

    def __enter__(self) -> SyncConsumer:
        self._runner.run(self.consumer.start())
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class SyncClient:
    """The blocking twin of :class:`herald.Client`: the same calls, each blocking.

    Connects in the constructor (raises UnreachableError if no leader answers in
    ``connect_timeout``). Options are :class:`~herald.Client`'s. Thread-safe:
    calls from several threads are all carried out by the one event loop.

    ::

        with SyncClient("127.0.0.1:7430") as client:
            client.create_queue("jobs")
            client.publish("jobs", b"hello")
            with client.consume("jobs", "workers") as deliveries:
                for delivery in deliveries:
                    print(delivery.body)
                    delivery.ack()
                    break
    """

    def __init__(self, seeds: str | Sequence[str] = DEFAULT_SEEDS, **options: Any) -> None:
        self._runner = _LoopThread("herald-client")
        try:
            self._client: Client = self._runner.run(self._start(seeds, options))
        except BaseException:
            self._runner.stop()
            raise

    @classmethod
    def connect(cls, seeds: str | Sequence[str] = DEFAULT_SEEDS, **options: Any) -> SyncClient:
        """The same as the constructor, named like :meth:`herald.Client.connect`."""
        return cls(seeds, **options)

    @staticmethod
    async def _start(seeds: str | Sequence[str], options: dict[str, Any]) -> Client:
        return await Client.connect(seeds, **options)

    @property
    def client(self) -> Client:
        """The asyncio client underneath (use it only on its loop)."""
        return self._client

    @property
    def producer_id(self) -> str:
        return self._client.producer_id

    @property
    def leader(self) -> str | None:
        return self._client.leader

    def close(self) -> None:
        """Leave consumer groups, wait for publishes in flight, close, stop the thread."""
        if self._runner.loop.is_closed():
            return
        try:
            self._runner.run(self._client.close())
        finally:
            self._runner.stop()

    def __enter__(self) -> SyncClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- the API ------------------------------------------------------------------------

    def publish(
        self,
        queue: str,
        body: bytes | str,
        *,
        headers: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
        key: str | None = None,
        timeout: float | None = None,
    ) -> Receipt:
        """Publish and wait for the receipt; see :meth:`herald.Client.publish`."""
        client = self._client
        return self._runner.run(
            _await(lambda: client.publish(queue, body, headers=headers, key=key, timeout=timeout))
        )

    def publish_many(
        self,
        queue: str,
        bodies: Iterable[bytes | str],
        *,
        headers: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
        timeout: float | None = None,
    ) -> list[Receipt]:
        """Publish several messages pipelined (one round of batched frames, not one
        round trip each); returns their receipts in order. Raises the first error."""
        client = self._client
        items = list(bodies)

        async def run() -> list[Receipt]:
            futures = [client.publish(queue, b, headers=headers, timeout=timeout) for b in items]
            return list(await asyncio.gather(*futures))

        return self._runner.run(run())

    def consume(
        self,
        queue: str,
        group: str,
        *,
        mode: Mode = "at_least_once",
        prefetch: int = 100,
        consumer: str | None = None,
        auto_extend: bool = False,
        lease: float | None = None,
        wait: float = 5.0,
        session_timeout: float = 30.0,
        limit: int | None = None,
    ) -> SyncConsumer:
        """A blocking iterator of deliveries; see :meth:`herald.Client.consume`."""
        client = self._client

        async def make() -> Consumer:
            return client.consume(
                queue,
                group,
                mode=mode,
                prefetch=prefetch,
                consumer=consumer,
                auto_extend=auto_extend,
                lease=lease,
                wait=wait,
                session_timeout=session_timeout,
                limit=limit,
            )

        return SyncConsumer(self._runner, self._runner.run(make()))

    def create_queue(
        self,
        name: str,
        *,
        max_message_bytes: int | _Unset = UNSET,
        max_length: int | _Unset | None = UNSET,
        max_bytes: int | _Unset | None = UNSET,
        max_deliveries: int | _Unset = UNSET,
        dedup_ttl: float | _Unset | None = UNSET,
        lease_duration: float | _Unset = UNSET,
        producer_window: int | _Unset = UNSET,
        producer_ttl: float | _Unset | None = UNSET,
        timeout: float | None = None,
    ) -> bool:
        """See :meth:`herald.Client.create_queue` (durations in seconds)."""
        return self._runner.run(
            self._client.create_queue(
                name,
                max_message_bytes=max_message_bytes,
                max_length=max_length,
                max_bytes=max_bytes,
                max_deliveries=max_deliveries,
                dedup_ttl=dedup_ttl,
                lease_duration=lease_duration,
                producer_window=producer_window,
                producer_ttl=producer_ttl,
                timeout=timeout,
            )
        )

    def delete_queue(self, name: str, *, timeout: float | None = None) -> None:
        self._runner.run(self._client.delete_queue(name, timeout=timeout))

    def purge(self, name: str, *, dead_letters: bool = False, timeout: float | None = None) -> int:
        return self._runner.run(
            self._client.purge(name, dead_letters=dead_letters, timeout=timeout)
        )

    def delete_group(self, queue: str, group: str, *, timeout: float | None = None) -> None:
        self._runner.run(self._client.delete_group(queue, group, timeout=timeout))

    def queues(self, *, timeout: float | None = None) -> list[str]:
        return self._runner.run(self._client.queues(timeout=timeout))

    def stats(self, queue: str, *, timeout: float | None = None) -> QueueStats:
        return self._runner.run(self._client.stats(queue, timeout=timeout))

    def dead_letters(
        self,
        queue: str,
        group: str | None = None,
        *,
        limit: int = 100,
        timeout: float | None = None,
    ) -> list[DeadLetter]:
        return self._runner.run(
            self._client.dead_letters(queue, group, limit=limit, timeout=timeout)
        )

    def peek(
        self,
        queue: str,
        group: str | None = None,
        *,
        limit: int = 10,
        timeout: float | None = None,
    ) -> list[PeekedMessage]:
        """Look without taking (no lease, no attempt); see :meth:`herald.Client.peek`."""
        return self._runner.run(self._client.peek(queue, group, limit=limit, timeout=timeout))

    def redrive(
        self,
        queue: str,
        group: str,
        sequences: Iterable[int] = (),
        *,
        timeout: float | None = None,
    ) -> int:
        return self._runner.run(
            self._client.redrive(queue, group, list(sequences), timeout=timeout)
        )

    def status(self, *, timeout: float | None = None) -> ClusterStatus:
        return self._runner.run(self._client.status(timeout=timeout))
