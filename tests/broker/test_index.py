"""MessageIndex and Backlog against plain dicts and lists doing the same the obvious way."""

from __future__ import annotations

import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from herald.broker.index import CHUNK, Backlog, MessageIndex, Run

Record = tuple[int, int, int, int, int, int]


def record(sequence: int, refs: int = 1) -> Record:
    # The entry grows with the sequence, as publishes do.
    return (
        sequence + 10,
        sequence % 97,
        40 + sequence % 5,
        1 + sequence % 300,
        1000 + sequence,
        refs,
    )


def check(index: MessageIndex, model: dict[int, Record]) -> None:
    index.check()
    assert list(index.sequences()) == sorted(model)
    assert len(index) == len(model)
    assert index.bytes == sum(r[3] for r in model.values())
    for sequence, expected in model.items():
        assert index.get(sequence) == expected
        assert sequence in index
    assert index.pin() == min((r[0] for r in model.values()), default=0)
    ranges = list(index.ranges())
    assert [s for low, high in ranges for s in range(low, high)] == sorted(model)
    assert list(Backlog.of_ranges(ranges)) == sorted(model)
    # Runs: consecutive sequences, increasing, and they rebuild the same index.
    rebuilt = MessageIndex()
    previous_end = 0
    for run in index.runs():
        assert run.first >= previous_end  # adjacent only across a chunk boundary
        previous_end = run.first + len(run)
        rebuilt.load_run(Run.from_bytes(run.first, len(run), run.to_bytes()))
    assert [(s, rebuilt.get(s)) for s in rebuilt.sequences()] == sorted(model.items())
    assert rebuilt.bytes == index.bytes

    # The same messages, another history: the same runs, byte for byte (replicas'
    # snapshots must agree).
    def written(ix: MessageIndex) -> list[tuple[int, list[bytes]]]:
        return [
            (r.first, [bytes(memoryview(c).cast("B")) for c in r.to_bytes()]) for r in ix.runs()
        ]

    assert written(rebuilt) == written(index)


ops = st.lists(
    st.one_of(
        st.tuples(st.just("publish"), st.integers(1, 3 * CHUNK)),  # how many
        st.tuples(st.just("settle"), st.integers(0, 10_000)),  # which (a fraction)
        st.tuples(st.just("settle_run"), st.integers(0, 10_000)),
        st.tuples(st.just("readd"), st.integers(0, 10_000)),
        st.tuples(st.just("refs"), st.integers(0, 10_000)),
        st.tuples(st.just("move"), st.integers(0, 10_000)),  # a Carry copies it forward
        st.tuples(st.just("group"), st.integers(0, 0)),  # a new group: one more reference
    ),
    max_size=25,
)


