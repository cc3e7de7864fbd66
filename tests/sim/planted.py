"""Deliberately broken variants of the core and the disk, for showing that checkers fail.

Each class plants one bug a real implementation could have. Tests run the
simulator with them and require a violation within a bounded number of seeds.
"""

from __future__ import annotations

from herald.raft import NONE, HardState, Raft
from herald.raft.quorum import committed_index
from herald.storage import SimFileSystem


class CommitsOlderTermsByCounting(Raft):
    """The Raft paper's Figure 8 bug: count replicas of entries of any term.

    The leader's no-op entry (section 8) masks this bug almost entirely, because
    every append of a new term carries it; real implementations that skip the
    no-op and count older entries are the ones Figure 8 warns about, so both
    mistakes are planted together.
    """

    def _maybe_commit(self) -> bool:
        index = committed_index([self.prs[node].match for node in self.voters])
        if index > self.log.committed:
            self.log.commit_to(index)
            return True
        return False

    def become_leader(self) -> None:
        super().become_leader()
        self.log.unstable.entries.pop()  # no no-op entry


class ForgetsVote(Raft):
    """Never persists the vote: after a restart it can vote twice in one term."""

    def hard_state(self) -> HardState:
        return HardState(self.term, NONE, self.log.committed)


class ReadsWithoutQuorum(Raft):
    """Answers read-index requests from its own commit index without a heartbeat round."""

    def _handle_read_index(self, context: bytes, origin: int) -> None:
        self._answer_read(context, origin, self.log.committed)


class NeverCampaigns(Raft):
    """Election timers fire but nobody ever stands for election."""

    def campaign(self, pre_vote: bool, transfer: bool = False) -> None:
        return


class LyingDisk(SimFileSystem):
    """A disk whose file fsync returns before anything is durable (a write cache
    that acknowledges and never flushes): a power loss keeps only what luck does."""

    def _fsync(self, path: str, number: int) -> None:
        self._tick()
