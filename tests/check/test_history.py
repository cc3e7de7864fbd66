"""The history format: JSON Lines round trips, validation, and operation pairing."""

from __future__ import annotations

import io

import pytest

from herald.check.history import (
    Op,
    Recorder,
    dumps_history,
    loads_history,
    op_from_json,
    op_to_json,
    pair_operations,
    read_history,
    write_history,
)
from herald.errors import HistoryFormatError


def sample() -> list[Op]:
    r = Recorder()
    r.invoke(1, "publish", {"queue": "q", "id": "a"}, time=10)
    r.invoke("consumer-2", "deliver", {"queue": "q", "group": "g", "mode": "at_least_once"})
    r.ok(1, "publish", {"seq": 1, "duplicate": False}, time=20)
    r.ok("consumer-2", "deliver", {"messages": [{"id": "a", "seq": 1, "attempt": 1}]})
    r.invoke(1, "publish", {"queue": "q", "id": "é"})
    return r.ops


def test_round_trip_through_text_and_streams() -> None:
    ops = sample()
    assert loads_history(dumps_history(ops)) == ops
    out = io.StringIO()
    write_history(ops, out)
    assert read_history(io.StringIO(out.getvalue())) == ops
    assert out.getvalue().count("\n") == len(ops)


def test_a_line_is_compact_json_with_fixed_key_order() -> None:
    line = op_to_json(Op(3, "invoke", "publish", {"queue": "q", "id": "c3-1"}, 1200, 0))
    assert line == (
        '{"index":0,"process":3,"type":"invoke","f":"publish",'
        '"value":{"queue":"q","id":"c3-1"},"time":1200}'
    )


def test_missing_optional_fields_take_defaults() -> None:
    ops = read_history(['{"process": 1, "type": "info", "f": "ack"}', "", "  "])
    assert ops == [Op(1, "info", "ack", {}, 0, 0)]
    assert op_from_json('{"process": 1, "type": "ok", "f": "x", "value": null}', 7).index == 7


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("not json", "not JSON"),
        ("[1, 2]", "object"),
        ('{"process": 1.5, "type": "ok", "f": "x"}', "process"),
        ('{"process": true, "type": "ok", "f": "x"}', "process"),
        ('{"process": 1, "type": "done", "f": "x"}', "type"),
        ('{"process": 1, "type": "ok", "f": 3}', "f must"),
        ('{"process": 1, "type": "ok", "f": "x", "value": [1]}', "value"),
        ('{"process": 1, "type": "ok", "f": "x", "time": "now"}', "time"),
        ('{"process": 1, "type": "ok", "f": "x", "index": "1"}', "index"),
    ],
)
def test_malformed_lines_name_their_line(line: str, reason: str) -> None:
    with pytest.raises(HistoryFormatError, match=reason) as caught:
        read_history(['{"process": 1, "type": "ok", "f": "x"}', line])
    assert caught.value.line == 2


def test_pairing_merges_values_and_unfinished_ops_are_info() -> None:
    operations = list(pair_operations(sample()))
    assert [(o.f, o.status, o.start, o.end) for o in operations] == [
        ("publish", "ok", 0, 2),
        ("deliver", "ok", 1, 3),
        ("publish", "info", 4, 5),
    ]
    assert operations[0].value == {"queue": "q", "id": "a", "seq": 1, "duplicate": False}


def test_completions_without_invocations_stand_alone() -> None:
    r = Recorder()
    r.ok(9, "dead_letter", {"queue": "q", "group": "g", "id": "a"})
    [operation] = pair_operations(r.ops)
    assert (operation.status, operation.start, operation.end) == ("ok", 0, 0)


def test_a_process_does_one_thing_at_a_time() -> None:
    r = Recorder()
    r.invoke(1, "publish", {})
    r.invoke(1, "publish", {})
    with pytest.raises(HistoryFormatError, match="still open"):
        list(pair_operations(r.ops))
    r = Recorder()
    r.invoke(1, "publish", {})
    r.ok(1, "ack", {})
    with pytest.raises(HistoryFormatError, match="completed"):
        list(pair_operations(r.ops))


def test_op_type_is_validated() -> None:
    with pytest.raises(HistoryFormatError):
        Op(1, "maybe", "publish")
