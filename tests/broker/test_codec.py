"""The command codec: round trips, compactness, and garbage refused with a typed error."""

from __future__ import annotations

import contextlib
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from herald.broker import (
    Batch,
    Broker,
    Command,
    CreateQueue,
    Publish,
    QueueOptions,
    Tick,
    decode,
    encode,
    encode_batch,
)
from herald.broker.codec import OPCODES, VERSION, decode_entry, publish_fields
from herald.errors import InvalidCommandError, MalformedCommandError
from herald.raft import Entry, EntryKind

from .strategies import any_command, publishes


@settings(max_examples=400, deadline=None)
@given(any_command)
def test_every_command_round_trips(command: Command) -> None:
    data = encode(command)
    assert data[0] == VERSION and data[1] == OPCODES[type(command)]
    assert decode(data) == command


def test_every_command_type_has_an_opcode() -> None:
    assert len(set(OPCODES.values())) == len(OPCODES) == 17


@settings(max_examples=200, deadline=None)
@given(publishes(), st.data())
def test_truncated_or_extended_entries_are_refused(command: Publish, data: st.DataObject) -> None:
    payload = encode(command)
    cut = data.draw(st.integers(0, len(payload) - 1))
    with pytest.raises(MalformedCommandError):
        decode(payload[:cut])
    with pytest.raises(MalformedCommandError):
        decode(payload + data.draw(st.binary(min_size=1, max_size=4)))


@settings(max_examples=200, deadline=None)
@given(any_command, st.data())
def test_truncated_generic_commands_are_refused(command: Command, data: st.DataObject) -> None:
    payload = encode(command)
    cut = data.draw(st.integers(0, len(payload) - 1))
    with pytest.raises(MalformedCommandError):
        decode(payload[:cut])


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=80))
def test_garbage_never_raises_anything_but_malformed(garbage: bytes) -> None:
    try:
        command = decode(garbage)
    except MalformedCommandError:
        return
    assert encode(command) == garbage  # if it decoded, it was a real command


@settings(max_examples=300, deadline=None)
@given(any_command, st.data())
def test_flipped_bytes_decode_to_a_command_or_a_typed_error(
    command: Command, data: st.DataObject
) -> None:
    payload = bytearray(encode(command))
    at = data.draw(st.integers(0, len(payload) - 1))
    payload[at] ^= data.draw(st.integers(1, 255))
    with contextlib.suppress(MalformedCommandError):
        decode(bytes(payload))


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"", "holds no command"),
        (bytes([2, 1]) + bytes(8), "version"),
        (bytes([VERSION, 200]) + bytes(8), "opcode"),
        (encode(Tick(time=5)) + b"x", "after the command"),
    ],
)
def test_specific_refusals(payload: bytes, reason: str) -> None:
    with pytest.raises(MalformedCommandError, match=reason):
        decode(payload)


def test_invalid_utf8_and_invalid_values_are_malformed() -> None:
    good = encode(Publish("q", b"body", time=1))
    bad_utf8 = good.replace(b"q", b"\xff", 1)
    with pytest.raises(MalformedCommandError):
        decode(bad_utf8)
    # A Deliver of zero messages is not a command, even if the bytes are well formed.
    deliver = struct.pack("<BBQIQIII", VERSION, 9, 1, 0, 0, 1, 1, 1) + b"qgc"
    with pytest.raises(MalformedCommandError, match="max_messages"):
        decode(deliver)


def test_encoding_a_non_command_is_a_usage_error() -> None:
    with pytest.raises(InvalidCommandError):
        encode(Command(time=1))


def test_apply_of_garbage_is_an_error_result_and_changes_nothing() -> None:
    broker = Broker()
    before = broker.snapshot()
    result = broker.apply(Entry(1, 1, b"\x01\x05garbage"))
    assert isinstance(result, MalformedCommandError)
    assert broker.snapshot() == before and broker.applied_index == 1
    # A no-op entry (a new leader's) is harmless too.
    broker.apply(Entry(2, 2, b"", EntryKind.NOOP))
    assert broker.snapshot() == before


def test_a_publish_costs_little_more_than_its_payload() -> None:
    payload = encode(Publish("orders", b"x" * 100, message_id="order-1", time=1))
    assert len(payload) <= 100 + len("orders") + len("order-1") + 30


def test_invalid_options_in_an_entry_are_an_error_result_and_change_nothing() -> None:
    broker = Broker()
    broker.execute(CreateQueue("existing", time=1))
    before = broker.snapshot()
    payload = bytearray(encode(CreateQueue("q", QueueOptions(max_deliveries=5), time=2)))
    # max_deliveries is the fourth u64 of the options, after the fixed header.
    at = payload.index(struct.pack("<Q", 5))
    payload[at : at + 8] = struct.pack("<Q", 0)
    result = broker.apply(Entry(1, 2, bytes(payload)))
    assert isinstance(result, MalformedCommandError) and "max_deliveries" in str(result)
    assert broker.snapshot() == before
    assert broker.list_queues() == ("existing",)


def test_equal_errors_compare_equal() -> None:
    assert MalformedCommandError("x") == MalformedCommandError("x")
    assert MalformedCommandError("x") != MalformedCommandError("y")
    assert MalformedCommandError("x") != InvalidCommandError("x")
    assert len({MalformedCommandError("x"), MalformedCommandError("x")}) == 1


@settings(max_examples=200, deadline=None)
@given(publishes(), st.binary(max_size=20), st.binary(max_size=20))
def test_a_publish_is_read_in_place_as_it_decodes(
    command: Publish, before: bytes, after: bytes
) -> None:
    payload = encode(command)
    data = before + payload + after
    fields = publish_fields(data, len(before), len(payload))
    assert fields == (command.body, command.headers, command.message_id, command.producer)
    with pytest.raises(MalformedCommandError):
        publish_fields(data, len(before), len(payload) + 1)


@settings(max_examples=200, deadline=None)
@given(st.lists(publishes(), min_size=1, max_size=5), st.data())
def test_publishes_read_in_place_from_an_entry_equal_the_validated_decode(
    commands: list[Publish], data: st.DataObject
) -> None:
    """A replica reads a batch's publishes in place, without the constructor's
    checks (they ran when the leader proposed them): the commands must be the
    very ones a checked decode gives, and a cut entry still a typed error."""
    payloads = [encode(command) for command in commands]
    entry = encode_batch(payloads, 7)
    decoded, spans = decode_entry(entry)
    assert isinstance(decoded, Batch)
    assert list(decoded.commands) == [decode(payload) for payload in payloads] == commands
    assert [entry[o : o + n] for o, n in spans] == payloads
    cut = data.draw(st.integers(0, len(entry) - 1))
    with pytest.raises(MalformedCommandError):
        decode_entry(entry[:cut])
