"""CRDTs: the semilattice laws of every merge, the naive counter's flaw, the scenario's verdict."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from herald.lab.crdt import CounterMessage, GCounter, LWWRegister, OpCounter, ORSet, PNCounter
from herald.lab.scenarios import crdt

REPLICAS = st.integers(min_value=1, max_value=3)


@st.composite
def g_counters(draw: st.DrawFn) -> GCounter:
    counter = GCounter()
    for replica, amount in draw(st.lists(st.tuples(REPLICAS, st.integers(1, 5)), max_size=6)):
        counter = counter.increment(replica, amount)
    return counter


@st.composite
def pn_counters(draw: st.DrawFn) -> PNCounter:
    return PNCounter(draw(g_counters()), draw(g_counters()))


@st.composite
def or_sets(draw: st.DrawFn) -> ORSet:
    value = ORSet()
    for element, replica, sequence, remove in draw(
        st.lists(st.tuples(st.sampled_from("abc"), REPLICAS, st.integers(1, 4), st.booleans()))
    ):
        value = value.remove(element) if remove else value.add(element, (replica, sequence))
    return value


@st.composite
def registers(draw: st.DrawFn) -> LWWRegister:
    return LWWRegister().assign(
        draw(st.sampled_from("xyz")), draw(st.integers(0, 5)), draw(REPLICAS)
    )


def check_laws(a: Any, b: Any, c: Any) -> None:
    assert a.merge(b) == b.merge(a)  # commutative: order of arrival does not matter
    assert a.merge(b).merge(c) == a.merge(b.merge(c))  # associative: grouping does not
    assert a.merge(a) == a  # idempotent: duplicates do not
    assert a.merge(b).merge(b) == a.merge(b)


LAWS = settings(max_examples=60, deadline=None)


@LAWS
@given(g_counters(), g_counters(), g_counters())
def test_g_counter_laws(a: GCounter, b: GCounter, c: GCounter) -> None:
    check_laws(a, b, c)


@LAWS
@given(pn_counters(), pn_counters(), pn_counters())
def test_pn_counter_laws(a: PNCounter, b: PNCounter, c: PNCounter) -> None:
    check_laws(a, b, c)


@LAWS
@given(or_sets(), or_sets(), or_sets())
def test_or_set_laws(a: ORSet, b: ORSet, c: ORSet) -> None:
    check_laws(a, b, c)


@LAWS
@given(registers(), registers(), registers())
def test_lww_register_laws(a: LWWRegister, b: LWWRegister, c: LWWRegister) -> None:
    check_laws(a, b, c)


def test_or_set_add_wins_over_a_concurrent_remove() -> None:
    here = ORSet().add("x", (1, 1))
    there = here.merge(ORSet())
    removed = here.remove("x")  # replica 1 removes the x it saw
    concurrent = there.add("x", (2, 1))  # replica 2 adds x again, not having seen the remove
    assert removed.merge(concurrent).value() == ("x",)
    assert removed.value() == ()


def test_the_naive_counter_counts_a_duplicate_twice() -> None:
    counter = OpCounter(2, (1, 2))
    message = CounterMessage(1, 2, "add", 1, 5)
    counter.step(message)
    counter.step(message)  # the network delivered it twice
    assert counter.value == 10


def test_the_naive_counter_retransmits_until_acknowledged() -> None:
    counter = OpCounter(1, (1, 2, 3), resend=2)
    counter.increment(4)
    assert len(counter.take_messages()) == 2
    counter.step(CounterMessage(2, 1, "ack", 1))
    counter.tick()
    counter.tick()
    assert [(m.dst, m.op) for m in counter.take_messages()] == [(3, 1)]


def test_the_scenario_is_as_predicted() -> None:
    result = crdt.run(1, 2)
    assert result.verdict.as_predicted, result.verdict.unexpected
    types = result.figures["types"]
    assert isinstance(types, dict)
    for name in ("G-Counter", "PN-Counter", "OR-Set", "LWW-Register"):
        assert types[name] == {**types[name], "converged": 2, "correct": 2}
    assert any(line.startswith("naive op-based counter: broken") for line in result.verdict.broke)


def test_the_scenario_is_deterministic() -> None:
    factories: tuple[Callable[[], crdt.CrdtKind[Any]], ...] = (crdt.ORSetKind,)
    assert crdt.run(4, 1, kinds=factories).summary() == crdt.run(4, 1, kinds=factories).summary()
