"""Seeds that found bugs, each with a one-line note of what it caught.

A seed here replays the world it was found in only while the option draw and
event order stay the same; after such changes it still runs a hard world and
guards the fix. Bugs found under an earlier draw are pinned down by a unit
test named in the note instead.
"""

from __future__ import annotations

#: (seed, fault kinds or None for all, note) -- the Raft workload.
CORPUS: list[tuple[int, tuple[str, ...] | None, str]] = [
    (
        769,
        None,
        "storage: a bit flip in the length field of the last synced record made it run "
        "past the end of the file, which recovery took for a torn write and cut; the "
        "node had acknowledged that entry, and a leader's heartbeat then committed past "
        "its log. A record that is whole but for its length is now suspicious (the node "
        "recovers before it votes); see tests/storage/test_recovering_marker.py",
    ),
    (
        72,
        None,
        "storage: a repair cut the log back below a checkpoint; recovery did not restore "
        "that checkpoint but kept it, and the next promotion made it where the log "
        "starts, beyond the log's end (also 193). Recovery now keeps only checkpoints it "
        "read whole within the log; see tests/storage/test_checkpoints.py",
    ),
    (
        216,
        None,
        "liveness: clock-rate faults outlived healing, so stale nodes with 2x clocks and "
        "no pre-vote won every election timer race and no leader could be elected; "
        "the liveness phase now restores every node's own clock rate",
    ),
    (
        58,
        None,
        "checker: leader completeness was judged by the term that created an entry, "
        "not the term in which a leader counted it committed (a stale term-2 leader "
        "legitimately lacked a term-1 entry committed in term 3); see "
        "tests/sim/test_invariants.py::test_leader_of_an_older_term_need_not_hold_later_commits",
    ),
    (
        229,
        None,
        "host: a node restarting with a durable snapshot at 50 and an unsynced "
        "commit-only hard state of 49 refused to start; see "
        "tests/node/test_host.py::test_restart_with_commit_behind_snapshot",
    ),
    (
        262,
        ("crash", "clock"),
        "host: same restart failure as 229 with a snapshot at 100",
    ),
    (
        137,
        None,
        "storage: bit rot in the recovering marker raised after recovery had opened "
        "the log, so the store kept the directory locked and the restart failed",
    ),
    (
        563,
        None,
        "storage: an fsync error while load() created the first segment left the "
        "directory locked; load now closes the store on any failure",
    ),
    (
        1429,
        None,
        "storage: repair discarded a suffix holding the record that had overwritten "
        "entry 15, so the old term-8 entry came back, and the hard state file's commit "
        "index covered it: the node applied an uncommitted entry. Recovery now takes "
        "the commit index from the log stream only",
    ),
    (
        1195,
        None,
        "storage: repair cut the log, then failed (fsync error) writing the recovering "
        "marker; the retry saw a clean, shorter log and the node voted and applied with "
        "acknowledged entries missing (commit 390 past its last index 187). The marker "
        "is now durable before any cut",
    ),
]

#: (seed, note) -- the queue workload (`herald sim --workload queue`).
QUEUE_CORPUS: list[tuple[int, str]] = [
    (
        184,
        "workload: producers started before every consumer group existed, so the first "
        "message went only to the group that did (settled, then dropped); the checker "
        "rightly reported it lost in the others. Setup now subscribes every group first. "
        "Run on the real client core (max_uncommitted_bytes=1024), it found the client's "
        "overload livelock: it closed the connection at the first OverloadedError, lost "
        "the answers of the writes accepted before it, and resent them for ever; it now "
        "sends nothing more there and closes once what was sent is answered",
    ),
    (
        40,
        "world: a node crashed inside propose (an armed before-fsync crash) and completed "
        "the operation as unknown before the client had attached its callback, so setup "
        "waited forever (liveness). The callback is now attached before the proposal runs",
    ),
    (
        4,
        "workload (first runs on the real client core): a consumer whose fetch failed with "
        "an error other than a lost queue or group stopped taking deliveries, one of them "
        "buffered, so the queue never drained (liveness; seeds 7 and 18 too). Taking goes "
        "on after any error now, which is what lets the core fetch again",
    ),
    (
        26,
        "nemesis: wall-clock steps accumulated until three of four clocks were hours "
        "ahead; the log's clock rightly follows a majority, so keys and producers "
        "expired at once and a producer's resends were stored twice (copies). The fault "
        "model now steps a minority at a time and puts each clock right again",
    ),
    (
        373,
        "clock: with a node down, the leader's only other reading was a clock four hours "
        "slow, so the log's time started four hours behind; when that clock was put "
        "right, time jumped four hours at once and aged every producer stamped "
        "meanwhile: a resend was stored twice. The log's time now catches up at no more "
        "than 1.1 times real time (herald.node.clock); see "
        "tests/node/test_clock.py::test_a_clock_put_right_is_caught_up_with_slowly",
    ),
    (
        1474,
        "clock: the same jump after a clock was put right, seen as a queue that never "
        "drained (liveness)",
    ),
    (
        2093,
        "storage: a write that rolled over to a new WAL segment started it with the "
        "commit index of the very records it was about to append there; a repair that "
        "cut the new segment right after its start found that commit index with only "
        "the old, uncommitted entries left, and the node applied an entry committed "
        "differently elsewhere (state machine safety). A segment now starts with the "
        "stream's commit index so far; see tests/storage/test_corruption.py::"
        "test_a_new_segment_never_starts_with_a_commit_index_its_entries_bring",
    ),
    (
        3718,
        "checker: the new recovery check missed that a leader's snapshot of a later term "
        "ends a node's recovery as durably as an entry does",
    ),
    (
        3751,
        "workload: a consumer restart scheduled by an earlier incarnation fired after a "
        "crash had started a new one, so two consumers ran in one process; the one "
        "nobody took from held its leases and auto-extended them for ever (liveness). "
        "Scheduled joins and restarts now name the incarnation they are for",
    ),
    (
        50,
        "world: once the log was read back from its segments, a running node found the "
        "nemesis's bit rot at rest and raised CorruptLogError, which the world took for "
        "a crash of the simulator itself; a node that finds damage while running now "
        "dies and recovers (where recovery refuses and the operator repairs), as the "
        "real runtime does",
    ),
    (
        1128,
        "workload: the drain took the relay for idle between two of its rounds, found "
        "every queue empty and ended the run; the relay's next message was taken in "
        "hand after the end and reported lost ('delivered, never processed'). Only a "
        "relay with nothing left to publish is idle now. Surfaced when an idle node "
        "began to sync for its checkpoint, which moved every schedule",
    ),
    (
        1925,
        "workload: at-most-once fetches whose answers were lost with their connection "
        "(three data groups, leaders moving) settled four messages nobody received; the "
        "consumer core dropped such fetches silently, as the mode allows, but the "
        "history had no unknown delivery for them, so the checker blamed at-least-once. "
        "The core now counts lost fetches (ConsumerCore.lost_fetches) and the workload "
        "records each as an unknown at-most-once delivery",
    ),
    (
        3,
        "workload: faults held the setup back (no quorum for most of the safety phase), "
        "the users began after the phase had ended and the run passed having published "
        "nothing; the faults now go on until the users have worked two seconds",
    ),
]
