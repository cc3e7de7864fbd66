"""Majority arithmetic: the commit index a quorum has reached, and vote outcomes."""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence

__all__ = ["VoteResult", "committed_index", "quorum_size", "vote_result"]


class VoteResult(enum.Enum):
    PENDING = 0
    WON = 1
    LOST = 2


def quorum_size(voters: int) -> int:
    """The smallest majority of ``voters`` nodes."""
    return voters // 2 + 1


def committed_index(matches: Sequence[int]) -> int:
    """The largest index stored on a majority, given every voter's match index."""
    ordered = sorted(matches, reverse=True)
    return ordered[quorum_size(len(ordered)) - 1]


def vote_result(voters: Sequence[int], votes: Mapping[int, bool]) -> VoteResult:
    """WON once a majority granted, LOST once a majority can no longer grant."""
    granted = rejected = 0
    for voter in voters:
        vote = votes.get(voter)
        if vote is True:
            granted += 1
        elif vote is False:
            rejected += 1
    need = quorum_size(len(voters))
    if granted >= need:
        return VoteResult.WON
    if len(voters) - rejected < need:
        return VoteResult.LOST
    return VoteResult.PENDING
