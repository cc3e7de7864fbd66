"""Herald's wire protocol: the messages a client, a server and its peers exchange.

Framing (see :mod:`herald.wire.frames`): every frame is a 4-byte big-endian
length followed by that many bytes of MessagePack (encoded with msgspec). A
connection opens with a handshake; after it, every frame holds a *list* of
messages, so a client (or a peer) can send many in one write and a server can
answer many in one write: batching lives in the framing, not in each message.

Handshake
---------

The side that connects sends :class:`Hello` as its first frame; the server
answers :class:`Welcome` (then the connection is open) or :class:`Refused`
(then it closes). ``Hello.version`` must equal :data:`PROTOCOL_VERSION`;
``magic`` must be :data:`MAGIC` (so a stray HTTP client or port scanner is
refused with a clear error instead of being misread).

Clients
-------

A client sends requests, each with a connection-unique ``id``; the server
answers each with exactly one :class:`Reply` carrying the same ``id``, in any
order. Requests may be pipelined: a client may have many in flight (up to the
server's ``max_in_flight``; beyond it the server stops reading the connection,
which is backpressure, not an error).

Writes (publish, subscribe, deliver, ack, nack, extend, reject, leave, redrive,
queue administration) are answered once the command is committed (durable on a
majority) and applied. Reads (queues, stats, dead letters, peek, status) are
linearizable: served after a read-index round. A node that is not the leader
answers every request with a ``NotLeaderError`` naming the leader's address.

``Reply.ok`` is true when the broker accepted the command; ``value`` is then
the result (its shape depends on the request: see each request). When false,
``error`` is an :class:`ErrorInfo`: ``code`` is the name of the typed error
class in :mod:`herald.errors` (``UnknownQueueError``, ``StaleLeaseError``,
``NotLeaderError``, ...), so a client raises the same class the broker raised.

Peers
-----

Nodes of one cluster talk over the same port with ``Hello.role == "peer"``;
after the handshake each frame holds a list of :class:`RaftMessage`.
"""

from __future__ import annotations

from typing import Any, Final, Literal

import msgspec

__all__ = [
    "MAGIC",
    "PROTOCOL_VERSION",
    "Ack",
    "CreateQueue",
    "DeadLetter",
    "DeadLetters",
    "DeleteGroup",
    "DeleteQueue",
    "Deliver",
    "DeliveryWire",
    "ErrorInfo",
    "Extend",
    "Hello",
    "Leave",
    "ListQueues",
    "Nack",
    "Peek",
    "PeekedMessage",
    "Publish",
    "PurgeQueue",
    "RaftEntry",
    "RaftMessage",
    "RaftSnapshot",
    "Redrive",
    "Refused",
    "Reject",
    "Reply",
    "Request",
    "Stats",
    "Status",
    "Subscribe",
    "Welcome",
]

#: The protocol version; a peer or client of another version is refused.
PROTOCOL_VERSION: Final = 1
#: Sent in every Hello so anything that is not a Herald client is refused early.
MAGIC: Final = "herald"

Role = Literal["client", "peer"]


# -- handshake -----------------------------------------------------------------------


class Hello(msgspec.Struct, frozen=True, tag="hello"):
    magic: str
    version: int
    role: Role
    #: For peers: the connecting node's id and the cluster's identity.
    node: int = 0
    cluster: str = ""
    #: For clients: a name for logs and metrics.
    client: str = ""
    #: For peers: how many data groups the node hosts (the placement rule
    #: follows from it, so every node of a cluster must have the same).
    groups: int = 1


class Welcome(msgspec.Struct, frozen=True, tag="welcome"):
    version: int
    node: int
    #: The leader as far as this node knows (0 and "" when unknown).
    leader: int
    leader_address: str
    #: The server's limits, so a client can size its pipeline.
    max_in_flight: int
    max_frame: int
    #: The cluster's data groups (a queue's group: herald.wire.placement), and
    #: each group's leader as far as this node knows: ``(node, address)``,
    #: ``(0, "")`` when unknown. ``leader`` above is group 0's.
    groups: int = 1
    leaders: list[tuple[int, str]] = []


class Refused(msgspec.Struct, frozen=True, tag="refused"):
    code: str  # an error class name from herald.errors
    message: str


# -- client requests -------------------------------------------------------------------
#
# Every request carries ``id``. The reply's ``value`` for each is given in its
# docstring, as msgspec-encodable data (maps, lists, scalars).


