"""The client's group routing: a core per data group, made once a greeting names the count."""

from __future__ import annotations

import random

import pytest

from herald.client.core import ClientCore
from herald.client.routing import GroupRouter
from herald.wire import protocol as w
from herald.wire.frames import encode_frame
from herald.wire.placement import group_of
from herald.wire.protocol import PROTOCOL_VERSION


def _core(group: int = 0) -> ClientCore:
    return ClientCore(
        ["a:1"],
        name="c",
        producer_id="c/1",
        timeout=1_000_000,
        rng=random.Random(group),
        group=group,
    )


def _greet(core: ClientCore, groups: int) -> None:
    """What a Welcome tells the core (the handshake's one fact the router reads)."""
    core.connect(0)
    core.take_actions()
    core.connected(0)
    core.take_actions()
    leaders = [(1, "a:1")] * groups
    welcome = w.Welcome(PROTOCOL_VERSION, 1, 1, "a:1", 100, 1 << 20, groups, leaders)
    core.received(encode_frame(welcome), 0)


def test_before_a_greeting_every_queue_goes_to_group_zero() -> None:
    router = GroupRouter(_core(), _core)
    assert not router.known
    assert router.grow() == []
    assert all(router.index_for(q) == 0 for q in ("a", "b", "q", "r"))


def test_a_greeting_of_three_groups_makes_two_more_cores_once() -> None:
    first = _core()
    router = GroupRouter(first, _core)
    _greet(first, 3)
    assert router.known
    new = router.grow()
    assert [core.group for core in new] == [1, 2]
    assert router.grow() == []  # made once
    for queue in ("q", "r", "orders", "x" * 200, "ünï"):
        assert router.core_for(queue) is router.cores[group_of(queue, 3)]


def test_a_cluster_of_one_group_needs_no_more_cores() -> None:
    first = _core()
    router = GroupRouter(first, _core)
    _greet(first, 1)
    assert router.known and router.grow() == []
    assert router.core_for("anything") is first


def test_a_closed_client_makes_no_cores() -> None:
    first = _core()
    router = GroupRouter(first, _core)
    _greet(first, 4)
    first.close(0)
    assert router.grow() == []


def test_a_core_of_the_wrong_group_is_refused() -> None:
    first = _core()
    router = GroupRouter(first, lambda group: _core(0))
    _greet(first, 2)
    with pytest.raises(ValueError, match="group 0"):
        router.grow()
