"""Fuzzing the framing and the codecs: whatever the bytes and however they are cut,
the only exceptions are ProtocolError subclasses, and valid frames round-trip."""

from __future__ import annotations

import contextlib
import itertools
import struct
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from herald.errors import FrameTooLargeError, HandshakeError, MalformedFrameError, ProtocolError
from herald.wire import protocol as w
from herald.wire.frames import (
    FrameDecoder,
    decode_handshake_reply,
    decode_hello,
    decode_raft,
    decode_replies,
    decode_requests,
    encode_frame,
    encode_messages,
    from_wire,
    to_wire,
)

DECODERS = (decode_hello, decode_handshake_reply, decode_requests, decode_replies, decode_raft)
MAX_FRAME = 4096


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    """``data`` cut at the given offsets (taken modulo its length, in order)."""
    points = sorted({cut % (len(data) + 1) for cut in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


def feed_all(decoder: FrameDecoder, chunks: list[bytes]) -> list[bytes]:
    frames: list[bytes] = []
    for chunk in chunks:
        frames.extend(decoder.feed(chunk))
    return frames


# -- arbitrary bytes ------------------------------------------------------------------------


@given(st.binary(max_size=3000), st.lists(st.integers(0, 3000), max_size=20))
@settings(max_examples=300)
def test_arbitrary_bytes_in_any_chunking_raise_only_protocol_errors(
    data: bytes, cuts: list[int]
) -> None:
    decoder = FrameDecoder(MAX_FRAME)
    try:
        frames = feed_all(decoder, chunked(data, cuts))
    except FrameTooLargeError:
        return
    for payload in frames:
        for decode in DECODERS:
            with contextlib.suppress(ProtocolError):
                decode(payload)


@given(st.binary(max_size=2000))
@settings(max_examples=300)
def test_every_decoder_raises_only_protocol_errors(payload: bytes) -> None:
    for decode in DECODERS:
        with contextlib.suppress(ProtocolError):
            decode(payload)


_msgpack_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=20)
    | st.binary(max_size=20),
    lambda children: (
        st.lists(children, max_size=6) | st.dictionaries(st.text(max_size=8), children, max_size=6)
    ),
    max_leaves=30,
)


@given(_msgpack_values)
@settings(max_examples=300)
def test_well_formed_msgpack_of_the_wrong_shape_is_malformed(value: Any) -> None:
    payload = msgspec.msgpack.encode(value)
    for decode in DECODERS:
        with contextlib.suppress(ProtocolError):
            decode(payload)


@given(
    st.lists(
        st.lists(st.integers(-5, 2**20) | st.binary(max_size=4) | st.none(), max_size=16),
        max_size=4,
    )
)
def test_raft_frames_with_bad_fields_are_malformed(raw: list[list[Any]]) -> None:
    payload = msgspec.msgpack.encode(raw)
    with contextlib.suppress(MalformedFrameError):
        decode_raft(payload)


# -- valid frames ---------------------------------------------------------------------------

_names = st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=12)
_u63 = st.integers(0, 2**63 - 1)
_headers = st.lists(st.tuples(_names, st.text(max_size=8)), max_size=3)

_requests = st.one_of(
    st.builds(
        w.Publish,
        id=_u63,
        queue=_names,
        body=st.binary(max_size=300),
        headers=_headers,
        message_id=st.none() | _names,
        producer=st.none() | _names,
        sequence=_u63,
    ),
    st.builds(w.Subscribe, id=_u63, queue=_names, group=_names, consumer=_names),
    st.builds(
        w.Deliver,
        id=_u63,
        queue=_names,
        group=_names,
        consumer=_names,
        max_messages=_u63,
        lease=_u63,
        wait=_u63,
    ),
    st.builds(w.Ack, id=_u63, queue=_names, group=_names, sequence=_u63, token=_u63),
    st.builds(w.Nack, id=_u63, queue=_names, group=_names, sequence=_u63, token=_u63, delay=_u63),
    st.builds(w.Redrive, id=_u63, queue=_names, group=_names, sequences=st.lists(_u63)),
    st.builds(w.CreateQueue, id=_u63, queue=_names, options=st.dictionaries(_names, _u63)),
    st.builds(w.ListQueues, id=_u63),
    st.builds(w.Status, id=_u63),
    st.builds(w.DeadLetters, id=_u63, queue=_names, group=_names, limit=_u63),
)


@given(
    st.lists(st.lists(_requests, min_size=1, max_size=5), min_size=1, max_size=5),
    st.lists(st.integers(0, 20_000), max_size=30),
)
@settings(max_examples=200)
def test_valid_request_frames_round_trip_under_any_chunking(
    frames: list[list[Any]], cuts: list[int]
) -> None:
    stream = b"".join(encode_messages(requests) for requests in frames)
    decoder = FrameDecoder()
    payloads = feed_all(decoder, chunked(stream, cuts))
    assert [decode_requests(payload) for payload in payloads] == frames
    assert decoder.buffered == 0


