"""The client core: Herald's whole client protocol as a sans-IO state machine.

:class:`ClientCore` is everything the client does between a caller's request
and bytes on a socket, except the socket: finding the leader (handshake,
redirects, backoff with full jitter), pipelining and framing requests,
matching replies, resending what may be resent after a lost connection (in its
original order), timeouts, the idempotent producer (:mod:`._producer`) and
consumers (:mod:`._consumer_core`). It never reads a clock, never sleeps, never
touches a socket and draws randomness only from the ``random.Random`` it is
given: the asyncio :class:`~herald.Client` and the simulator drive the same
object, so a seed replays the client too.

The IO contract
---------------

Time is an ``int`` of microseconds on the driver's monotonic clock, passed as
``now`` into every call that needs it; it never goes back. Durations are
microseconds too.

1. After every call into the core, :meth:`ClientCore.take_actions` and carry
   the actions out in order: :class:`Dial` (open a connection to the address;
   at most one connection exists at a time), :class:`Send` (write the bytes on
   the current connection), :class:`Close` (close the current connection, or
   abandon the dial in progress, and report nothing more about it).
2. After a Dial, report exactly one of :meth:`connected` or
   :meth:`dial_failed`. Then :meth:`received` for the bytes read, in order,
   and :meth:`connection_lost` once if the connection ends by itself.
3. After every call into the core, read :meth:`next_wakeup` and call
   :meth:`tick` at that time (or soon after). A wakeup at or before ``now``
   means "as soon as the current batch of calls is done": with ``linger`` 0
   that is when the requests issued meanwhile leave in one frame. Calling
   ``tick`` early or more often is harmless.
4. Operations return an :class:`Op`; set its ``on_done`` to hear when it
   completes (check ``done`` first: an op can be done at once). Callbacks run
   synchronously inside core calls; they may call the core again.

What a retry means per operation is documented in :mod:`herald.client.client`.
An answer that says a request was not carried out (``NotLeaderError``,
``OverloadedError``, ...) means the connection is no use any more (the server
turns away every later write of it): nothing more is sent on it, the answers
to what was sent before are collected (for at most a second), then it is
closed and the turned-away requests go again, in order, on the next one.

Frames and their limit
----------------------

Requests are encoded one by one when they are issued (the bytes are kept: a
resend is byte for byte the same request), so every size is exact. A request
that cannot fit in a frame of the server's ``max_frame`` (from its Welcome;
before the first connection :data:`~herald.wire.frames.DEFAULT_MAX_FRAME`)
raises :class:`~herald.errors.MessageTooLargeError` at once and is never sent;
requests are cut into frames that never exceed it.

Should the server still refuse a frame it cannot read -- it answers with a
reply of id 0 carrying a protocol error (``FrameTooLargeError``,
``MalformedFrameError``) and closes -- the core blames the frames written
after the last frame that got any answer (the server reads frames in order,
so every frame it answered from was read). One such frame holding one request:
that request is refused, and fails with the error. Otherwise those requests
become *suspects*: on the next connections they are sent apart, a group at a
time, each group alone in its frame and only once every frame before it has
had an answer; a group that gets an answer is cleared, a group the server
refuses again is halved. So the request the server cannot read is found and
failed in a bounded number of connections and is never resent in a loop, and
the others go through. (A non-retryable request among several suspect frames
fails with ConnectionClosedError, outcome unknown, as after any lost
connection.)
"""

from __future__ import annotations

import heapq
import random
import struct
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, ClassVar, Final

from herald.broker.model import QueueOptions
from herald.errors import (
    ConnectionClosedError,
    HeraldError,
    InvalidOptionsError,
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
)
from herald.wire.protocol import (
    MAGIC,
    PROTOCOL_VERSION,
    CreateQueue,
    DeadLetter,
    DeadLetters,
    DeleteGroup,
    DeleteQueue,
    Deliver,
    ErrorInfo,
    Hello,
    ListQueues,
    Peek,
    PeekedMessage,
    Publish,
    PurgeQueue,
    Redrive,
    Refused,
    Reply,
    Stats,
    Status,
    Welcome,
)

from ._addresses import parse_seeds
from ._consumer_core import ConsumerCore, CoreDelivery, Mode
from ._errors import UnreachableError, error_from_info
from ._ops import (
    Action,
    Call,
    Close,
    Dial,
    Op,
    Send,
    ValueCall,
    done_op,
    encode,
    failed_op,
    frame_limit_error,
)
from ._producer import PublishCall, QueueProducer, receipt_from
from .types import ClusterStatus, QueueStats, Receipt, convert

__all__ = [
    "BACKOFF_BASE",
    "BACKOFF_CAP",
    "MAX_IN_FLIGHT",
    "MAX_REDIRECTS",
    "Action",
    "ClientCore",
    "Close",
    "ConsumerCore",
    "CoreDelivery",
    "Dial",
    "Op",
    "Send",
    "Timer",
    "check_headers",
    "check_name",
]

#: Log levels of :attr:`ClientCore.log` (the standard library's numbers; the core
#: does not import logging, which brings threads and clocks).
DEBUG: Final = 10
INFO: Final = 20
WARNING: Final = 30
ERROR: Final = 40

#: The most publishes in flight per queue: the broker's largest producer window.
MAX_IN_FLIGHT: Final = 1000
#: Backoff between discovery rounds: base, cap (µs); full jitter.
BACKOFF_BASE: Final = 50_000
BACKOFF_CAP: Final = 2_000_000
#: How many dials one candidate address may lead to (itself plus redirects).
MAX_REDIRECTS: Final = 4
#: The longest one dial plus handshake may take.
DIAL_TIMEOUT_CAP: Final = 5_000_000
#: The longest a connection that turned a request away is kept to collect the
#: answers to what was sent before (see ClientCore._reset).
DRAIN_TIMEOUT: Final = 1_000_000
#: Calls are expired at most this late (one sweep covers every call due by then).
SWEEP_GRANULARITY: Final = 5_000
#: "Not due": later than any time a driver will pass.
NEVER: Final = 1 << 62
#: Replies are trusted more than requests: a large Deliver answer is legitimate.
REPLY_MAX_FRAME: Final = 1 << 30
#: Error codes meaning the request was not carried out: resent on a new connection.
_NOT_APPLIED: Final = frozenset(
    {"NotLeaderError", "OverloadedError", "ProposalLostError", "ShuttingDownError"}
)
#: Error codes meaning the outcome is unknown (the node stepped down, or could not
#: confirm it still leads): retryable calls are resent, the others fail with it.
_UNKNOWN: Final = frozenset({"OutcomeUnknownError", "RequestTimeoutError"})
#: Codes after which the next discovery round waits a little first.
_PAUSE: Final = frozenset({"OverloadedError", "ShuttingDownError"})
_MAX_NAME: Final = 255
_MAX_KEY: Final = 1024
_LENGTH = struct.Struct(">I")
_FIXARRAY = [bytes((0x90 | n,)) for n in range(16)]
#: Room for the array header of a frame (msgpack array32), for frame cutting.
_HEADER_ROOM: Final = 5
_NO_HEADERS: list[tuple[str, str]] = []

