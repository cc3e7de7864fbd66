"""One connection to the leader: discovery, pipelining, batching, reconnects, timeouts.

A :class:`Session` owns the client's single connection. Requests are *calls*
(:class:`Call`): a request struct and what to do with its reply. Every call
issued in one event-loop iteration goes out in one frame: :meth:`Session.submit`
appends to an outbox and the first append schedules a flush with
``loop.call_soon`` (or ``call_later(linger)``). Replies are matched by id.

When the connection is lost, every call that was sent and may not be repeated
(``retry`` false) fails with :class:`~herald.errors.ConnectionClosedError`: its
outcome is unknown. The others stay pending and are resent, in the order they
were first issued, on the next connection, which the session opens with
exponential backoff and full jitter, first to the leader it last heard of, then
to the seeds. A node that is not the leader answers ``NotLeaderError`` naming
the leader; the session reconnects there. ``NotLeaderError``,
``ProposalLostError``, ``ShuttingDownError`` and ``OverloadedError`` mean the
request was not carried out, so the call that got one is resent (on the next
connection, in its original order) whatever its ``retry`` says.
``OutcomeUnknownError`` (the leader stepped down before the command committed)
and a server-side ``RequestTimeoutError`` (a read could not confirm leadership)
are handled like a lost connection: retryable calls are resent, the others
fail with that error.

A sweeper task wakes a few times per timeout and expires calls past their
deadline (:meth:`Call.expire`). A call that expires on a connection that has
been silent since the call went out is taken as a sign of a dead connection:
the session drops it and reconnects.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable, Iterable
from typing import Any, Final, cast

from herald.errors import (
    ConnectionClosedError,
    HeraldError,
    ProtocolError,
    RequestTimeoutError,
    UsageError,
)
from herald.wire.frames import (
    DEFAULT_MAX_FRAME,
    FrameDecoder,
    decode_handshake_reply,
    decode_replies,
    encode_frame,
    encode_messages,
)
from herald.wire.protocol import (
    MAGIC,
    PROTOCOL_VERSION,
    ErrorInfo,
    Hello,
    Publish,
    Refused,
    Reply,
    Welcome,
)

from ._errors import UnreachableError, error_from_info

__all__ = [
    "DEFAULT_PORT",
    "DEFAULT_SEEDS",
    "Call",
    "Session",
    "parse_seeds",
    "split_address",
]

log = logging.getLogger("herald.client")

DEFAULT_PORT: Final = 7430
DEFAULT_SEEDS: Final = "127.0.0.1:7430"
#: Backoff between connection attempts: base, cap (seconds); full jitter.
BACKOFF_BASE: Final = 0.05
BACKOFF_CAP: Final = 2.0
#: How many leader redirects one discovery round follows from one seed.
MAX_REDIRECTS: Final = 4
#: Error codes meaning the request was not carried out: resent on a new connection.
_NOT_APPLIED: Final = frozenset(
    {"NotLeaderError", "OverloadedError", "ProposalLostError", "ShuttingDownError"}
)
#: Error codes meaning the outcome is unknown (the node stepped down, or could not
#: confirm it still leads): retryable calls are resent, the others fail with it.
_UNKNOWN: Final = frozenset({"OutcomeUnknownError", "RequestTimeoutError"})
#: Codes after which the next connection waits a little first.
_PAUSE: Final = frozenset({"OverloadedError", "ShuttingDownError"})
#: Bytes a request other than a publish is assumed to take, for frame splitting.
_SMALL_REQUEST: Final = 96


# -- addresses ---------------------------------------------------------------------------


def split_address(address: str) -> tuple[str, int]:
    """``host:port`` (``[v6]:port``; the port defaults to 7430) as a pair.

    Raises :class:`~herald.errors.UsageError` for an empty host or a bad port.
    """
    text = address.strip()
    if text.startswith("herald://"):
        text = text[len("herald://") :]
    text = text.rstrip("/")
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ""
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep or ":" in host:  # no port, or a bare IPv6 address
            host, port_text = text, ""
    if not host:
        raise UsageError(f"bad address {address!r}: no host")
    if not port_text:
        return host, DEFAULT_PORT
    try:
        port = int(port_text)
    except ValueError:
        raise UsageError(f"bad address {address!r}: port {port_text!r} is not a number") from None
    if not 0 < port < 65536:
        raise UsageError(f"bad address {address!r}: port {port} is out of range")
    return host, port


def parse_seeds(seeds: str | Iterable[str]) -> list[str]:
    """Seed addresses from ``"h:p"``, ``"h1:p1,h2:p2"`` or a list of either, normalised
    to ``host:port`` and de-duplicated in order. Raises UsageError if none is given."""
    parts = seeds.split(",") if isinstance(seeds, str) else [p for s in seeds for p in s.split(",")]
    out: list[str] = []
    for part in parts:
        if not part.strip():
            continue
        host, port = split_address(part)
        normal = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        if normal not in out:
            out.append(normal)
    if not out:
        raise UsageError("no seed address given")
    return out


# -- calls --------------------------------------------------------------------------------


class Call:
    """A request in flight and what to do with its answer.

    ``retry``: the request may be sent again after a lost connection (it is
    idempotent, or its retry's answer is interpreted knowing it is a retry:
    ``attempts`` counts the sends). ``sent``: it went out on the current
    connection. Subclasses override the four outcomes.
    """

    __slots__ = ("attempts", "deadline", "future", "id", "request", "retry", "sent", "sent_at")

    def __init__(
        self,
        request: Any,
        future: asyncio.Future[Any] | None,
        deadline: float,
        retry: bool,
    ) -> None:
        self.request = request
        self.id: int = request.id if request is not None else 0
        self.future = future
        self.deadline = deadline
        self.retry = retry
        self.sent = False
        self.sent_at = 0.0
        self.attempts = 0

    def resolve(self, value: Any) -> None:
        """The broker accepted the request; ``value`` is the reply's value."""
        future = self.future
        if future is not None and not future.done():
            future.set_result(value)

    def reject(self, error: HeraldError) -> None:
        """The broker refused the request (or it can no longer complete)."""
        future = self.future
        if future is not None and not future.done():
            future.set_exception(error)

    def expire(self, timeout_error: RequestTimeoutError) -> bool:
        """The deadline passed. Return True to forget the call (its reply will be
        ignored), False to keep it pending."""
        self.reject(timeout_error)
        return True

    def lost(self, error: ConnectionClosedError) -> None:
        """The connection closed after the request was sent; it will not be retried."""
        self.reject(error)


