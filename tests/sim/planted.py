"""Deliberately broken variants of the core and the disk, for showing that checkers fail.

Each class plants one bug a real implementation could have. Tests run the
simulator with them and require a violation within a bounded number of seeds.
"""

from __future__ import annotations

from herald.client._producer import PublishCall, QueueProducer
from herald.client.core import ClientCore, CoreDelivery
from herald.errors import (
    BrokerError,
    HeraldError,
    ProducerSequenceGapError,
    ProducerSequenceStaleError,
    ProposalLostError,
)
from herald.node.clock import Instant
from herald.node.convert import error_info
from herald.node.host import NodeHost
from herald.node.server import ServerCore
from herald.raft import NONE, HardState, Raft
from herald.raft.quorum import committed_index
from herald.storage import SimFileSystem
from herald.wire.protocol import ErrorInfo


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


# -- the request path (the queue workload) ------------------------------------------------


class StampsItsOwnClock(ServerCore):
    """Stamps commands with the leader's own wall clock, as the server once did: one
    clock stepped forward ages every lease, idempotency key and producer at once."""

    def _stamp(self, now: Instant) -> int:
        return now.wall


class StampsBeforeItKnowsTheTime(ServerCore):
    """Stamps a log that has no time yet with (near) the epoch instead of turning
    writes away until a majority's clocks are heard, as the server once did: the
    first real stamp then jumps decades and expires every producer and lease the
    first commands started (the CI failure of tests/client/test_e2e.py)."""

    def _stamp(self, now: Instant) -> int:
        return self._clock.stamp(now, self.broker.now) if self.broker.now else 1


class AnswersLostWhenUnknown(ServerCore):
    """Answers ProposalLostError ("surely not applied") for a proposal its own later
    proposal replaced, although another node may still commit the older entry: the
    client then resends what it must not repeat (a delete, a purge)."""

    def _replaced_answer(self) -> ErrorInfo:
        return error_info(ProposalLostError("another leader's entry replaced this command's entry"))


class DropsTheMarkerEarly(NodeHost):
    """Removes the recovering marker once the core's log (unstable entries included)
    holds an entry of a later term, before those entries are durable."""

    def _caught_up(self) -> bool:
        return not self.node.raft.recovering()


def inbox_key_without_incarnation(delivery: CoreDelivery) -> str:
    """The Inbox's old key: a recreated queue's new messages match the old records."""
    if delivery.message_id:
        return f"{delivery.queue}/{delivery.message_id}"
    return f"{delivery.queue}#{delivery.sequence}"


class RenumbersBehindARefusal(QueueProducer):
    """The client's old answer to a refusal in a pipeline: the refused number was free
    again, so the publishes sent after it were renumbered from it and sent again.
    With the broker recording every number's outcome, a renumbered publish gets
    another's outcome: m4 confirmed with m3's receipt, and never stored."""

    def refused(self, call: PublishCall, error: HeraldError) -> None:
        self.inflight.pop(call.id, None)
        call.fail(error)
        renumber = isinstance(error, BrokerError) and not isinstance(
            error, (ProducerSequenceGapError, ProducerSequenceStaleError)
        )
        if renumber and call.generation == self.generation:
            later = sorted(
                (
                    c
                    for c in self.inflight.values()
                    if c.generation == call.generation and c.seq > call.seq
                ),
                key=lambda c: c.seq,
            )
            for c in later:
                del self.inflight[c.id]
                self.core.forget(c)
            self.next_seq = call.seq
            for c in later:
                if not c.done:
                    c.forgotten = False  # the old client forgot the id, not the call
                    self.send(c)
        self.pump()


class RenumberingClient(ClientCore):
    producer_class = RenumbersBehindARefusal
