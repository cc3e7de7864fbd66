"""Bad input is an answer, not a crash: each bad connection is closed (with an error
frame where possible) while a well-behaved client keeps being served throughout."""

from __future__ import annotations

import struct
import time
from collections.abc import Callable, Iterator

import msgspec
import pytest

from herald.wire.frames import decode_replies, encode_frame, encode_messages
from herald.wire.protocol import (
    MAGIC,
    PROTOCOL_VERSION,
    CreateQueue,
    Deliver,
    Hello,
    Publish,
    Refused,
    Subscribe,
)

from .conftest import InProcessNode
from .wireclient import WireClient

MAX_FRAME = 64 * 1024


@pytest.fixture
def node(make_node: Callable[..., InProcessNode]) -> InProcessNode:
    return make_node(max_frame=MAX_FRAME, handshake_timeout=0.3)


@pytest.fixture
def good(node: InProcessNode) -> Iterator[WireClient]:
    """The well-behaved client: it creates a queue and must always be served."""
    with WireClient(node.address, name="good") as client:
        assert client.call(CreateQueue(client.next_id(), "q")).ok
        yield client
        # Still served after the bad connection was dealt with.
        check_served(client)


def check_served(client: WireClient) -> None:
    reply = client.call(Publish(client.next_id(), "q", b"still here"))
    assert reply.ok, reply
    assert reply.value[3] == "durable"


def assert_error_frame(bad: WireClient, code: str) -> None:
    """After the handshake: one Reply with id 0 naming the error, then the close."""
    frame = bad.read_frame()
    assert frame is not None, "closed without an error frame"
    (reply,) = decode_replies(frame)
    assert (reply.id, reply.ok) == (0, False)
    assert reply.error is not None and reply.error.code == code
    assert bad.closed_by_server()


def assert_refused(bad: WireClient, code: str = "HandshakeError") -> str:
    reply = bad.handshake_reply()
    assert isinstance(reply, Refused), reply
    assert reply.code == code
    assert bad.closed_by_server()
    return reply.message


def test_malformed_frame(node: InProcessNode, good: WireClient) -> None:
    with WireClient(node.address) as bad:
        bad.send_raw(struct.pack(">I", 5) + b"\xc1\xc1\xc1\xc1\xc1")  # not MessagePack
        check_served(good)
        assert_error_frame(bad, "MalformedFrameError")


def test_oversize_frame(node: InProcessNode, good: WireClient) -> None:
    with WireClient(node.address) as bad:
        bad.send_raw(struct.pack(">I", MAX_FRAME + 1) + b"x" * 100)
        assert_error_frame(bad, "FrameTooLargeError")
    assert good.welcome is not None and good.welcome.max_frame == MAX_FRAME


def test_unknown_message_tag(node: InProcessNode, good: WireClient) -> None:
    with WireClient(node.address) as bad:
        bad.send_raw(encode_messages([("launch-missiles", 1, "now")]))
        assert_error_frame(bad, "MalformedFrameError")


def test_requests_before_the_error_are_answered(node: InProcessNode, good: WireClient) -> None:
    with WireClient(node.address) as bad:
        bad.send(Publish(1, "q", b"fine"))
        reply = bad.wait_for({1})[1]
        assert reply.ok
        bad.send_raw(struct.pack(">I", 3) + b"\x93\x01\x02")  # an array, not a list of requests
        assert_error_frame(bad, "MalformedFrameError")


def test_wrong_version(node: InProcessNode, good: WireClient) -> None:
    with WireClient(node.address, hello=False) as bad:
        bad.send_frame(Hello(MAGIC, PROTOCOL_VERSION + 1, "client"))
        assert "version" in assert_refused(bad)


def test_wrong_magic(node: InProcessNode, good: WireClient) -> None:
    with WireClient(node.address, hello=False) as bad:
        bad.send_frame(Hello("kafka", PROTOCOL_VERSION, "client"))
        assert "magic" in assert_refused(bad)


def test_first_frame_not_a_hello(node: InProcessNode, good: WireClient) -> None:
    with WireClient(node.address, hello=False) as bad:
        bad.send_raw(encode_messages([Publish(1, "q", b"no hello")]))
        assert_refused(bad)


def test_http_client(node: InProcessNode, good: WireClient) -> None:
    # "GET " read as a frame length is about a gigabyte: refused before any is read.
    with WireClient(node.address, hello=False) as bad:
        bad.send_raw(b"GET / HTTP/1.1\r\nHost: herald\r\n\r\n")
        assert_refused(bad, "FrameTooLargeError")


def test_silent_client_is_dropped(node: InProcessNode, good: WireClient) -> None:
    with WireClient(node.address, hello=False) as bad:
        check_served(good)
        assert "no Hello" in assert_refused(bad)


def test_client_stalling_inside_the_hello(node: InProcessNode, good: WireClient) -> None:
    with WireClient(node.address, hello=False) as bad:
        bad.send_raw(encode_frame(Hello(MAGIC, PROTOCOL_VERSION, "client"))[:7])
        assert_refused(bad)


