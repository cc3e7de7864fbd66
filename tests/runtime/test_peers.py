"""The peer links collect what the host sends and write it when flushed, one frame per peer."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from herald.raft import Message, MessageType
from herald.runtime.peers import PeerLink, PeerTransport
from herald.wire.frames import FrameDecoder, decode_raft


class _Transport:
    """What PeerLink uses of an asyncio transport."""

    def __init__(self, buffered: int = 0) -> None:
        self.writes: list[bytes] = []
        self.buffered = buffered

    def is_closing(self) -> bool:
        return False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def get_write_buffer_size(self) -> int:
        return self.buffered


def _link(node: int = 2, limit: int = 1 << 20) -> PeerLink:
    server: Any = SimpleNamespace(config=SimpleNamespace(peer_queue_bytes=limit))
    return PeerLink(server, node, f"127.0.0.1:{7430 + node}")


def _heartbeat(dst: int, commit: int) -> Message:
    return Message(MessageType.HEARTBEAT, src=1, dst=dst, term=3, commit=commit)


def _frames(transport: _Transport) -> list[list[Message]]:
    decoder = FrameDecoder()
    return [decode_raft(payload) for data in transport.writes for payload in decoder.feed(data)]


def test_nothing_leaves_before_the_flush_and_then_one_frame_holds_it_all() -> None:
    link = _link()
    transport = _Transport()
    link.transport = transport  # type: ignore[assignment]
    for commit in (1, 2, 3):
        link.add(_heartbeat(2, commit))
    assert transport.writes == []
    link.flush()
    [frame] = _frames(transport)
    assert [message.commit for message in frame] == [1, 2, 3]
    assert link.sent_frames == 1
    link.flush()  # nothing collected since: no empty frame
    assert len(transport.writes) == 1


def test_what_is_collected_while_the_link_is_down_or_full_is_dropped_and_counted() -> None:
    link = _link(limit=100)
    link.add(_heartbeat(2, 1))
    link.flush()  # no connection
    assert link.dropped == 1
    full = _Transport(buffered=101)
    link.transport = full  # type: ignore[assignment]
    link.add(_heartbeat(2, 2))
    link.add(_heartbeat(2, 3))
    link.flush()
    assert link.dropped == 3 and full.writes == []
    # Dropped means gone: a later flush does not resend it.
    full.buffered = 0
    link.add(_heartbeat(2, 4))
    link.flush()
    assert [[message.commit for message in frame] for frame in _frames(full)] == [[4]]


def test_the_transport_sorts_messages_by_destination_and_flushes_every_link() -> None:
    transport = object.__new__(PeerTransport)
    transport.links = {2: _link(2), 3: _link(3)}
    wires = {node: _Transport() for node in (2, 3)}
    for node, link in transport.links.items():
        link.transport = wires[node]  # type: ignore[assignment]
    transport.send([_heartbeat(2, 1), _heartbeat(3, 1), _heartbeat(2, 2), _heartbeat(9, 1)])
    assert all(wire.writes == [] for wire in wires.values())
    transport.flush()
    assert [[m.commit for m in frame] for frame in _frames(wires[2])] == [[1, 2]]
    assert [[m.commit for m in frame] for frame in _frames(wires[3])] == [[1]]