class ValueCall(Call):
    """A call whose reply value is turned into the result by ``convert``."""

    __slots__ = ("convert",)

    def __init__(
        self,
        request: Any,
        future: asyncio.Future[Any],
        deadline: float,
        retry: bool,
        convert: Callable[[Any], Any] | None,
    ) -> None:
        super().__init__(request, future, deadline, retry)
        self.convert = convert

    def resolve(self, value: Any) -> None:
        future = self.future
        if future is None or future.done():
            return
        convert = self.convert
        if convert is None:
            future.set_result(value)
            return
        try:
            result = convert(value)
        except HeraldError as error:
            future.set_exception(error)
        else:
            future.set_result(result)


# -- the connection -----------------------------------------------------------------------


class _Connection(asyncio.Protocol):
    """The transport of one TCP connection: frames in, frames out, handshake first."""

    def __init__(self, session: Session, address: str) -> None:
        self.session = session
        self.address = address
        self.transport: asyncio.Transport | None = None
        self.decoder = FrameDecoder(DEFAULT_MAX_FRAME)
        self.handshake: asyncio.Future[Welcome | Refused] = session.loop.create_future()
        self.last_heard = session.loop.time()
        self.closed = False
        self.welcome: Welcome | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but behave as one.
        self.transport = cast(asyncio.Transport, transport)
        hello = Hello(MAGIC, PROTOCOL_VERSION, "client", client=self.session.name)
        self.transport.write(encode_frame(hello))

    def data_received(self, data: bytes) -> None:
        self.last_heard = self.session.loop.time()
        try:
            for payload in self.decoder.feed(data):
                if not self.handshake.done():
                    self.handshake.set_result(decode_handshake_reply(payload))
                    continue
                if self.closed:
                    return
                self.session._on_replies(self, decode_replies(payload))
        except ProtocolError as error:
            log.warning("herald: bad frame from %s: %s; closing", self.address, error)
            if not self.handshake.done():
                self.handshake.set_exception(error)
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.handshake.done():
            self.handshake.set_exception(
                ConnectionClosedError(f"{self.address} closed the connection during the handshake")
            )
        if not self.closed:
            self.closed = True
            self.session._on_lost(self, exc)

    def write(self, data: bytes) -> None:
        transport = self.transport
        if transport is not None and not self.closed:
            transport.write(data)

    def close(self) -> None:
        """Close now; the session hears of it at once (not when the transport is gone)."""
        if self.closed:
            return
        self.closed = True
        if not self.handshake.done():
            self.handshake.cancel()
        if self.transport is not None:
            self.transport.close()
        self.session._on_lost(self, None)


