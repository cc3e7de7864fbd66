"""The asyncio client: :class:`Client`.

What a retry means, per operation
---------------------------------

Every call has a timeout (the client's ``timeout``, or the call's own). When it
passes, the call raises :class:`~herald.errors.RequestTimeoutError`: the outcome
is *unknown* -- the broker may or may not have carried the operation out.

When the connection to the leader is lost (or the leader changes), the client
reconnects, with exponential backoff and jitter, and then:

- **publish** (idempotent producer, the default) is resent with the same
  producer id and sequence number: it is published exactly once, and a retry
  that finds the message already there gets the original receipt with
  ``duplicate=True``. With ``idempotent=False``, a publish with a ``key`` is
  resent too (the broker's idempotency index answers the retry); one without a
  key raises :class:`~herald.errors.ConnectionClosedError` (outcome unknown).
  A publish that times out stays in flight behind the scenes, so the numbers
  after it stay valid; its caller just stops waiting.
- **reads** (``queues``, ``stats``, ``dead_letters``, ``status``) and
  **create_queue** are resent (creating a queue that exists with the same
  options is a no-op; a retried create may report ``False`` although the first
  attempt created it).
- **ack** and **reject** are resent; if the retry finds the message already
  settled, the call succeeds: the first attempt landed, or (if the lease had run
  out meanwhile) the message was settled another way. It will not come back.
- **nack** is resent; a retry that finds the lease ended succeeds: the message
  comes back either way.
- **extend** is resent (the deadline is set from the time the retry lands).
- **delete_queue**, **purge**, **delete_group** and **redrive** are *not* resent
  (repeating them could act on messages that arrived in between): they raise
  ConnectionClosedError, outcome unknown.
- A consumer's **deliver** requests are not resent: the messages a lost request
  leased come back when their lease expires (``at_least_once``), or are lost
  (``at_most_once``: that is the mode's contract). The consumer asks again.

A reply ``NotLeaderError``, ``ProposalLostError``, ``ShuttingDownError`` or
``OverloadedError`` means the request was not carried out; the client
reconnects (to the leader it names) and resends it, whatever the operation.
``OutcomeUnknownError`` (the leader stepped down before the command committed)
is handled like a lost connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import secrets
from collections.abc import Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any, Final

from herald.broker.model import QueueOptions
from herald.errors import ConnectionClosedError, HeraldError, UsageError
from herald.wire.protocol import (
    CreateQueue,
    DeadLetter,
    DeadLetters,
    DeleteGroup,
    DeleteQueue,
    ListQueues,
    Publish,
    PurgeQueue,
    Redrive,
    Stats,
    Status,
)

from ._consumer import Consumer, Mode
from ._producer import PublishCall, QueueProducer
from ._session import DEFAULT_SEEDS, Session, ValueCall, parse_seeds
from .types import ClusterStatus, QueueStats, Receipt, convert, durability

__all__ = ["DEFAULT_SEEDS", "Client"]

#: The most publishes in flight per queue: the broker's largest producer window.
MAX_IN_FLIGHT: Final = 1000
_MAX_NAME = 255
_MAX_KEY = 1024


class _Unset(enum.Enum):
    UNSET = 0


UNSET: Final = _Unset.UNSET

# Option fields given in seconds by the caller, in microseconds on the wire.
_DURATIONS = ("dedup_ttl", "lease_duration", "producer_ttl")


def _check_name(kind: str, value: str) -> None:
    if not isinstance(value, str) or not 0 < len(value) <= _MAX_NAME or not value.isprintable():
        raise UsageError(f"{kind} name must be 1..{_MAX_NAME} printable characters: {value!r}")


def _headers(headers: Mapping[str, str] | Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    pairs = list(headers.items()) if isinstance(headers, Mapping) else [tuple(p) for p in headers]
    seen: set[str] = set()
    out: list[tuple[str, str]] = []
    for pair in pairs:
        if len(pair) != 2 or not isinstance(pair[0], str) or not isinstance(pair[1], str):
            raise UsageError(f"a header must be a (str, str) pair: {pair!r}")
        name, value = pair
        if not name or name in seen:
            raise UsageError(f"empty or repeated header name {name!r}")
        seen.add(name)
        out.append((name, value))
    return out


def _body(body: bytes | bytearray | memoryview | str) -> bytes:
    if isinstance(body, str):
        return body.encode()
    if isinstance(body, (bytearray, memoryview)):
        return bytes(body)
    raise UsageError(f"a message body must be bytes or str, not {type(body).__name__}")


class Client:
    """An asyncio client of a Herald cluster: one connection to the leader.

    ``seeds``: where to look for the cluster: ``"host:port"``, a comma-separated
    string of them, or a list (default ``127.0.0.1:7430``). The client connects
    to a seed, learns the leader from its greeting (or from a ``NotLeaderError``
    answer) and keeps one connection to the leader, reconnecting with
    exponential backoff and jitter when it fails.

    ``timeout``: the default time limit of every call, in seconds.
    ``connect_timeout``: how long :meth:`connect` waits for a leader.
    ``linger``: seconds to hold requests before sending, to batch more of them
    (like a Kafka producer's ``linger.ms``); 0 sends once per event-loop
    iteration, which already batches everything issued concurrently.
    ``idempotent``: number publishes for exactly-once retries (default; see the
    module docstring). ``max_in_flight``: publishes in flight per queue, at most
    1000 (the broker's receipt window; see :mod:`herald.client._producer`).

    Use ``async with Client(...) as client`` or ``client = await
    Client.connect(...)`` and ``await client.close()``. A client belongs to the
    event loop that started it and is not thread-safe; see
    :class:`herald.SyncClient` for blocking code.
    """

    def __init__(
        self,
        seeds: str | Sequence[str] = DEFAULT_SEEDS,
        *,
        name: str | None = None,
        timeout: float = 10.0,
        connect_timeout: float = 10.0,
        linger: float = 0.0,
        idempotent: bool = True,
        max_in_flight: int = MAX_IN_FLIGHT,
    ) -> None:
        if timeout <= 0 or connect_timeout <= 0 or linger < 0:
            raise UsageError("timeouts must be positive and linger must not be negative")
        if not 1 <= max_in_flight <= MAX_IN_FLIGHT:
            raise UsageError(f"max_in_flight must be in 1..{MAX_IN_FLIGHT}, not {max_in_flight}")
        self.seeds = parse_seeds(seeds)
        suffix = secrets.token_hex(6)
        self.name = name or f"herald-py-{suffix}"
        _check_name("client", self.name)
        #: This client's idempotent-producer id (random, one per instance).
        self.producer_id = f"{self.name}/{suffix}" if name else self.name
        _check_name("producer", self.producer_id)
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.linger = linger
        self.idempotent = idempotent
        self.max_in_flight = max_in_flight
        self._session: Session | None = None
        self._producers: dict[str, QueueProducer] = {}
        self._consumers: set[Consumer] = set()
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- lifecycle ----------------------------------------------------------------------

    @classmethod
    async def connect(cls, seeds: str | Sequence[str] = DEFAULT_SEEDS, **options: Any) -> Client:
        """Create a client and wait until it is connected to the leader.

        Raises :class:`~herald.client.UnreachableError` if no leader answers within
        ``connect_timeout``.
        """
        client = cls(seeds, **options)
        await client.start()
        return client

    async def start(self) -> None:
        """Connect (see :meth:`connect`). Raises UnreachableError."""
        if self._session is None:
            self._loop = asyncio.get_running_loop()
            self._session = Session(
                self.seeds,
                name=self.name,
                timeout=self.timeout,
                connect_timeout=self.connect_timeout,
                linger=self.linger,
            )
            self._session.sweep_hooks.append(self._sweep)
            self._session.start()
        try:
            await self._session.wait_connected(self.connect_timeout)
        except BaseException:
            await self._session.close()
            raise

    async def close(self, *, flush: bool = True) -> None:
        """Leave every consumer's group, wait for the publishes in flight (when
        ``flush``, up to the timeout), then close the connection. Whatever is still
        pending fails with ConnectionClosedError."""
        session = self._session
        if session is None or session.closed:
            return
        for consumer in list(self._consumers):
            await consumer.close()
        if flush:
            with contextlib.suppress(TimeoutError, HeraldError):
                await asyncio.wait_for(self.flush(), self.timeout)
        await session.close()
        error = ConnectionClosedError("the client was closed")
        for producer in self._producers.values():
            producer.close(error)

    async def __aenter__(self) -> Client:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close(flush=exc_type is None)

    @property
    def connected(self) -> bool:
        """True while a connection to the leader is open."""
        return self._session is not None and self._session.connected

    @property
    def leader(self) -> str | None:
        """The address of the leader this client is connected to, if it is."""
        return None if self._session is None else self._session.leader

    @property
    def session(self) -> Session:
        """The connection machinery (for tests and benchmarks)."""
        if self._session is None:
            raise UsageError("the client is not started: use Client.connect or async with")
        return self._session

    def _sweep(self, now: float) -> None:
        for producer in self._producers.values():
            if producer.backlog:
                producer.sweep(now)

    # -- publishing -----------------------------------------------------------------------

    def publish(
        self,
        queue: str,
        body: bytes | str,
        *,
        headers: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
        key: str | None = None,
        timeout: float | None = None,
    ) -> asyncio.Future[Receipt]:
        """Publish ``body`` to ``queue``; await the result for its :class:`Receipt`.

        The message is sent in this event-loop iteration's frame (or after
        ``linger``), together with every other request issued meanwhile, so
        ``await asyncio.gather(*(client.publish(q, b) for b in bodies))`` pipelines
        them; no task is created per message. The receipt arrives once the
        message is committed on a majority.

        ``headers``: string pairs kept with the message. ``key``: an idempotency
        key (the message id): a second publish with the same key within the
        queue's ``dedup_ttl`` is not stored again and gets the first one's receipt
        with ``duplicate=True`` -- across clients and restarts, unlike the
        automatic producer numbering, which covers this client's own retries.

        At most ``max_in_flight`` publishes per queue are in flight; later ones
        wait in the client, in order. Raises (through the future)
        :class:`~herald.errors.UnknownQueueError`,
        :class:`~herald.errors.MessageTooLargeError`,
        :class:`~herald.errors.QueueFullError`, ... as the broker refuses, or
        RequestTimeoutError (outcome unknown). Raises UsageError at once for
        malformed arguments.
        """
        session = self._session
        loop = self._loop
        if session is None or loop is None:
            raise UsageError("the client is not started: use Client.connect or async with")
        if type(body) is not bytes:
            body = _body(body)
        pairs = _headers(headers) if headers else []
        if key is not None and (not isinstance(key, str) or not 0 < len(key) <= _MAX_KEY):
            raise UsageError(f"key must be 1..{_MAX_KEY} characters")
        future: asyncio.Future[Receipt] = loop.create_future()
        deadline = loop.time() + (self.timeout if timeout is None else timeout)
        if not self.idempotent:
            request = Publish(session.new_id(), queue, body, pairs, key)
            _check_name("queue", queue)
            session.submit(
                ValueCall(request, future, deadline, key is not None, _receipt), len(body)
            )
            return future
        producer = self._producers.get(queue)
        if producer is None:
            _check_name("queue", queue)
            producer = self._producers[queue] = QueueProducer(
                session, queue, self.producer_id, self.max_in_flight
            )
        producer.publish(PublishCall(producer, future, deadline, body, pairs, key))
        return future

    async def flush(self) -> None:
        """Wait until every publish issued so far is confirmed or has failed."""
        futures = [f for producer in self._producers.values() for f in producer.futures()]
        if futures:
            await asyncio.wait(futures)

    def in_flight(self, queue: str) -> int:
        """Publishes to ``queue`` sent and not yet confirmed (plus those waiting to be sent)."""
        producer = self._producers.get(queue)
        return 0 if producer is None else len(producer.inflight) + len(producer.backlog)

    # -- consuming ------------------------------------------------------------------------

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
    ) -> Consumer:
        """Consume ``queue`` as a member of consumer ``group`` (created on first use).

        Returns an async iterator of :class:`~herald.client.Delivery`; use it as an
        async context manager so the consumer leaves its group when done::

            async with client.consume("orders", "billing") as deliveries:
                async for delivery in deliveries:
                    handle(delivery.body)
                    await delivery.ack()

        ``mode``: ``"at_least_once"`` (default): each delivery is a lease; ack it
        after processing; if you crash or the lease (``lease`` seconds, default the
        queue's) runs out first, the message comes back -- you may process a
        message twice, never lose one. ``"at_most_once"``: the broker settles
        each message as it delivers it; ack and nack do nothing; a crash after
        delivery loses the message -- never processed twice.

        ``prefetch``: messages leased ahead of processing (at least once: until
        settled). ``consumer``: this consumer's name in the group (default: a new
        random one). ``auto_extend``: extend each unsettled lease in the
        background before it runs out, for long work; stops once the delivery is
        settled. ``wait``: the long-poll time of each fetch. ``session_timeout``:
        the broker forgets a consumer silent this long and gives its leases back
        (the consumer keeps its session alive by itself).
        """
        session = self.session
        _check_name("queue", queue)
        _check_name("group", group)
        name = consumer or f"{self.name}-{secrets.token_hex(4)}"
        _check_name("consumer", name)
        created = Consumer(
            self,
            session,
            queue,
            group,
            mode=mode,
            prefetch=prefetch,
            consumer=name,
            auto_extend=auto_extend,
            lease=lease,
            wait=wait,
            session_timeout=session_timeout,
            timeout=self.timeout,
        )
        self._consumers.add(created)
        return created

    # -- administration ---------------------------------------------------------------------

    async def _call(
        self, request: Any, *, retry: bool, convert: Any = None, timeout: float | None
    ) -> Any:
        session = self.session
        loop = session.loop
        future: asyncio.Future[Any] = loop.create_future()
        deadline = loop.time() + (self.timeout if timeout is None else timeout)
        session.submit(ValueCall(request, future, deadline, retry, convert))
        return await future

    async def create_queue(
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
        """Create queue ``name``; True if created, False if it existed with the same options.

        Options left out take the broker's defaults (:class:`herald.broker.QueueOptions`).
        ``None`` means unlimited (``max_length``, ``max_bytes``) or forever
        (``dedup_ttl``, ``producer_ttl``). Durations are in **seconds** here.
        Raises :class:`~herald.errors.QueueExistsError` if it exists with other
        options, :class:`~herald.errors.InvalidOptionsError` for values out of range.
        """
        _check_name("queue", name)
        given: dict[str, Any] = {
            key: value
            for key, value in (
                ("max_message_bytes", max_message_bytes),
                ("max_length", max_length),
                ("max_bytes", max_bytes),
                ("max_deliveries", max_deliveries),
                ("dedup_ttl", dedup_ttl),
                ("lease_duration", lease_duration),
                ("producer_window", producer_window),
                ("producer_ttl", producer_ttl),
            )
            if value is not UNSET
        }
        for key in _DURATIONS:
            if given.get(key) is not None:
                seconds = given[key]
                if not isinstance(seconds, (int, float)) or seconds <= 0:
                    raise UsageError(f"{key} must be a positive number of seconds, not {seconds!r}")
                given[key] = max(1, round(seconds * 1_000_000))
        QueueOptions(**given)  # refuse bad values here, with InvalidOptionsError
        session = self.session
        value = await self._call(
            CreateQueue(session.new_id(), name, given), retry=True, timeout=timeout
        )
        return bool(value.get("created", False)) if isinstance(value, dict) else bool(value)

    async def delete_queue(self, name: str, *, timeout: float | None = None) -> None:
        """Delete a queue with its messages, groups and dead letters. Not retried.
        Raises UnknownQueueError."""
        _check_name("queue", name)
        await self._call(DeleteQueue(self.session.new_id(), name), retry=False, timeout=timeout)

    async def purge(
        self, name: str, *, dead_letters: bool = False, timeout: float | None = None
    ) -> int:
        """Drop every message of the queue (and its dead letters if asked); returns how
        many messages were dropped. Not retried."""
        _check_name("queue", name)
        value = await self._call(
            PurgeQueue(self.session.new_id(), name, dead_letters), retry=False, timeout=timeout
        )
        return int(value.get("purged", 0)) if isinstance(value, dict) else 0

    async def delete_group(self, queue: str, group: str, *, timeout: float | None = None) -> None:
        """Delete a consumer group with its leases and dead letters. Not retried."""
        await self._call(
            DeleteGroup(self.session.new_id(), queue, group), retry=False, timeout=timeout
        )

    async def queues(self, *, timeout: float | None = None) -> list[str]:
        """The names of every queue, sorted."""
        value = await self._call(ListQueues(self.session.new_id()), retry=True, timeout=timeout)
        return [str(name) for name in value]

    async def stats(self, queue: str, *, timeout: float | None = None) -> QueueStats:
        """The queue's gauges, counters, options and groups (times in microseconds)."""
        return await self._call(  # type: ignore[no-any-return]
            Stats(self.session.new_id(), queue),
            retry=True,
            convert=_stats,
            timeout=timeout,
        )

    async def dead_letters(
        self,
        queue: str,
        group: str | None = None,
        *,
        limit: int = 100,
        timeout: float | None = None,
    ) -> list[DeadLetter]:
        """The queue's dead letters (of one group, if given) in the order they died,
        at most ``limit`` (0: all), each with its delivery history."""
        if limit < 0:
            raise UsageError(f"limit must not be negative, not {limit}")
        return await self._call(  # type: ignore[no-any-return]
            DeadLetters(self.session.new_id(), queue, group or "", limit),
            retry=True,
            convert=_dead_letters,
            timeout=timeout,
        )

    async def redrive(
        self,
        queue: str,
        group: str,
        sequences: Iterable[int] = (),
        *,
        timeout: float | None = None,
    ) -> int:
        """Move dead letters of ``group`` back for redelivery (all of them when
        ``sequences`` is empty); returns how many moved. Not retried."""
        value = await self._call(
            Redrive(self.session.new_id(), queue, group, list(sequences)),
            retry=False,
            timeout=timeout,
        )
        return int(value.get("redriven", 0)) if isinstance(value, dict) else 0

    async def status(self, *, timeout: float | None = None) -> ClusterStatus:
        """The cluster as the leader sees it: term, commit index, each node's lag."""
        return await self._call(  # type: ignore[no-any-return]
            Status(self.session.new_id()), retry=True, convert=_status, timeout=timeout
        )


def _receipt(value: Any) -> Receipt:
    return Receipt(value[0], value[1], value[2], durability(value[3]))


def _stats(value: Any) -> QueueStats:
    return convert(value, QueueStats, "queue stats")  # type: ignore[no-any-return]


def _dead_letters(value: Any) -> list[DeadLetter]:
    return convert(value, list[DeadLetter], "dead letters")  # type: ignore[no-any-return]


def _status(value: Any) -> ClusterStatus:
    return convert(value, ClusterStatus, "status")  # type: ignore[no-any-return]