class Publish(msgspec.Struct, frozen=True, tag="pub", array_like=True):
    """Publish one message. ``producer``/``sequence`` make retries idempotent;
    ``message_id`` is an idempotency key. Value: ``[queue, sequence, duplicate,
    durability, incarnation]`` (``incarnation`` tells a queue from an earlier
    queue of the same name that was deleted)."""

    id: int
    queue: str
    body: bytes
    headers: list[tuple[str, str]] = []
    message_id: str | None = None
    producer: str | None = None
    sequence: int = 0


class Subscribe(msgspec.Struct, frozen=True, tag="sub", array_like=True):
    """Join a consumer group (created on first use). ``mode``: ``at_least_once``
    or ``at_most_once``. Value: ``{"expires_at": int}``."""

    id: int
    queue: str
    group: str
    consumer: str
    mode: str = "at_least_once"
    session_timeout: int = 30_000_000


class Deliver(msgspec.Struct, frozen=True, tag="dlv", array_like=True):
    """Lease up to ``max_messages``. ``wait`` (microseconds): when nothing is
    ready, the server holds the request up to this long for messages to arrive
    (long polling) before answering with an empty list. ``lease`` 0: the queue's
    default. Value: ``list[DeliveryWire]``."""

    id: int
    queue: str
    group: str
    consumer: str
    max_messages: int = 1
    lease: int = 0
    wait: int = 0


class Ack(msgspec.Struct, frozen=True, tag="ack", array_like=True):
    """Settle a delivery. Value: ``None``."""

    id: int
    queue: str
    group: str
    sequence: int
    token: int


class Nack(msgspec.Struct, frozen=True, tag="nack", array_like=True):
    """Give a delivery back, redelivered after ``delay`` microseconds. Value:
    ``{"dead_lettered": bool, "available_at": int}``."""

    id: int
    queue: str
    group: str
    sequence: int
    token: int
    delay: int = 0


class Extend(msgspec.Struct, frozen=True, tag="ext", array_like=True):
    """Push a lease's deadline ``duration`` microseconds past now. Value:
    ``{"deadline": int}``."""

    id: int
    queue: str
    group: str
    sequence: int
    token: int
    duration: int = 30_000_000


class Reject(msgspec.Struct, frozen=True, tag="rej", array_like=True):
    """Send a delivery straight to the dead letters. Value: ``None``."""

    id: int
    queue: str
    group: str
    sequence: int
    token: int


class Leave(msgspec.Struct, frozen=True, tag="leave", array_like=True):
    """Leave a group; its leases come back. Value: ``{"released": int}``."""

    id: int
    queue: str
    group: str
    consumer: str


class CreateQueue(msgspec.Struct, frozen=True, tag="create", array_like=True):
    """Create a queue; ``options`` are :class:`herald.broker.QueueOptions` fields
    (times in microseconds). Value: ``{"created": bool}``."""

    id: int
    queue: str
    options: dict[str, Any] = {}


class DeleteQueue(msgspec.Struct, frozen=True, tag="delete", array_like=True):
    """Value: ``None``."""

    id: int
    queue: str


class PurgeQueue(msgspec.Struct, frozen=True, tag="purge", array_like=True):
    """Drop every message (and with ``dead_letters`` the dead letters). Value:
    ``{"purged": int}``."""

    id: int
    queue: str
    dead_letters: bool = False


class DeleteGroup(msgspec.Struct, frozen=True, tag="delgroup", array_like=True):
    """Value: ``None``."""

    id: int
    queue: str
    group: str


class Redrive(msgspec.Struct, frozen=True, tag="redrive", array_like=True):
    """Move dead letters back (all of the group's when ``sequences`` is empty).
    Value: ``{"redriven": int}``."""

    id: int
    queue: str
    group: str
    sequences: list[int] = []


class Peek(msgspec.Struct, frozen=True, tag="peek", array_like=True):
    """Look at a queue's messages without taking them: nothing is leased, no
    delivery attempt is counted, nothing changes. With ``group``, the messages
    that group has not settled, in sequence order, each with its state there;
    with ``group`` empty, every message the queue retains. At most ``limit``
    (0: the server's maximum, 1000). Served like the other reads (linearizable).
    Value: ``list[PeekedMessage]``."""

    id: int
    queue: str
    group: str = ""
    limit: int = 10


