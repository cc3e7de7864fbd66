"""The placement rule clients and servers share must not drift: a queue placed in
another group than the one holding it would look empty."""

from __future__ import annotations

import zlib
from collections import Counter

import pytest

from herald.wire.placement import group_of


def test_one_group_holds_everything() -> None:
    assert {group_of(name, 1) for name in ("", "q", "orders", "é")} == {0}


def test_the_rule_is_crc32_of_the_utf8_name_and_never_changes() -> None:
    # Pinned values: a change of rule must fail here, not in a user's cluster.
    names = ("orders", "payments", "q", "é")
    assert [group_of(name, 4) for name in names] == [2, 2, 3, 2]
    assert [group_of(name, 7) for name in names] == [5, 1, 0, 4]
    for name in (*names, "x" * 255):
        for groups in (2, 3, 4, 7, 64):
            assert group_of(name, groups) == zlib.crc32(name.encode()) % groups


@pytest.mark.parametrize("groups", [2, 4, 8])
def test_queues_spread_over_the_groups(groups: int) -> None:
    counts = Counter(group_of(f"queue-{n}", groups) for n in range(4000))
    assert set(counts) == set(range(groups))
    expected = 4000 / groups
    assert all(0.8 * expected <= c <= 1.2 * expected for c in counts.values()), counts


def test_a_name_that_is_not_valid_utf8_still_has_a_group() -> None:
    assert 0 <= group_of("\udcff", 4) < 4