_IDLE, _WAITING, _DIALING, _HANDSHAKE, _OPEN, _CLOSED = range(6)
_PHASES: Final = ("idle", "waiting", "dialing", "handshake", "open", "closed")


# -- validation ------------------------------------------------------------------------------


def check_name(kind: str, value: str) -> None:
    """Raise UsageError unless ``value`` is 1..255 printable characters."""
    if not isinstance(value, str) or not 0 < len(value) <= _MAX_NAME or not value.isprintable():
        raise UsageError(f"{kind} name must be 1..{_MAX_NAME} printable characters: {value!r}")


def check_headers(headers: Iterable[Sequence[str]]) -> list[tuple[str, str]]:
    """``headers`` as a list of (str, str) pairs; UsageError for a malformed pair or an
    empty or repeated name."""
    seen: set[str] = set()
    out: list[tuple[str, str]] = []
    for pair in headers:
        if (
            not isinstance(pair, (tuple, list))
            or len(pair) != 2
            or not isinstance(pair[0], str)
            or not isinstance(pair[1], str)
        ):
            raise UsageError(f"a header must be a (str, str) pair: {pair!r}")
        name, value = pair
        if not name or name in seen:
            raise UsageError(f"empty or repeated header name {name!r}")
        seen.add(name)
        out.append((name, value))
    return out


# -- timers ----------------------------------------------------------------------------------


class Timer:
    """A callback due at ``when`` (µs); cancelled timers are dropped lazily."""

    __slots__ = ("active", "callback", "when")

    def __init__(self, when: int, callback: Callable[[int], None]) -> None:
        self.when = when
        self.callback = callback
        self.active = True

    def cancel(self) -> None:
        self.active = False


# -- the core --------------------------------------------------------------------------------


