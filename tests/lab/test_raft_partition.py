"""The Raft partition scenario: fenced minority, live majority, catch-up; and a planted bug."""

from __future__ import annotations

from herald.lab.scenarios import raft_partition
from herald.raft import Raft


def test_the_timeline_is_as_predicted() -> None:
    result = raft_partition.run(7, 1)
    assert result.verdict.as_predicted, result.verdict.unexpected
    held = " | ".join(result.verdict.held)
    assert "fenced" in held and "caught up" in held
    (trial,) = result.figures["per_trial"]
    sides = {(row["phase"], row["side"]): row for row in trial["sides"]}
    assert sides[("partition A", "minority")]["acked"] == 0
    assert sides[("partition B", "minority")]["acked"] == 0
    assert sides[("partition A", "majority")]["acked"] > 0
    assert sides[("partition B", "majority")]["availability"] > 0.8


class CommitsWithoutAQuorum(Raft):
    """Planted bug: a leader counts only its own copy when it commits."""

    def _maybe_commit(self) -> bool:
        return self.log.maybe_commit(self.prs[self.id].match, self.term)


def test_planted_a_leader_that_commits_alone_is_not_fenced() -> None:
    result = raft_partition.run(0, 1, raft_class=CommitsWithoutAQuorum)
    assert not result.verdict.as_predicted
    assert any(line.startswith("minority not fenced") for line in result.verdict.unexpected)