_replies = st.builds(
    w.Reply,
    id=_u63,
    ok=st.booleans(),
    value=st.none() | _u63 | st.text(max_size=10) | st.lists(_u63, max_size=4),
    error=st.none() | st.builds(w.ErrorInfo, code=_names, message=st.text(max_size=20)),
)


@given(st.lists(_replies, max_size=8), st.lists(st.integers(0, 5000), max_size=10))
def test_valid_reply_frames_round_trip_under_any_chunking(
    replies: list[w.Reply], cuts: list[int]
) -> None:
    stream = encode_messages(replies) + encode_frame(w.Refused("HandshakeError", "no"))
    payloads = feed_all(FrameDecoder(), chunked(stream, cuts))
    assert decode_replies(payloads[0]) == replies
    assert decode_handshake_reply(payloads[1]) == w.Refused("HandshakeError", "no")


_raft_messages = st.builds(
    w.RaftMessage,
    type=st.integers(1, 12),
    src=st.integers(1, 7),
    dst=st.integers(1, 7),
    term=_u63,
    log_term=_u63,
    index=_u63,
    entries=st.lists(
        st.builds(
            w.RaftEntry,
            term=_u63,
            index=_u63,
            kind=st.integers(0, 1),
            data=st.binary(max_size=50),
        ),
        max_size=3,
    ),
    commit=_u63,
    reject=st.booleans(),
    context=st.binary(max_size=8),
)


@given(st.lists(_raft_messages, max_size=5), st.lists(st.integers(0, 3000), max_size=10))
def test_raft_frames_round_trip_under_any_chunking(
    messages: list[w.RaftMessage], cuts: list[int]
) -> None:
    stream = encode_messages(messages)
    (payload,) = feed_all(FrameDecoder(), chunked(stream, cuts))
    decoded = decode_raft(payload)
    assert [to_wire(message) for message in decoded] == messages
    assert [from_wire(message) for message in messages] == decoded


@given(
    st.builds(
        w.Hello,
        magic=st.just(w.MAGIC),
        version=st.just(w.PROTOCOL_VERSION),
        role=st.sampled_from(["client", "peer"]),
        node=st.integers(0, 100),
        cluster=st.text(max_size=10),
        client=st.text(max_size=10),
    )
)
def test_a_good_hello_round_trips(hello: w.Hello) -> None:
    (payload,) = FrameDecoder().feed(encode_frame(hello))
    assert decode_hello(payload) == hello


# -- limits and handshakes --------------------------------------------------------------------


@given(st.integers(MAX_FRAME + 1, 2**32 - 1), st.binary(max_size=100), st.integers(1, 4))
def test_oversize_frames_raise_frame_too_large(length: int, tail: bytes, split: int) -> None:
    data = struct.pack(">I", length) + tail
    decoder = FrameDecoder(MAX_FRAME)
    with pytest.raises(FrameTooLargeError):
        feed_all(decoder, [data[:split], data[split:]])


def test_a_frame_of_exactly_the_limit_is_accepted() -> None:
    payload = b"\x00" * MAX_FRAME
    (frame,) = FrameDecoder(MAX_FRAME).feed(struct.pack(">I", MAX_FRAME) + payload)
    assert frame == payload


@pytest.mark.parametrize(
    ("hello", "reason"),
    [
        (w.Hello("http", w.PROTOCOL_VERSION, "client"), "magic"),
        (w.Hello(w.MAGIC, w.PROTOCOL_VERSION + 1, "client"), "version"),
        ({"magic": w.MAGIC, "version": 1, "role": "admin"}, "Hello"),
        (["hello", w.MAGIC, 1, "client"], "Hello"),
    ],
)
def test_bad_hellos_are_handshake_errors(hello: object, reason: str) -> None:
    with pytest.raises(HandshakeError, match=reason):
        decode_hello(msgspec.msgpack.encode(hello))


def test_deeply_nested_values_are_a_protocol_error_not_a_recursion_error() -> None:
    from herald.errors import HandshakeError, MalformedFrameError
    from herald.wire.frames import decode_hello, decode_replies, decode_requests

    nested_options = b"\x91\x94\xa6create\x01\xa1q" + b"\x81\xa1a" * 50000 + b"\xc0"
    with pytest.raises(MalformedFrameError):
        decode_requests(nested_options)
    nested_list = b"\x91" * 50000 + b"\xc0"
    with pytest.raises(MalformedFrameError):
        decode_replies(nested_list)
    with pytest.raises(HandshakeError):
        decode_hello(b"\x81\xa5magic" + b"\x91" * 50000 + b"\xc0")