def test_peer_of_another_cluster_is_refused(node: InProcessNode, good: WireClient) -> None:
    with WireClient(node.address, hello=False) as bad:
        bad.send_frame(Hello(MAGIC, PROTOCOL_VERSION, "peer", node=2, cluster="other"))
        assert "cluster" in assert_refused(bad)


def test_unknown_peer_is_refused(node: InProcessNode, good: WireClient) -> None:
    with WireClient(node.address, hello=False) as bad:
        bad.send_frame(Hello(MAGIC, PROTOCOL_VERSION, "peer", node=7, cluster="herald"))
        assert "not a peer" in assert_refused(bad)


def test_garbage_from_a_peer(make_node: Callable[..., InProcessNode]) -> None:
    # Two voters, the second never started: node 1 accepts node 2's handshake
    # (and never leads). A peer sending garbage is dropped; clients are still
    # answered (NotLeaderError: no leader without a quorum).
    node = make_node(extra_peers={2: "127.0.0.1:9"}, wait_leader=False)
    with WireClient(node.address, hello=False) as peer:
        peer.send_frame(Hello(MAGIC, PROTOCOL_VERSION, "peer", node=2, cluster="herald"))
        assert peer.handshake_reply().node == 1  # type: ignore[union-attr]
        peer.send_raw(encode_messages([[999, 2, 1, 5]]))  # no such Raft message type
        assert peer.closed_by_server()
    with WireClient(node.address) as client:
        reply = client.call(Publish(client.next_id(), "q", b"x"))
        assert reply.error is not None and reply.error.code == "NotLeaderError"


def test_invalid_fields_are_typed_errors_not_disconnects(
    node: InProcessNode, good: WireClient
) -> None:
    replies = [
        good.call(Publish(good.next_id(), "", b"empty queue name")),
        good.call(Deliver(good.next_id(), "q", "g", "c", max_messages=0)),
        good.call(Subscribe(good.next_id(), "q", "g", "c", mode="sometimes")),
        good.call(CreateQueue(good.next_id(), "q2", {"max_length": -1})),
        good.call(CreateQueue(good.next_id(), "q3", {"colour": "blue"})),
        good.call(Publish(good.next_id(), "missing", b"x")),
    ]
    codes = [reply.error.code for reply in replies if reply.error is not None]
    assert codes == [
        "InvalidCommandError",
        "InvalidCommandError",
        "InvalidCommandError",
        "InvalidOptionsError",
        "InvalidOptionsError",
        "UnknownQueueError",
    ]


def test_client_that_stops_reading_is_dropped(make_node: Callable[..., InProcessNode]) -> None:
    node = make_node(max_output_bytes=1 << 20, output_high_water=256 * 1024)
    with WireClient(node.address) as good:
        assert good.call(CreateQueue(good.next_id(), "big")).ok
        body = b"x" * 60_000
        for _ in range(3):
            publishes = [Publish(good.next_id(), "big", body) for _ in range(100)]
            good.send(*publishes)
            good.wait_for({p.id for p in publishes})
        with WireClient(node.address) as lazy:
            assert lazy.call(Subscribe(lazy.next_id(), "big", "g", "lazy")).ok
            # Three Delivers answered with ~6 MB each, far beyond the 1 MiB bound
            # on unsent replies, and the client does not read them (for a while).
            lazy.send(
                *[Deliver(lazy.next_id(), "big", "g", "lazy", max_messages=100) for _ in range(3)]
            )
            time.sleep(1.0)
            assert good.call(Publish(good.next_id(), "big", b"still here")).ok
            try:
                closed = lazy.closed_by_server(timeout=10)
            except OSError:  # a reset: the server aborted the connection
                closed = True
            assert closed


def test_messages_of_unknown_shape_inside_a_valid_list(
    node: InProcessNode, good: WireClient
) -> None:
    with WireClient(node.address) as bad:
        bad.send_raw(encode_messages([msgspec.msgpack.encode({"not": "an array"})]))
        assert_error_frame(bad, "MalformedFrameError")


def test_deeply_nested_values(node: InProcessNode, good: WireClient) -> None:
    deep_map = b"\x81\xa1a" * 5_000 + b"\xc0"  # {"a": {"a": ... }}, 5,000 deep
    # A CreateQueue whose options hold the nesting.
    payload = b"\x91\x94\xa6create\x01\xa1q" + deep_map
    with WireClient(node.address) as bad:
        bad.send_raw(struct.pack(">I", len(payload)) + payload)
        assert_error_frame(bad, "MalformedFrameError")
    # A Hello with an unknown field holding it.
    hello = b"\x83\xa5magic\xa6herald\xa7version\x01\xa1x" + deep_map
    with WireClient(node.address, hello=False) as bad:
        bad.send_raw(struct.pack(">I", len(hello)) + hello)
        assert_refused(bad)