class ListQueues(msgspec.Struct, frozen=True, tag="queues", array_like=True):
    """Value: ``list[str]``, the queues of data group ``group`` (a client asks each)."""

    id: int
    group: int = 0


class Stats(msgspec.Struct, frozen=True, tag="stats", array_like=True):
    """Value: the queue's stats as a map (see :class:`herald.broker.QueueStats`)."""

    id: int
    queue: str


class DeadLetters(msgspec.Struct, frozen=True, tag="dlq", array_like=True):
    """Value: ``list[DeadLetter]`` (at most ``limit``; 0 means all)."""

    id: int
    queue: str
    group: str = ""
    limit: int = 0


class Status(msgspec.Struct, frozen=True, tag="status", array_like=True):
    """Value: the cluster as this node sees it: ``{"node", "role", "term",
    "leader", "leader_address", "commit", "applied", "last_index", "peers":
    [{"node", "address", "match", "lag"}], "groups": [{"group", "role", "term",
    "leader", "leader_address", "commit", "applied", "last_index"}]}`` (the
    top-level Raft fields are group 0's; peers' progress is known on group 0's
    leader only). Not linearizable: it is a monitoring view."""

    id: int


Request = (
    Publish
    | Subscribe
    | Deliver
    | Ack
    | Nack
    | Extend
    | Reject
    | Leave
    | CreateQueue
    | DeleteQueue
    | PurgeQueue
    | DeleteGroup
    | Redrive
    | ListQueues
    | Stats
    | DeadLetters
    | Peek
    | Status
)


# -- replies -----------------------------------------------------------------------------


class ErrorInfo(msgspec.Struct, frozen=True, array_like=True):
    code: str  # the class name of a herald.errors error
    message: str
    #: For NotLeaderError: where the leader is ("" when unknown).
    leader_address: str = ""


class Reply(msgspec.Struct, frozen=True, tag="reply", array_like=True):
    id: int
    ok: bool
    value: Any = None
    error: ErrorInfo | None = None


class DeliveryWire(msgspec.Struct, frozen=True, array_like=True):
    """One leased (or, at most once, settled) message."""

    sequence: int
    body: bytes
    headers: list[tuple[str, str]]
    message_id: str | None
    published_at: int
    attempt: int
    token: int  # 0 when settled on delivery (at most once)
    deadline: int
    redelivery: bool
    reason: str | None  # why it came back: expired, nacked, consumer_gone
    #: The queue's incarnation: a queue deleted and created again under the same
    #: name numbers its messages from 1 again, under a new incarnation.
    incarnation: int = 0


class PeekedMessage(msgspec.Struct, frozen=True, array_like=True):
    """One message as :class:`Peek` shows it (never leased by being shown)."""

    sequence: int
    body: bytes
    headers: list[tuple[str, str]]
    message_id: str | None
    published_at: int
    #: Deliveries so far in the peeked group (0 without a group).
    attempts: int
    #: In the peeked group: ``backlog`` (never delivered), ``ready`` (back for
    #: redelivery), ``leased`` or ``delayed``; ``retained`` without a group.
    state: str
    incarnation: int


class DeadLetter(msgspec.Struct, frozen=True):
    sequence: int
    body: bytes
    headers: list[tuple[str, str]]
    message_id: str | None
    attempts: int
    reason: str
    time: int
    history: list[dict[str, Any]]


# -- peers -------------------------------------------------------------------------------


class RaftEntry(msgspec.Struct, frozen=True, array_like=True):
    term: int
    index: int
    kind: int
    data: bytes


class RaftSnapshot(msgspec.Struct, frozen=True, array_like=True):
    index: int
    term: int
    voters: list[int]
    data: bytes


class RaftMessage(msgspec.Struct, frozen=True, array_like=True):
    """A :class:`herald.raft.Message` on the wire (same fields, same meaning)."""

    type: int
    src: int
    dst: int
    term: int
    group: int = 0
    log_term: int = 0
    index: int = 0
    entries: list[RaftEntry] = []
    commit: int = 0
    reject: bool = False
    reject_hint: int = 0
    snapshot: RaftSnapshot | None = None
    context: bytes = b""
    transfer: bool = False
    #: The sender's wall clock (microseconds) on heartbeat responses, from which
    #: the leader derives the time it writes into the log (0: not given).
    wall: int = 0