@settings(max_examples=60, deadline=None)
@given(ops)
def test_the_index_agrees_with_a_dict(steps: list[tuple[str, int]]) -> None:
    index = MessageIndex()
    model: dict[int, Record] = {}
    released: dict[int, Record] = {}
    next_sequence = 1
    for op, value in steps:
        if op == "publish":
            for sequence in range(next_sequence, next_sequence + value):
                index.add(sequence, record(sequence))
                model[sequence] = record(sequence)
            next_sequence += value
        elif op in ("settle", "settle_run") and model:
            keys = sorted(model)
            start = value * len(keys) // 10_001
            chosen = keys[start : start + (CHUNK + 7 if op == "settle_run" else 1)]
            for sequence in chosen:
                released[sequence] = index.remove(sequence)
                assert released[sequence] == model.pop(sequence)
        elif op == "readd" and released:
            keys = sorted(released)
            sequence = keys[value * len(keys) // 10_001]
            back = released.pop(sequence)
            index.add(sequence, back)  # a redrive: an old sequence with its old entry
            model[sequence] = back
        elif op == "refs" and model:
            keys = sorted(model)
            sequence = keys[value * len(keys) // 10_001]
            index.set_refs(sequence, value % 7)
            model[sequence] = (*model[sequence][:5], value % 7)
        elif op == "group":
            index.add_ref_to_all()
            model = {sequence: (*r[:5], r[5] + 1) for sequence, r in model.items()}
        elif op == "move" and model:
            keys = sorted(model)
            sequence = keys[value * len(keys) // 10_001]
            entry = next_sequence + 10 + value  # past every publish so far
            index.move(sequence, entry, 5, 41)
            model[sequence] = (entry, 5, 41, *model[sequence][3:])
        check(index, model)


def test_settled_chunks_are_dropped_and_a_few_survivors_go_sparse() -> None:
    index = MessageIndex()
    total = 10 * CHUNK
    for sequence in range(1, total + 1):
        index.add(sequence, record(sequence))
    full = sys.getsizeof(index._chunks)
    # A long-lived message every chunk, everything else settled.
    for sequence in range(1, total + 1):
        if sequence % CHUNK != 5:
            index.remove(sequence)
    assert len(index) == 10
    chunks = list(index._chunks.values())
    assert all(type(chunk).__name__ == "_Sparse" for chunk in chunks[:-1])
    assert sys.getsizeof(index._chunks) <= full
    for sequence in list(index.sequences()):
        index.remove(sequence)
    assert len(index._chunks) <= 1  # only the open (last) chunk may stay
    assert index.pin() == 0


def test_a_redriven_message_keeps_its_older_entry_and_the_pin_sees_it() -> None:
    index = MessageIndex()
    for sequence in range(1, 101):
        index.add(sequence, record(sequence))
    old = index.remove(3)
    for sequence in range(1, 51):
        if sequence != 3:
            index.remove(sequence)
    assert index.pin() == record(51)[0]
    index.add(3, old)
    assert index.pin() == old[0]
    assert list(index.sequences())[:2] == [3, 51]


def test_the_pin_follows_the_oldest_message_as_it_is_carried_forward_or_settled() -> None:
    """The pin is cached per chunk (every checkpoint asks it): a Carry that moves the
    oldest message to a later entry, or the oldest settling, must move it up."""
    index = MessageIndex()
    for sequence in range(1, 101):
        index.add(sequence, record(sequence))
    assert index.pin() == record(1)[0]
    index.move(1, 5_000, 0, 41)  # carried forward
    assert index.pin() == record(2)[0]
    index.remove(2)
    assert index.pin() == record(3)[0]
    index.add(2, record(2))  # redriven: its old entry comes back
    assert index.pin() == record(2)[0]
    for sequence in range(2, 101):
        index.remove(sequence)
    assert index.pin() == 5_000


def test_bad_records_are_refused() -> None:
    index = MessageIndex()
    index.add(1, record(1))
    with pytest.raises(ValueError, match="retained already"):
        index.add(1, record(1))
    with pytest.raises(ValueError, match="log index"):
        index.add(2, (0, 0, 0, 0, 0, 0))
    with pytest.raises(KeyError):
        index.remove(2)
    run = next(index.runs())
    with pytest.raises(ValueError, match="twice"):
        index.load_run(run)


def test_a_million_messages_cost_about_32_bytes_each() -> None:
    index = MessageIndex()
    first = 1
    count = 250 * CHUNK
    run = Run.from_bytes(
        first,
        count,
        [
            bytes(8 * count).replace(b"\0" * 8, (7).to_bytes(8, "little")),
            bytes(4 * count),
            bytes(4 * count),
            bytes(4 * count),
            bytes(8 * count),
            bytes(4 * count),
        ],
    )
    index.load_run(run)
    assert len(index) == count
    held = sum(
        column.itemsize * len(column)
        for chunk in index._chunks.values()
        for column in chunk.columns  # type: ignore[union-attr]
    )
    assert 32 <= held / count < 32.2  # one chunk more: sequences start at 1


backlog_ops = st.lists(
    st.one_of(
        st.tuples(st.just("append"), st.integers(0, 3)),  # the gap before it
        st.tuples(st.just("popleft"), st.just(0)),
        st.tuples(st.just("pop"), st.just(0)),
    ),
    max_size=60,
)


@settings(max_examples=200, deadline=None)
@given(backlog_ops)
def test_the_backlog_agrees_with_a_list(steps: list[tuple[str, int]]) -> None:
    backlog = Backlog()
    model: list[int] = []
    last = 0
    for op, gap in steps:
        if op == "append":
            last += 1 + gap
            backlog.append(last)
            model.append(last)
        elif op == "popleft" and model:
            assert backlog.popleft() == model.pop(0)
        elif op == "pop" and model:
            assert backlog.pop() == model.pop()
        assert list(backlog) == model and len(backlog) == len(model)
        assert bool(backlog) == bool(model)
        if model:
            assert backlog[0] == model[0]
        rebuilt = Backlog()
        for low, high in backlog.ranges():
            rebuilt.add_range(low, high)
        assert list(rebuilt) == model
    with pytest.raises(ValueError):
        Backlog([5]).append(3)


def test_the_state_check_catches_what_it_counts_instead_of_walking() -> None:
    """With one group the invariant check counts over the index's columns instead of
    visiting each message; it must still catch each kind of inconsistency."""
    from herald.errors import InvariantError

    from .helpers import Driver

    def fresh() -> Driver:
        d = Driver()
        d.queue()
        d.subscribe()
        for n in range(10):
            d.publish(body=bytes([n]))
        d.deliver("c1", n=2)
        return d

    d = fresh()
    d.broker.check_invariants()
    queue = d.broker._state.queues["q"]
    queue.messages.set_refs(5, 2)  # a reference nobody holds
    with pytest.raises(InvariantError, match="reference count"):
        d.broker.check_invariants()

    d = fresh()
    queue = d.broker._state.queues["q"]
    queue.messages.remove(7)  # still in the group's backlog
    with pytest.raises(InvariantError, match="unretained"):
        d.broker.check_invariants()

    d = fresh()
    queue = d.broker._state.queues["q"]
    queue.messages.add(40, record(40))  # retained, but in no group
    with pytest.raises(InvariantError, match="outside group"):
        d.broker.check_invariants()


def test_a_restored_full_chunk_is_adopted_and_behaves_like_one_built_message_by_message() -> None:
    """Restoring a long backlog hands whole chunks' columns to the index (no zeroed
    arrays, no copy); such a chunk must then change exactly as a built one."""
    built = MessageIndex()
    for sequence in range(1, 2 * CHUNK + 100):
        built.add(sequence, (sequence + 7, 10, 300, 256, 5, 1))
    restored = MessageIndex()
    for run in built.runs():
        restored.load_run(Run.from_bytes(run.first, len(run), run.to_bytes()))
    restored.check()
    assert restored.pin() == built.pin() == 8
    for index in (built, restored):
        index.remove(CHUNK)  # a hole in the first full chunk
        index.release(CHUNK + 5, keep=False)  # the second one's refs go to 0
        index.add_ref_to_all()
        index.remove(1)  # the lowest entry goes: the pin moves on
        index.check()
    assert restored.pin() == built.pin() == 9
    assert [(s, restored.get(s)) for s in restored.sequences()] == [
        (s, built.get(s)) for s in built.sequences()
    ]