class ClientCore:
    """One Herald client, sans-IO: a connection to the leader and everything on it.

    ``seeds``: ``host:port`` strings (see :func:`~herald.client.parse_seeds`).
    ``name``: the client's name in the Hello. ``producer_id``: the idempotent
    producer's id. ``rng``: every random choice (backoff jitter, seed order).
    ``timeout``: the default time limit of a call. ``connect_timeout``: how long
    :meth:`connect` waits by default (also bounds one dial, with at most 5 s).
    ``linger``: how long requests wait to share a frame (0: until the driver's
    next tick, which it makes as soon as its current batch of calls is done).
    ``idempotent``: number publishes (see :mod:`herald.client._producer`).
    ``max_in_flight``: publishes in flight per queue (1..1000).

    Raises UsageError for a bad argument. See the module docstring for the IO
    contract.
    """

    #: The producer class, one instance per queue (a test may plant another policy).
    producer_class: ClassVar[type[QueueProducer]] = QueueProducer

    def __init__(
        self,
        seeds: Sequence[str] | str,
        *,
        name: str,
        producer_id: str,
        rng: random.Random,
        timeout: int,
        linger: int = 0,
        idempotent: bool = True,
        max_in_flight: int = MAX_IN_FLIGHT,
        connect_timeout: int | None = None,
        group: int = 0,
    ) -> None:
        if timeout <= 0 or linger < 0 or (connect_timeout is not None and connect_timeout <= 0):
            raise UsageError("timeouts must be positive and linger must not be negative")
        if not 1 <= max_in_flight <= MAX_IN_FLIGHT:
            raise UsageError(f"max_in_flight must be in 1..{MAX_IN_FLIGHT}, not {max_in_flight}")
        check_name("client", name)
        check_name("producer", producer_id)
        if group < 0:
            raise UsageError(f"a data group is not negative: {group}")
        self.seeds = parse_seeds(seeds)
        #: The data group whose leader this core connects to (herald.wire.placement):
        #: a client of a cluster of many groups has a core per group.
        self.group = group
        #: The cluster's data groups, from the last Welcome (0: none seen yet).
        self.groups = 0
        self.name = name
        self.producer_id = producer_id
        self.timeout = timeout
        self.connect_timeout = timeout if connect_timeout is None else connect_timeout
        self.linger = linger
        self.idempotent = idempotent
        self.max_in_flight = max_in_flight
        self._rng = rng
        self._now = 0
        self._actions: list[Action] = []
        #: Set whenever :meth:`next_wakeup` may have become earlier (a call, a timer, a
        #: deadline): a driver may skip reading it while this is false and it has
        #: read it since its last :meth:`tick`. Drivers clear it themselves.
        self.wakeup_changed = True
        # -- the connection --
        self._phase = _IDLE
        self._address = ""
        self._decoder = FrameDecoder(REPLY_MAX_FRAME)
        self._conn_timer: Timer | None = None
        self._candidates: list[str] = []
        self._round_errors: list[str] = []
        self._redirects = 0
        self._attempt = 0
        self._pause_until = 0
        self._leader_hint: str | None = None
        self._last_error: HeraldError | None = None
        self._max_frame = DEFAULT_MAX_FRAME
        self._node = 0
        # -- calls --
        self._next_id = 1
        self._pending: dict[int, Call] = {}
        self._outbox: list[Call] = []
        self._outbox_bytes = 0
        #: When the pending frame is due, and when calls must next be checked for
        #: expiry (NEVER: nothing due).
        self._flush_at = NEVER
        self._sweep_at = NEVER
        # What was written on the current connection, by request id: requests go
        # out in id order (a resend keeps its id, and everything pending is resent
        # in id order first), so "sent" is "id <= last written" and a frame is the
        # range of ids from its first one to the next frame's.
        self._outbox_dirty = False  # a call in the outbox was forgotten
        self._last_written = 0  # the highest id written on this connection
        self._written_at_arrival = 0  # _last_written when bytes last arrived
        self._answered = 0  # the highest id answered on this connection
        #: The first id of each frame from the one holding ``_answered`` on.
        self._frame_starts: deque[int] = deque()
        self._bounced: set[int] = set()  # answered "not carried out": not sent, really
        #: Why the connection is being left, while the answers to what went out
        #: before are collected (see _reset); None when it is not.
        self._draining: ErrorInfo | None = None
        self._drain_timer: Timer | None = None
        # -- frames the server could not read (see the module docstring) --
        self._suspects: list[Call] = []
        self._held: list[Call] = []
        self._probe: list[Call] | None = None
        self._probe_first = NEVER  # the probe's first id (nothing is written after it)
        self._probe_size = 1
        # -- timers, waiters, producers, consumers --
        self._timers: list[tuple[int, int, Timer]] = []
        self._timer_order = 0
        self._connect_waiters: list[tuple[Op[None], int]] = []
        self._producers: dict[str, QueueProducer] = {}
        self._consumers: list[ConsumerCore] = []
        #: Where the core's log lines go: ``log(level, message, *args)``, the shape
        #: of :meth:`logging.Logger.log` (None: nowhere). Levels: DEBUG ... ERROR.
        self.log: Callable[..., None] | None = None
        #: Counters, for tests and benchmarks.
        self.frames_sent = 0
        self.connects = 0

    # -- state ------------------------------------------------------------------------------

    def _log(self, level: int, message: str, *args: object) -> None:
        sink = self.log
        if sink is not None:
            sink(level, message, *args)

    @property
    def now(self) -> int:
        """The latest time the driver told the core."""
        return self._now

    def enter(self, now: int) -> None:
        """Note the time (every entry point does; time never goes back)."""
        if now > self._now:  # noqa: PLR1730 (a call to max costs more on the hot path)
            self._now = now

    @property
    def phase(self) -> str:
        """``idle``, ``waiting`` (backing off), ``dialing``, ``handshake``, ``open``
        or ``closed``."""
        return _PHASES[self._phase]

    @property
    def is_connected(self) -> bool:
        """A connection to the leader is open."""
        return self._phase == _OPEN

    @property
    def closed(self) -> bool:
        return self._phase == _CLOSED

    @property
    def leader(self) -> str | None:
        """The address of the node the core is connected to (the leader)."""
        return self._address if self._phase == _OPEN else None

    @property
    def max_frame(self) -> int:
        """The frame limit requests are sized against (the server's, once known)."""
        return self._max_frame

    @property
    def last_error(self) -> HeraldError | None:
        """Why the last connection attempt or connection failed."""
        return self._last_error

    @property
    def in_flight(self) -> int:
        """Calls registered and not answered (sent or waiting for a connection)."""
        return len(self._pending)

    def in_flight_publishes(self, queue: str) -> int:
        """Publishes to ``queue`` sent and not yet confirmed, plus those waiting."""
        producer = self._producers.get(queue)
        return 0 if producer is None else producer.in_flight

    def producer(self, queue: str) -> QueueProducer | None:
        """The idempotent producer state of ``queue`` (for tests and monitoring)."""
        return self._producers.get(queue)

    # -- the IO contract ---------------------------------------------------------------------

    @property
    def has_actions(self) -> bool:
        return bool(self._actions)

    def take_actions(self) -> list[Action]:
        """The actions to carry out, in order (see the module docstring)."""
        actions = self._actions
        if not actions:
            return []
        self._actions = []
        return actions

    def next_wakeup(self) -> int | None:
        """When :meth:`tick` must be called next (None: only on other events)."""
        best = self._flush_at
        sweep = self._sweep_at
        if sweep < best:  # noqa: PLR1730 (called after every operation: no min())
            best = sweep
        timers = self._timers
        while timers and not timers[0][2].active:
            heapq.heappop(timers)
        if timers and timers[0][0] < best:
            best = timers[0][0]
        return None if best == NEVER else best

    def tick(self, now: int) -> None:
        """Fire what is due: timers, expired calls, the pending frame."""
        self.enter(now)
        now = self._now
        timers = self._timers
        while timers and timers[0][0] <= now:
            _, _, timer = heapq.heappop(timers)
            if timer.active:
                timer.active = False
                timer.callback(now)
        if self._sweep_at <= now:
            self._sweep(now)
        if self._flush_at <= now:
            self._flush()

    def schedule(self, when: int, callback: Callable[[int], None]) -> Timer:
        """Call ``callback(now)`` from the first :meth:`tick` at or after ``when``."""
        timer = Timer(when, callback)
        self.wakeup_changed = True
        self._timer_order += 1
        heapq.heappush(self._timers, (when, self._timer_order, timer))
        return timer

    def connected(self, now: int) -> None:
        """The connection asked for by the last Dial is open."""
        self.enter(now)
        if self._phase != _DIALING:
            return
        self._phase = _HANDSHAKE
        hello = Hello(MAGIC, PROTOCOL_VERSION, "client", client=self.name)
        self._actions.append(Send(encode_frame(hello)))

    def dial_failed(self, error: str, now: int) -> None:
        """The last Dial could not connect (``error`` says why, for messages)."""
        self.enter(now)
        if self._phase == _DIALING:
            self._attempt_failed(error or "could not connect")

    def received(self, data: bytes, now: int) -> None:
        """Bytes read from the current connection."""
        self.enter(now)
        if self._phase not in (_HANDSHAKE, _OPEN):
            return
        self._written_at_arrival = self._last_written
        reset: ErrorInfo | None = None
        refusal: ErrorInfo | None = None
        frames = self._decoder.feed(data)
        try:
            for payload in frames:
                if self._phase == _HANDSHAKE:
                    self._on_handshake(decode_handshake_reply(payload))
                elif self._phase == _OPEN:
                    reset_here, refusal = self._on_replies(decode_replies(payload))
                    reset = reset_here or reset
                    if refusal is not None:
                        break  # the server's last word before it closes
                else:
                    break
        except ProtocolError as error:
            self._bad_frame(error)
            return
        finally:
            frames.close()  # type: ignore[attr-defined]
        if self._phase != _OPEN:
            return
        if refusal is not None:
            self._protocol_refusal(refusal)
        elif reset is not None or self._draining is not None:
            self._reset(reset)
        elif self._probe is None and (self._suspects or self._held):
            self._maybe_probe()

    def connection_lost(self, error: str | None, now: int) -> None:
        """The current connection ended (not after the core's own Close)."""
        self.enter(now)
        phase = self._phase
        if phase == _OPEN:
            self._drop(
                ConnectionClosedError(error or f"{self._address} closed the connection"),
                close=False,
            )
        elif phase in (_DIALING, _HANDSHAKE):
            self._attempt_failed(error or "closed the connection during the handshake")

    # -- connecting --------------------------------------------------------------------------

    def connect(self, now: int, *, timeout: int | None = None) -> Op[None]:
        """Start looking for the leader (if not yet started). The op completes once a
        leader connection is open, or fails with UnreachableError after ``timeout``
        (default ``connect_timeout``); the core keeps trying either way."""
        self.enter(now)
        if self._phase == _CLOSED:
            return failed_op(ConnectionClosedError("the client is closed"))
        if self._phase == _OPEN:
            return done_op(None)
        op: Op[None] = Op()
        wait = self.connect_timeout if timeout is None else timeout
        self._connect_waiters.append((op, wait))
        self.schedule(self._now + wait, lambda at: self._connect_timed_out(op, wait))
        if self._phase == _IDLE:
            self._begin_round()
        return op

    def _connect_timed_out(self, op: Op[None], wait: int) -> None:
        if op.done:
            return
        self._connect_waiters = [(o, w) for o, w in self._connect_waiters if o is not op]
        error = self._last_error
        detail = f": {error}" if error is not None else ""
        op.fail(
            UnreachableError(
                f"no leader reachable through {', '.join(self.seeds)} within "
                f"{wait / 1_000_000:g} s{detail}"
            )
        )

    def backoff(self, attempt: int) -> int:
        """The wait before discovery round ``attempt`` (µs): full jitter over an
        exponential bound (50 ms doubling, at most 2 s)."""
        bound = min(BACKOFF_CAP, BACKOFF_BASE * 2 ** min(attempt, 16))
        return int(self._rng.uniform(0, bound))

    def _begin_round(self) -> None:
        if self._phase == _CLOSED:
            return
        now = self._now
        if now < self._pause_until:
            self._phase = _WAITING
            self._conn_timer = self.schedule(self._pause_until, self._retry)
            return
        candidates: list[str] = []
        if self._leader_hint:
            candidates.append(self._leader_hint)
        seeds = list(self.seeds)
        self._rng.shuffle(seeds)
        candidates.extend(s for s in seeds if s not in candidates)
        self._candidates = candidates
        self._round_errors = []
        self._next_candidate()

    def _retry(self, now: int) -> None:
        self._conn_timer = None
        if self._phase == _WAITING:
            self._begin_round()

    def _next_candidate(self) -> None:
        if not self._candidates:
            self._round_failed()
            return
        self._redirects = 0
        self._dial(self._candidates.pop(0))

    def _dial(self, address: str) -> None:
        self._phase = _DIALING
        self._address = address
        self._decoder = FrameDecoder(REPLY_MAX_FRAME)
        self._cancel_conn_timer()
        self._conn_timer = self.schedule(
            self._now + min(self.connect_timeout, DIAL_TIMEOUT_CAP), self._dial_timed_out
        )
        self._actions.append(Dial(address))

    def _dial_timed_out(self, now: int) -> None:
        self._conn_timer = None
        if self._phase in (_DIALING, _HANDSHAKE):
            self._actions.append(Close("timed out"))
            self._attempt_failed("timed out")

    def _cancel_conn_timer(self) -> None:
        if self._conn_timer is not None:
            self._conn_timer.cancel()
            self._conn_timer = None

    def _attempt_failed(self, reason: str) -> None:
        """The dial or handshake in progress failed (its connection is closed)."""
        self._cancel_conn_timer()
        self._round_errors.append(f"{self._address}: {reason}")
        self._next_candidate()

    def _round_failed(self) -> None:
        self._leader_hint = None
        self._attempt += 1
        self._last_error = UnreachableError("; ".join(self._round_errors) or "no address to try")
        delay = self.backoff(self._attempt)
        self._log(DEBUG, "herald: no leader yet (%s); retrying in %d µs", self._last_error, delay)
        self._phase = _WAITING
        self._conn_timer = self.schedule(self._now + delay, self._retry)

    def _on_handshake(self, answer: Welcome | Refused) -> None:
        if isinstance(answer, Refused):
            error = error_from_info(ErrorInfo(answer.code, answer.message))
            self._actions.append(Close("refused"))
            self._attempt_failed(f"{answer.code}: {error}")
            return
        self.groups = answer.groups
        leader, target = answer.leader, answer.leader_address
        if self.group:
            if self.group >= answer.groups:
                self._actions.append(Close("no such group"))
                self._attempt_failed(f"the cluster has no data group {self.group}")
                return
            leaders = answer.leaders
            leader, target = leaders[self.group] if self.group < len(leaders) else (0, "")
        if leader and leader == answer.node:
            self._install(answer)
            return
        self._actions.append(Close("not the leader"))
        if target and target != self._address and self._redirects + 1 < MAX_REDIRECTS:
            self._redirects += 1
            self._dial(target)
            return
        self._attempt_failed("knows no leader")

    def _install(self, welcome: Welcome) -> None:
        self._cancel_conn_timer()
        self._phase = _OPEN
        self._max_frame = welcome.max_frame or DEFAULT_MAX_FRAME
        self._node = welcome.node
        self._leader_hint = self._address
        self._attempt = 0
        self._last_written = 0
        self._written_at_arrival = 0
        self._answered = 0
        self._frame_starts.clear()
        self._probe = None
        self._probe_first = NEVER
        self._held = []
        self.connects += 1
        self._log(INFO, "herald: connected to the leader %s (node %d)", self._address, welcome.node)
        # Resend what is pending in the order it was first issued: a producer's
        # numbers must reach the broker in order.
        resend = sorted(self._pending.values(), key=_call_id)
        limit = self._max_frame
        outbox: list[Call] = []
        too_large: list[Call] = []
        for call in resend:
            if len(call.data) + 1 > limit:
                # This leader takes smaller frames than the one it was sized for.
                del self._pending[call.id]
                too_large.append(call)
            else:
                outbox.append(call)
        self._outbox = outbox
        self._outbox_bytes = sum(len(c.data) + 1 for c in outbox)
        self._flush()
        # Callbacks last: what they issue goes out after the resends.
        for call in too_large:
            error = frame_limit_error(call.request, len(call.data) + 1, limit)
            if call.lost_sends:
                error.args = (f"{error.args[0]} again; an earlier attempt may have landed",)
            call.reject(error)
        waiters, self._connect_waiters = self._connect_waiters, []
        for op, _ in waiters:
            op.succeed(None)

    def _bad_frame(self, error: ProtocolError) -> None:
        self._log(WARNING, "herald: bad frame from %s: %s; closing", self._address, error)
        if self._phase == _HANDSHAKE:
            self._actions.append(Close("bad frame"))
            self._attempt_failed(f"bad handshake reply: {error}")
        elif self._phase == _OPEN:
            self._drop(ConnectionClosedError(f"bad frame from {self._address}: {error}"))

    def _drop(self, error: HeraldError, *, close: bool = True) -> None:
        """Leave the open connection (lost, or no use any more) and look again."""
        if close:
            self._actions.append(Close(str(error)))
        address = self._address
        last = self._last_written
        bounced = self._bounced
        self._phase = _WAITING
        self._outbox = []
        self._outbox_bytes = 0
        self._flush_at = NEVER
        self._held = []
        self._probe = None
        self._probe_first = NEVER
        self._last_written = 0
        self._answered = 0
        self._frame_starts.clear()
        self._bounced = set()
        self._draining = None
        if self._drain_timer is not None:
            self._drain_timer.cancel()
            self._drain_timer = None
        self._last_error = error
        self._log(INFO, "herald: lost the connection to %s: %s", address, error)
        lost = ConnectionClosedError(
            f"the connection to {address} closed before the reply arrived; the outcome is unknown"
        )
        for call in list(self._pending.values()):
            if call.id > last or call.id in bounced:
                continue  # never went out on it (or was not carried out): resent
            call.lost_sends += 1
            if not call.retry and not call.suspect:
                del self._pending[call.id]
                call.lost(lost)
        if self._phase == _WAITING:
            self._begin_round()

    def _reset(self, info: ErrorInfo | None) -> None:
        """This node cannot serve us now (not the leader, stepped down, stopping,
        overloaded): reconnect, to the leader it names if it names one.

        Not at once: the server turns away every later write of a connection once
        it turned one away, but what went out before may be carried out, and its
        answers would be lost with the connection (a request resent only because
        its answer was lost costs the server the same work again: under overload,
        a client that closes at the first refusal can keep a server busy with
        duplicates for ever). So nothing more is sent on this connection; it is
        closed once every request sent on it before has been answered -- a long
        poll excepted -- or after DRAIN_TIMEOUT.
        """
        if info is not None and self._draining is None:
            self._draining = info
            self._leader_hint = info.leader_address or None
            if info.code in _PAUSE:
                self._pause_until = self._now + self.backoff(3)
            self._drain_timer = self.schedule(
                self._now + min(self.timeout, DRAIN_TIMEOUT), self._drain_timed_out
            )
        draining = self._draining
        if draining is None or self._phase != _OPEN:
            return
        last = self._last_written
        bounced = self._bounced
        for call in self._pending.values():
            if call.id <= last and call.id not in bounced:
                request = call.request
                if not (type(request) is Deliver and request.wait):
                    return  # an answer may still come
        self._leave(draining)

    def _drain_timed_out(self, now: int) -> None:
        self._drain_timer = None
        if self._draining is not None and self._phase == _OPEN:
            self._leave(self._draining)

    def _leave(self, info: ErrorInfo) -> None:
        self._log(
            INFO,
            "herald: %s answered %s (leader: %s); reconnecting",
            self._address,
            info.code,
            info.leader_address or "unknown",
        )
        self._drop(ConnectionClosedError(f"{self._address} answered {info.code}"))

    # -- sending -----------------------------------------------------------------------------

    def new_id(self) -> int:
        rid = self._next_id
        self._next_id = rid + 1
        return rid

    def check_fits(self, request: object) -> None:
        """Raise MessageTooLargeError if ``request`` cannot fit in one frame."""
        size = len(encode(request)) + 1
        if size > self._max_frame:
            raise frame_limit_error(request, size, self._max_frame)

    def watch_deadline(self, deadline: int) -> None:
        """Sweep no later than ``deadline`` (for a deadline not on a registered call)."""
        self._sweep_at = min(self._sweep_at, deadline)
        self.wakeup_changed = True

    def register(self, call: Call) -> None:
        """Track ``call`` and send it in the next frame (or on the next connection).
        Raises MessageTooLargeError, nothing changed, if it cannot fit in a frame."""
        phase = self._phase
        if phase == _CLOSED:
            call.lost(ConnectionClosedError("the client is closed"))
            return
        size = len(call.data) + 1
        max_frame = self._max_frame
        if size > max_frame:
            raise frame_limit_error(call.request, size, max_frame)
        self._pending[call.id] = call
        self.wakeup_changed = True
        deadline = call.deadline
        if deadline < self._sweep_at:  # noqa: PLR1730 (the hot path: no min())
            self._sweep_at = deadline
        if phase != _OPEN:
            return
        self._outbox.append(call)
        queued = self._outbox_bytes = self._outbox_bytes + size
        if self._flush_at == NEVER:
            linger = self.linger
            if linger and queued < max_frame >> 2:
                self._flush_at = self._now + linger
            else:
                self._flush_at = self._now
        elif self.linger and queued >= max_frame >> 2:
            self._flush_at = self._now

    def forget(self, call: Call) -> None:
        """Stop waiting for ``call``'s reply (a late one is ignored); if it waits for
        a frame, it is not sent."""
        if self._pending.get(call.id) is call:
            del self._pending[call.id]
        call.forgotten = True
        self._outbox_dirty = True

    def is_sent(self, call: Call) -> bool:
        """``call`` went out on the current connection (and is not answered yet)."""
        return self._phase == _OPEN and call.id <= self._last_written

    def _flush(self) -> None:
        self._flush_at = NEVER
        outbox = self._outbox
        if not outbox:
            return
        queued = self._outbox_bytes
        self._outbox = []
        self._outbox_bytes = 0
        if self._phase != _OPEN or self._draining is not None:
            return  # pending calls go out again on the next connection
        if self._suspects:
            outbox = self._hold_behind_suspects(outbox)
            queued = NEVER
        if outbox:
            self._write(outbox, queued)
        if self._suspects or self._held:
            self._maybe_probe()

    def _write(self, calls: list[Call], bound: int = NEVER) -> None:
        """Write ``calls`` (in id order, after everything written before) in frames
        no larger than the server's limit. ``bound``: their size, if known to fit."""
        if self._outbox_dirty:
            self._outbox_dirty = False
            calls = [c for c in calls if not c.forgotten]  # expired while waiting
            if not calls:
                return
        limit = self._max_frame - _HEADER_ROOM
        if bound <= limit:
            self._emit(calls[0].id, [c.data for c in calls], bound)
        else:
            first = calls[0].id
            parts: list[bytes] = []
            size = 0
            for call in calls:
                data = call.data
                length = len(data)
                if parts and size + length > limit:
                    self._emit(first, parts, size)
                    first = call.id
                    parts = []
                    size = 0
                parts.append(data)
                size += length
            self._emit(first, parts, size)
        self._last_written = calls[-1].id

    def _emit(self, first: int, parts: list[bytes], size: int) -> None:
        """One frame of ``parts`` (encoded requests, the first with id ``first``)."""
        count = len(parts)
        if count < 16:
            header = _FIXARRAY[count]
        elif count < 0x10000:
            header = b"\xdc" + count.to_bytes(2, "big")
        else:
            header = b"\xdd" + count.to_bytes(4, "big")
        payload = header + b"".join(parts)
        self._frame_starts.append(first)
        self.frames_sent += 1
        self._actions.append(Send(_LENGTH.pack(len(payload)) + payload))

    # -- frames the server could not read ---------------------------------------------------

    def _hold_behind_suspects(self, calls: list[Call]) -> list[Call]:
        """Of ``calls`` (in issue order), those that may go now: the ones issued before
        the first suspect. The rest wait until every suspect is cleared or failed."""
        pending = self._pending
        suspects = [c for c in self._suspects if pending.get(c.id) is c]
        self._suspects = suspects
        if not suspects:
            held, self._held = self._held, []
            return [*held, *calls] if held else calls
        first = suspects[0].id
        now: list[Call] = []
        held = self._held
        for call in calls:
            (now if call.id < first else held).append(call)
        return now

    def _maybe_probe(self) -> None:
        """Send the next group of suspects alone in a frame, once every frame before
        it has had an answer (so a refusal can only be about that frame)."""
        if self._probe is not None or self._phase != _OPEN:
            return
        pending = self._pending
        suspects = [c for c in self._suspects if pending.get(c.id) is c]
        self._suspects = suspects
        if not suspects:
            held = [c for c in self._held if pending.get(c.id) is c]
            self._held = []
            if held:
                self._write(held)
            return
        starts = self._frame_starts
        if starts and starts[-1] > self._answered:
            return  # a frame written before has had no answer yet
        group: list[Call] = []
        size = 0
        limit = self._max_frame - _HEADER_ROOM
        for call in suspects[: self._probe_size]:
            if group and size + len(call.data) > limit:
                break
            group.append(call)
            size += len(call.data)
        members = {c.id for c in group}
        self._held = [c for c in self._held if c.id not in members]
        self._write(group)
        self._probe = group
        self._probe_first = group[0].id

    def _probe_answered(self) -> None:
        """The probe frame was read: its calls are innocent."""
        probe = self._probe
        self._probe = None
        self._probe_first = NEVER
        if probe is None:
            return
        members = {c.id for c in probe}
        for call in probe:
            call.suspect = False
        self._suspects = [c for c in self._suspects if c.id not in members]

    def _protocol_refusal(self, info: ErrorInfo) -> None:
        """The server answered a frame it could not read with a protocol error and
        closes: find the requests it refused (see the module docstring)."""
        error = error_from_info(info)
        self._log(
            WARNING,
            "herald: %s closes the connection: %s: %s",
            self._address,
            info.code,
            info.message,
        )
        # The frames written after the one holding the last answer: the server read
        # every frame up to that one, so it refused one of these.
        answered = self._answered
        unanswered = [first for first in self._frame_starts if first > answered]
        last = self._last_written
        candidates = (
            sorted(
                (c for c in self._pending.values() if unanswered[0] <= c.id <= last),
                key=_call_id,
            )
            if unanswered
            else []
        )
        self._probe = None
        self._probe_first = NEVER
        if len(unanswered) == 1 and len(candidates) == 1:
            # One request alone in the one frame the server can have refused.
            call = candidates[0]
            del self._pending[call.id]
            call.suspect = False
            self._suspects = [c for c in self._suspects if c is not call]
            call.reject(error)
        elif candidates:
            single = len(unanswered) == 1  # that frame was refused whole: nothing ran
            known = {c.id for c in self._suspects}
            fresh = [c for c in candidates if (single or c.retry) and c.id not in known]
            for call in candidates:
                if single or call.retry:
                    call.suspect = True
            self._suspects = sorted([*self._suspects, *fresh], key=_call_id)
            blamed = sum(1 for c in candidates if c.suspect)
            self._probe_size = max(1, (blamed + 1) // 2)
        self._drop(
            ConnectionClosedError(f"{self._address} refused a frame: {info.code}: {info.message}")
        )

    # -- replies -----------------------------------------------------------------------------

    def _on_replies(self, replies: list[Reply]) -> tuple[ErrorInfo | None, ErrorInfo | None]:
        """Handle one frame of replies; returns (a reason to reconnect, a protocol
        refusal), each None when there is none."""
        pending = self._pending
        reset: ErrorInfo | None = None
        probe_first = self._probe_first
        answered = self._answered
        for reply in replies:
            rid = reply.id
            call = pending.pop(rid, None)
            if call is None:
                if rid == 0 and reply.error is not None:
                    self._answered = answered
                    return reset, reply.error
                continue  # forgotten: timed out, or superseded by a resend
            if rid > answered:  # noqa: PLR1730
                answered = rid
            if rid >= probe_first:  # the probe frame was read: its calls are innocent
                self._probe_answered()
                probe_first = NEVER
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
                    pending[rid] = call
                    self._bounced.add(rid)
                    reset = info
                else:
                    call.reject(error_from_info(info, call.request))
                    if code in _UNKNOWN:
                        reset = info
            except Exception as error:  # a malformed value must not stop the other replies
                self._log(ERROR, "herald: failed to handle the reply to request %d: %r", rid, error)
                if not call.done:
                    call.reject(
                        error
                        if isinstance(error, HeraldError)
                        else ProtocolError(f"bad reply to request {reply.id}: {error!r}")
                    )
        self._answered = answered
        starts = self._frame_starts
        while len(starts) > 1 and starts[1] <= answered:
            starts.popleft()  # frames wholly before the last answer: no longer needed
        return reset, None

    # -- timeouts ----------------------------------------------------------------------------

    def _sweep(self, now: int) -> None:
        self._sweep_at = NEVER
        opened = self._phase == _OPEN
        if opened:
            detail = ""
        else:
            error = self._last_error
            detail = f"; no leader connection ({error})" if error is not None else ""
        dead = False
        earliest: int | None = None
        expired: list[Call] = []
        for call in self._pending.values():
            deadline = call.deadline
            if deadline <= now:
                expired.append(call)
            elif earliest is None or deadline < earliest:
                earliest = deadline
        for call in expired:
            if self._pending.get(call.id) is not call:
                continue  # answered or forgotten by an earlier expiry's callback
            sent = opened and call.id <= self._last_written
            if sent and call.id > self._written_at_arrival:
                dead = True  # nothing arrived since it was sent
            timeout_error = RequestTimeoutError(
                f"no reply within the timeout{detail}; the outcome is unknown"
                if sent or call.lost_sends
                else f"not sent within the timeout{detail}"
            )
            if call.expire(timeout_error):
                self.forget(call)
            else:
                # Kept (a publish later numbers depend on): look at it again in a
                # timeout, so a silent server costs one reconnect per timeout.
                call.deadline = now + self.timeout
                if earliest is None or call.deadline < earliest:
                    earliest = call.deadline
        for producer in self._producers.values():
            if producer.backlog:
                due = producer.sweep(now)
                if due is not None and (earliest is None or due < earliest):
                    earliest = due
        if earliest is not None:
            self.watch_deadline(max(earliest, now + SWEEP_GRANULARITY))
        if dead and self._phase == _OPEN:
            self._log(WARNING, "herald: %s sent nothing for a timeout; reconnecting", self._address)
            self._drop(ConnectionClosedError(f"{self._address} sent nothing for a timeout"))

    # -- closing -----------------------------------------------------------------------------

    def close(self, now: int) -> None:
        """Close: what is queued is sent, the connection closed, and every pending
        op fails with ConnectionClosedError. Idempotent."""
        self.enter(now)
        if self._phase == _CLOSED:
            return
        if self._phase == _OPEN:
            self._flush()
        if self._phase in (_DIALING, _HANDSHAKE, _OPEN):
            self._actions.append(Close("the client was closed"))
        self._phase = _CLOSED
        self._cancel_conn_timer()
        for _, _, timer in self._timers:
            timer.active = False
        self._timers.clear()
        self._flush_at = NEVER
        self._sweep_at = NEVER
        self._outbox = []
        self._suspects = []
        self._held = []
        self._probe = None
        error = ConnectionClosedError("the client was closed")
        pending = sorted(self._pending.values(), key=_call_id)
        self._pending.clear()
        for call in pending:
            call.lost(error)
        for producer in self._producers.values():
            producer.close(error)
        for consumer in list(self._consumers):
            consumer.client_closed()
        self._consumers.clear()
        waiters, self._connect_waiters = self._connect_waiters, []
        for op, _ in waiters:
            op.fail(ConnectionClosedError("the client was closed"))

    # -- publishing --------------------------------------------------------------------------

    def publish(
        self,
        queue: str,
        body: bytes,
        *,
        headers: list[tuple[str, str]] | None = None,
        key: str | None = None,
        timeout: int | None = None,
        now: int,
    ) -> Op[Receipt]:
        """Publish ``body`` to ``queue``; the op's value is its :class:`Receipt`.

        Idempotent (the default): numbered for the queue and resent with its
        number until answered; beyond ``max_in_flight`` it waits in the client.
        Fails with the broker's refusal (UnknownQueueError, MessageTooLargeError,
        QueueFullError, ProducerSequenceGapError: surely not stored;
        ProducerSequenceStaleError: unknown), or RequestTimeoutError (unknown).
        Raises UsageError for bad arguments and MessageTooLargeError if it cannot
        fit in one of the server's frames (nothing sent).
        """
        return self.publish_now(queue, body, headers, key, timeout, now)

    def publish_now(
        self,
        queue: str,
        body: bytes,
        headers: list[tuple[str, str]] | None,
        key: str | None,
        timeout: int | None,
        now: int,
    ) -> Op[Receipt]:
        """:meth:`publish` with positional arguments (cheaper to call, for shells)."""
        if now > self._now:  # noqa: PLR1730
            self._now = now
        if type(body) is not bytes:
            raise UsageError(f"a message body must be bytes, not {type(body).__name__}")
        pairs = check_headers(headers) if headers else _NO_HEADERS
        if key is not None and (not isinstance(key, str) or not 0 < len(key) <= _MAX_KEY):
            raise UsageError(f"key must be 1..{_MAX_KEY} characters")
        deadline = self._now + (self.timeout if timeout is None else timeout)
        if self._phase == _CLOSED:
            return failed_op(ConnectionClosedError("the client is closed"))
        if not self.idempotent:
            check_name("queue", queue)
            call = ValueCall(
                Publish(self.new_id(), queue, body, pairs, key),
                deadline,
                key is not None,
                receipt_from,
            )
            self.register(call)
            return call
        producer = self._producers.get(queue)
        if producer is None:
            check_name("queue", queue)
            producer = self.producer_class(self, queue, self.producer_id, self.max_in_flight)
            self._producers[queue] = producer
        publish = PublishCall(producer, deadline, body, pairs, key)
        producer.publish(publish)
        return publish

    def flush(self, now: int) -> Op[None]:
        """An op that completes once every publish issued so far is confirmed or has
        failed (for its caller: a publish that timed out counts as done)."""
        self.enter(now)
        waiting: list[Op[Any]] = []
        for producer in self._producers.values():
            waiting.extend(producer.unfinished())
        waiting.extend(
            c
            for c in self._pending.values()
            if isinstance(c.request, Publish) and not isinstance(c, PublishCall) and not c.done
        )
        op: Op[None] = Op()
        if not waiting:
            op.succeed(None)
            return op
        remaining = [len(waiting)]

        def one_done(_: Op[Any]) -> None:
            remaining[0] -= 1
            if remaining[0] == 0:
                op.succeed(None)

        for publish in waiting:
            publish.add_listener(one_done)
        return op

    # -- consuming ---------------------------------------------------------------------------

    def consumer(
        self,
        queue: str,
        group: str,
        *,
        consumer: str,
        mode: Mode = "at_least_once",
        prefetch: int = 100,
        auto_extend: bool = False,
        lease: int | None = None,
        wait: int = 5_000_000,
        session_timeout: int = 30_000_000,
        limit: int | None = None,
        delivery_type: type[CoreDelivery] = CoreDelivery,
    ) -> ConsumerCore:
        """A consumer of ``queue`` in ``group`` named ``consumer`` (see
        :class:`ConsumerCore`); nothing is sent before its ``start``. ``limit``:
        the most messages it will ever lease. ``delivery_type``: the class its
        deliveries are made of (a shell's subclass of CoreDelivery). Raises
        UsageError for bad arguments."""
        check_name("queue", queue)
        check_name("group", group)
        check_name("consumer", consumer)
        created = ConsumerCore(
            self,
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
            delivery_type=delivery_type,
        )
        if self._phase == _CLOSED:
            created.client_closed()
        else:
            self._consumers.append(created)
        return created

    def forget_consumer(self, consumer: ConsumerCore) -> None:
        if consumer in self._consumers:
            self._consumers.remove(consumer)

    # -- administration and reads ---------------------------------------------------------

    def _call(
        self,
        request: Any,
        *,
        retry: bool,
        convert: Callable[[Any], Any] | None,
        timeout: int | None,
        now: int,
    ) -> Op[Any]:
        self.enter(now)
        call = ValueCall(
            request, self._now + (self.timeout if timeout is None else timeout), retry, convert
        )
        self.register(call)
        return call

    def create_queue(
        self,
        name: str,
        options: Mapping[str, int | None] | None = None,
        *,
        timeout: int | None = None,
        now: int,
    ) -> Op[bool]:
        """Create queue ``name`` with ``options`` (:class:`herald.broker.QueueOptions`
        fields, durations in µs); the value is True if created, False if it existed
        with the same options. Retried after a lost connection. Raises
        InvalidOptionsError (nothing sent) for bad options."""
        check_name("queue", name)
        given = dict(options or {})
        try:
            QueueOptions(**given)  # type: ignore[arg-type]
        except TypeError as error:
            raise InvalidOptionsError(str(error)) from None
        return self._call(
            CreateQueue(self.new_id(), name, given),
            retry=True,
            convert=_created,
            timeout=timeout,
            now=now,
        )

    def delete_queue(self, name: str, *, timeout: int | None = None, now: int) -> Op[None]:
        """Delete a queue with its messages, groups and dead letters. Never resent
        after a lost connection (it fails with ConnectionClosedError: unknown)."""
        check_name("queue", name)
        return self._call(
            DeleteQueue(self.new_id(), name), retry=False, convert=_none, timeout=timeout, now=now
        )

    def purge(
        self, name: str, *, dead_letters: bool = False, timeout: int | None = None, now: int
    ) -> Op[int]:
        """Drop every message (and the dead letters if asked); the value is how many
        messages were dropped. Never resent after a lost connection."""
        check_name("queue", name)
        return self._call(
            PurgeQueue(self.new_id(), name, dead_letters),
            retry=False,
            convert=_purged,
            timeout=timeout,
            now=now,
        )

    def delete_group(
        self, queue: str, group: str, *, timeout: int | None = None, now: int
    ) -> Op[None]:
        """Delete a consumer group with its leases and dead letters. Never resent."""
        check_name("queue", queue)
        check_name("group", group)
        return self._call(
            DeleteGroup(self.new_id(), queue, group),
            retry=False,
            convert=_none,
            timeout=timeout,
            now=now,
        )

    def queues(self, *, timeout: int | None = None, now: int) -> Op[list[str]]:
        """The names of every queue of this core's data group, sorted."""
        return self._call(
            ListQueues(self.new_id(), self.group),
            retry=True,
            convert=_names,
            timeout=timeout,
            now=now,
        )

    def stats(self, queue: str, *, timeout: int | None = None, now: int) -> Op[QueueStats]:
        """The queue's gauges, counters, options and groups (times in µs)."""
        check_name("queue", queue)
        return self._call(
            Stats(self.new_id(), queue), retry=True, convert=_stats, timeout=timeout, now=now
        )

    def dead_letters(
        self,
        queue: str,
        group: str | None = None,
        *,
        limit: int = 100,
        timeout: int | None = None,
        now: int,
    ) -> Op[list[DeadLetter]]:
        """The queue's dead letters (of one group, if given), at most ``limit`` (0: all)."""
        check_name("queue", queue)
        if limit < 0:
            raise UsageError(f"limit must not be negative, not {limit}")
        return self._call(
            DeadLetters(self.new_id(), queue, group or "", limit),
            retry=True,
            convert=_dead_letters,
            timeout=timeout,
            now=now,
        )

    def peek(
        self,
        queue: str,
        group: str | None = None,
        *,
        limit: int = 10,
        timeout: int | None = None,
        now: int,
    ) -> Op[list[PeekedMessage]]:
        """Look at messages without taking them: nothing is leased and no delivery
        attempt is counted. With ``group``, the messages that group has not settled,
        in order, each with its state there and its attempts so far; without, every
        message the queue retains. At most ``limit`` (0: the server's maximum). A
        read: resent after a lost connection."""
        check_name("queue", queue)
        if group is not None:
            check_name("group", group)
        if limit < 0:
            raise UsageError(f"limit must not be negative, not {limit}")
        return self._call(
            Peek(self.new_id(), queue, group or "", limit),
            retry=True,
            convert=_peeked,
            timeout=timeout,
            now=now,
        )

    def redrive(
        self,
        queue: str,
        group: str,
        sequences: Iterable[int] = (),
        *,
        timeout: int | None = None,
        now: int,
    ) -> Op[int]:
        """Move dead letters of ``group`` back for redelivery (all of them when
        ``sequences`` is empty); the value is how many moved. Never resent."""
        check_name("queue", queue)
        check_name("group", group)
        return self._call(
            Redrive(self.new_id(), queue, group, list(sequences)),
            retry=False,
            convert=_redriven,
            timeout=timeout,
            now=now,
        )

    def status(self, *, timeout: int | None = None, now: int) -> Op[ClusterStatus]:
        """The cluster as the node answering sees it (a monitoring view)."""
        return self._call(
            Status(self.new_id()), retry=True, convert=_status, timeout=timeout, now=now
        )


def _call_id(call: Call) -> int:
    return call.id


def _none(value: Any) -> None:
    return None


def _created(value: Any) -> bool:
    return bool(value.get("created", False)) if isinstance(value, dict) else bool(value)


def _purged(value: Any) -> int:
    return int(value.get("purged", 0)) if isinstance(value, dict) else 0


def _redriven(value: Any) -> int:
    return int(value.get("redriven", 0)) if isinstance(value, dict) else 0


def _names(value: Any) -> list[str]:
    return [str(name) for name in convert(value, list[str], "queue names")]


def _stats(value: Any) -> QueueStats:
    return convert(value, QueueStats, "queue stats")  # type: ignore[no-any-return]


def _dead_letters(value: Any) -> list[DeadLetter]:
    return convert(value, list[DeadLetter], "dead letters")  # type: ignore[no-any-return]


def _peeked(value: Any) -> list[PeekedMessage]:
    return convert(value, list[PeekedMessage], "peeked messages")  # type: ignore[no-any-return]


def _status(value: Any) -> ClusterStatus:
    return convert(value, ClusterStatus, "status")  # type: ignore[no-any-return]