# -- the session --------------------------------------------------------------------------


class Session:
    """The client's connection to the leader, with discovery, batching and retries."""

    def __init__(
        self,
        seeds: list[str],
        *,
        name: str,
        timeout: float,
        connect_timeout: float,
        linger: float,
        rng: random.Random | None = None,
    ) -> None:
        self.seeds = seeds
        self.name = name
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.linger = linger
        self.loop = asyncio.get_running_loop()
        self._rng = rng or random.Random()
        self._pending: dict[int, Call] = {}
        self._outbox: list[Any] = []
        self._outbox_bytes = 0
        self._flush_handle: asyncio.Handle | asyncio.TimerHandle | None = None
        self._next_id = 1
        self._conn: _Connection | None = None
        self._max_frame = DEFAULT_MAX_FRAME
        self._leader_hint: str | None = None
        self._connected = asyncio.Event()
        self._connector: asyncio.Task[None] | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._closed = False
        self._last_error: BaseException | None = None
        self._pause_until = 0.0
        #: Called from the sweeper with the loop's time (the producers' backlogs).
        self.sweep_hooks: list[Callable[[float], None]] = []
        #: Counters, for tests and benchmarks.
        self.frames_sent = 0
        self.connects = 0

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> None:
        if self._sweeper is None:
            self._sweeper = self.loop.create_task(self._sweep_loop())
            self._ensure_connector()

    async def wait_connected(self, timeout: float) -> None:
        """Wait until a leader connection is open; UnreachableError after ``timeout``."""
        try:
            await asyncio.wait_for(self._connected.wait(), timeout)
        except TimeoutError:
            detail = f": {self._last_error}" if self._last_error else ""
            raise UnreachableError(
                f"no leader reachable through {', '.join(self.seeds)} within {timeout:g} s{detail}"
            ) from self._last_error

    @property
    def connected(self) -> bool:
        return self._conn is not None

    @property
    def leader(self) -> str | None:
        """The address of the node this session is connected to (the leader)."""
        return None if self._conn is None else self._conn.address

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def in_flight(self) -> int:
        return len(self._pending)

    async def close(self) -> None:
        """Close the connection; every pending call fails with ConnectionClosedError."""
        if self._closed:
            return
        self._closed = True
        for task in (self._connector, self._sweeper):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        self._flush()
        conn = self._conn
        self._conn = None
        self._connected.clear()
        if conn is not None:
            conn.close()
        error = ConnectionClosedError("the client was closed")
        pending = list(self._pending.values())
        self._pending.clear()
        for call in pending:
            call.lost(error)

    # -- submitting ---------------------------------------------------------------------

    def new_id(self) -> int:
        rid = self._next_id
        self._next_id = rid + 1
        return rid

    def submit(self, call: Call, size: int = _SMALL_REQUEST) -> None:
        """Register ``call`` and send its request in this iteration's frame (or on the
        next connection)."""
        if self._closed:
            call.lost(ConnectionClosedError("the client is closed"))
            return
        self._pending[call.id] = call
        if self._conn is None:
            return
        call.sent = True
        call.attempts += 1
        call.sent_at = self.loop.time()
        self._outbox.append(call.request)
        self._outbox_bytes += size
        if self._flush_handle is None:
            if self.linger > 0 and self._outbox_bytes < self._max_frame // 4:
                self._flush_handle = self.loop.call_later(self.linger, self._flush)
            else:
                self._flush_handle = self.loop.call_soon(self._flush)
        elif self._outbox_bytes >= self._max_frame // 4 and self.linger > 0:
            self._flush_handle.cancel()
            self._flush_handle = self.loop.call_soon(self._flush)

    def forget(self, call_id: int) -> None:
        """Stop waiting for a reply to ``call_id`` (it will be ignored)."""
        self._pending.pop(call_id, None)

    def _flush(self) -> None:
        self._flush_handle = None
        outbox = self._outbox
        if not outbox:
            return
        self._outbox = []
        size = self._outbox_bytes
        self._outbox_bytes = 0
        conn = self._conn
        if conn is None:
            return  # pending calls go out again on the next connection
        budget = self._max_frame // 2
        if size <= budget:
            conn.write(encode_messages(outbox))
            self.frames_sent += 1
            return
        # Too big for one frame: cut it where the estimated size crosses the budget.
        chunk: list[Any] = []
        chunk_size = 0
        for request in outbox:
            estimate = (
                len(request.body) + _SMALL_REQUEST
                if isinstance(request, Publish)
                else _SMALL_REQUEST
            )
            if chunk and chunk_size + estimate > budget:
                conn.write(encode_messages(chunk))
                self.frames_sent += 1
                chunk, chunk_size = [], 0
            chunk.append(request)
            chunk_size += estimate
        if chunk:
            conn.write(encode_messages(chunk))
            self.frames_sent += 1

    # -- replies ------------------------------------------------------------------------

    def _on_replies(self, conn: _Connection, replies: list[Reply]) -> None:
        if conn is not self._conn:
            return
        pending = self._pending
        reset: ErrorInfo | None = None
        for reply in replies:
            call = pending.pop(reply.id, None)
            if call is None:
                if reply.id == 0 and reply.error is not None:
                    # The server's last word before it closes: we broke the protocol.
                    log.warning(
                        "herald: %s closes the connection: %s: %s",
                        conn.address,
                        reply.error.code,
                        reply.error.message,
                    )
                continue  # else forgotten: timed out, or superseded by a resend
            try:
                if reply.ok:
                    call.resolve(reply.value)
                    continue
                info = reply.error
                if info is None:
                    call.reject(ProtocolError("an error reply without an error"))
                    continue
                code = info.code
                if code in _NOT_APPLIED or (code in _UNKNOWN and call.retry):
                    # Not carried out (or safe to repeat): keep it for the next
                    # connection, to the leader, in its original order.
                    call.sent = False
                    pending[call.id] = call
                    reset = info
                else:
                    call.reject(error_from_info(info, call.request))
                    if code in _UNKNOWN:
                        reset = info
            except Exception as error:  # a malformed value must not stop the other replies
                log.exception("herald: failed to handle the reply to request %d", reply.id)
                call.reject(
                    error
                    if isinstance(error, HeraldError)
                    else ProtocolError(f"bad reply to request {reply.id}: {error!r}")
                )
        if reset is not None:
            # This node cannot serve us now (not the leader, stepped down, stopping,
            # overloaded): reconnect, to the leader it names if it names one.
            self._leader_hint = reset.leader_address or None
            if reset.code in _PAUSE:
                self._pause_until = self.loop.time() + self._backoff(3)
            log.info(
                "herald: %s answered %s (leader: %s); reconnecting",
                conn.address,
                reset.code,
                reset.leader_address or "unknown",
            )
            conn.close()

    def _on_lost(self, conn: _Connection, exc: BaseException | None) -> None:
        if conn is not self._conn:
            return
        self._conn = None
        self._connected.clear()
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        self._outbox = []
        self._outbox_bytes = 0
        self._last_error = exc or ConnectionClosedError(f"{conn.address} closed the connection")
        if not self._closed:
            log.info("herald: lost the connection to %s: %s", conn.address, self._last_error)
        error = ConnectionClosedError(
            f"the connection to {conn.address} closed before the reply arrived; "
            "the outcome is unknown"
        )
        for call in list(self._pending.values()):
            if call.sent and not call.retry:
                del self._pending[call.id]
                call.lost(error)
            else:
                call.sent = False
        if not self._closed:
            self._ensure_connector()

    # -- connecting ---------------------------------------------------------------------

    def _backoff(self, attempt: int) -> float:
        return float(self._rng.uniform(0, min(BACKOFF_CAP, BACKOFF_BASE * 2 ** min(attempt, 16))))

    def _ensure_connector(self) -> None:
        if self._closed or self._conn is not None:
            return
        if self._connector is None or self._connector.done():
            self._connector = self.loop.create_task(self._connect_loop())

    async def _connect_loop(self) -> None:
        attempt = 0
        while not self._closed:
            pause = self._pause_until - self.loop.time()
            if pause > 0:
                await asyncio.sleep(pause)
            try:
                conn = await self._find_leader()
            except asyncio.CancelledError:
                raise
            except Exception as error:
                self._last_error = error
                attempt += 1
                delay = self._backoff(attempt)
                log.debug("herald: no leader yet (%s); retrying in %.3f s", error, delay)
                await asyncio.sleep(delay)
                continue
            self._install(conn)
            return

    async def _find_leader(self) -> _Connection:
        candidates: list[str] = []
        if self._leader_hint:
            candidates.append(self._leader_hint)
        seeds = list(self.seeds)
        self._rng.shuffle(seeds)
        candidates.extend(s for s in seeds if s not in candidates)
        errors: list[str] = []
        for address in candidates:
            target = address
            for _ in range(MAX_REDIRECTS):
                try:
                    conn = await self._open(target)
                except (OSError, HeraldError, TimeoutError) as error:
                    errors.append(f"{target}: {error or type(error).__name__}")
                    break
                welcome = conn.welcome
                assert welcome is not None
                if welcome.leader and welcome.leader == welcome.node:
                    return conn
                conn.close()
                if welcome.leader_address and welcome.leader_address != target:
                    target = welcome.leader_address
                    continue
                errors.append(f"{target}: knows no leader")
                break
        self._leader_hint = None
        raise UnreachableError("; ".join(errors) or "no address to try")

    async def _open(self, address: str) -> _Connection:
        host, port = split_address(address)
        timeout = min(self.connect_timeout, 5.0)
        conn = _Connection(self, address)
        async with asyncio.timeout(timeout):
            await self.loop.create_connection(lambda: conn, host, port)
            try:
                answer = await conn.handshake
            except BaseException:
                conn.close()
                raise
        if isinstance(answer, Refused):
            conn.close()
            raise error_from_info(ErrorInfo(answer.code, answer.message))
        conn.welcome = answer
        return conn

    def _install(self, conn: _Connection) -> None:
        if self._closed:
            conn.close()
            return
        welcome = conn.welcome
        assert welcome is not None
        self._conn = conn
        self._max_frame = welcome.max_frame or DEFAULT_MAX_FRAME
        self._leader_hint = conn.address
        self.connects += 1
        log.info("herald: connected to the leader %s (node %d)", conn.address, welcome.node)
        # Resend what is pending in the order it was first issued: a producer's
        # sequence numbers must reach the broker in order.
        resend = sorted(self._pending.values(), key=_call_id)
        now = self.loop.time()
        outbox = self._outbox
        for call in resend:
            call.sent = True
            call.attempts += 1
            call.sent_at = now
            outbox.append(call.request)
            self._outbox_bytes += (
                len(call.request.body) + _SMALL_REQUEST
                if isinstance(call.request, Publish)
                else _SMALL_REQUEST
            )
        self._connected.set()
        if outbox:
            self._flush()

    # -- timeouts -----------------------------------------------------------------------

    async def _sweep_loop(self) -> None:
        interval = max(0.01, min(0.1, self.timeout / 10))
        while not self._closed:
            await asyncio.sleep(interval)
            try:
                self._sweep(self.loop.time())
            except Exception:  # never let the sweeper die
                log.exception("herald: sweeper failed")

    def _sweep(self, now: float) -> None:
        conn = self._conn
        dead = False
        expired: list[Call] = []
        for call in self._pending.values():
            if call.deadline <= now:
                expired.append(call)
        for call in expired:
            if call.sent and conn is not None and conn.last_heard < call.sent_at:
                dead = True
            if self._conn is None:
                detail = f"; no leader connection ({self._last_error})" if self._last_error else ""
            else:
                detail = ""
            error = RequestTimeoutError(
                f"no reply within the timeout{detail}; the outcome is unknown"
                if call.sent
                else f"not sent within the timeout{detail}"
            )
            if call.expire(error):
                self._pending.pop(call.id, None)
            else:
                # Kept (a publish later numbers depend on): look at it again in a
                # timeout, so a silent server costs one reconnect per timeout.
                call.deadline = now + self.timeout
        for hook in self.sweep_hooks:
            hook(now)
        if dead and conn is not None and conn is self._conn:
            log.warning("herald: %s sent nothing for a timeout; reconnecting", conn.address)
            conn.close()


def _call_id(call: Call) -> int:
    return call.id
