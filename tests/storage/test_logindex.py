"""LogIndex against a plain list of (index, term, record) that does the same in the obvious way."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from herald.storage.logindex import LogIndex


class ListModel:
    """The log as a list: entry i is (term, record id); a record id names its place."""

    def __init__(self) -> None:
        self.base = 0
        self.base_term = 0
        self.entries: list[tuple[int, int]] = []

    @property
    def last(self) -> int:
        return self.base + len(self.entries)

    def add(self, record: int, first: int, terms: list[int]) -> None:
        if first <= self.base:
            terms = terms[self.base + 1 - first :]
            first = self.base + 1
            self.entries = []
        else:
            del self.entries[first - self.base - 1 :]
        self.entries.extend((term, record) for term in terms)

    def truncate(self, after: int) -> None:
        del self.entries[max(0, after - self.base) :]

    def compact(self, through: int) -> None:
        if through <= self.base:
            return
        self.base_term = self.entries[through - self.base - 1][0]
        self.entries = self.entries[through - self.base :]
        self.base = through

    def reset(self, base: int, term: int) -> None:
        self.base, self.base_term, self.entries = base, term, []


def check(index: LogIndex, model: ListModel, records: dict[int, tuple[int, int]]) -> None:
    assert (index.base, index.last, len(index)) == (model.base, model.last, len(model.entries))
    assert index.term(model.base) == model.base_term
    for offset, (term, record) in enumerate(model.entries):
        at = model.base + 1 + offset
        assert index.term(at) == term
        place = index.place(at)
        assert (place.segment, place.offset) == (record, record * 10)
        assert place.first == records[record][0]
        assert place.lo <= at <= place.hi
    for outside in (model.base - 1, model.last + 1):
        if outside > model.base:
            with pytest.raises(IndexError):
                index.place(outside)


operations = st.lists(
    st.one_of(
        st.tuples(
            st.just("add"),
            st.integers(-4, 0),
            st.lists(st.integers(1, 4), min_size=1, max_size=6),
        ),
        st.tuples(st.just("truncate"), st.integers(0, 12), st.just([])),
        st.tuples(st.just("compact"), st.integers(0, 12), st.just([])),
        st.tuples(st.just("reset"), st.integers(0, 4), st.just([])),
    ),
    max_size=40,
)


@settings(max_examples=300)
@given(operations)
def test_the_index_agrees_with_a_list(ops: list[tuple[str, int, list[int]]]) -> None:
    index = LogIndex()
    model = ListModel()
    records: dict[int, tuple[int, int]] = {}
    for number, (op, value, terms) in enumerate(ops, start=1):
        if op == "add":
            # value: where the record starts relative to the end of the log.
            first = max(1, model.last + 1 + value)
            records[number] = (first, len(terms))
            index.add(number, number * 10, number * 10 + 5, first, terms, len(terms))
            model.add(number, first, terms)
        elif op == "truncate":
            index.truncate(model.base + value)
            model.truncate(model.base + value)
        elif op == "compact":
            through = min(model.last, model.base + value)
            index.compact(through)
            model.compact(through)
        else:
            base = model.last + value
            index.reset(base, 7)
            model.reset(base, 7)
        check(index, model, records)


def test_a_record_after_a_gap_is_refused() -> None:
    index = LogIndex()
    index.add(1, 0, 10, 1, [1, 1], 2)
    with pytest.raises(ValueError, match="jump"):
        index.add(2, 20, 30, 4, [1], 1)
    with pytest.raises(ValueError, match="follow"):
        index.append_one(2, 20, 30, 4, 1)
    with pytest.raises(ValueError, match="compact"):
        index.compact(3)


def test_a_record_reaching_below_the_base_keeps_only_what_lies_above_it() -> None:
    index = LogIndex(base=10, base_term=2)
    index.add(1, 0, 100, 8, [2, 2, 2, 3, 3], 5)  # entries 8..12
    assert (index.base, index.last) == (10, 12)
    place = index.place(11)
    assert (place.first, place.lo, place.hi) == (8, 11, 12)
    assert [index.term(i) for i in (10, 11, 12)] == [2, 3, 3]


def test_a_million_entries_cost_eight_bytes_each() -> None:
    index = LogIndex()
    index.add(1, 0, 10, 1, [1] * 1_000_000, 1_000_000)
    assert index.records == 1
    assert index._terms.itemsize * len(index._terms) == 8_000_000
