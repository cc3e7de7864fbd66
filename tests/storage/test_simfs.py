"""The simulated disk keeps the promises and does the damage its fault-model contract states."""

from __future__ import annotations

import random

import pytest

from herald.errors import LockedError, StorageIOError
from herald.storage import DiskFaults, SimFileSystem, SimulatedCrash

D = "/d"


def disk(seed: int = 1, **faults: object) -> SimFileSystem:
    fs = SimFileSystem(random.Random(seed), DiskFaults(**faults))  # type: ignore[arg-type]
    fs.make_dirs(D)
    return fs


def durable_file(fs: SimFileSystem, name: str, data: bytes) -> None:
    handle = fs.create(f"{D}/{name}")
    handle.append(data)
    handle.sync()
    fs.sync_dir(D)


def test_reads_see_unsynced_data_and_a_crash_loses_it() -> None:
    fs = disk()
    durable_file(fs, "a", b"synced")
    handle = fs.open_append(f"{D}/a")
    handle.append(b"+unsynced")
    assert fs.read(f"{D}/a") == b"synced+unsynced"
    fs.crash(lose_all=True)
    assert fs.read(f"{D}/a") == b"synced"


def test_synced_data_and_synced_directory_entries_survive_any_crash() -> None:
    for seed in range(50):
        fs = disk(seed, misorder=0.5)
        durable_file(fs, "a", b"x" * 100)
        fs.open_append(f"{D}/a").append(b"y" * 100)
        fs.create(f"{D}/b").append(b"z")
        fs.crash()
        assert fs.read(f"{D}/a")[:100] == b"x" * 100


def test_creation_is_durable_only_after_the_directory_sync() -> None:
    fs = disk()
    handle = fs.create(f"{D}/a")
    handle.append(b"data")
    handle.sync()  # the data, not the name
    fs.crash(lose_all=True)
    assert not fs.exists(f"{D}/a")


def test_rename_is_durable_only_after_the_directory_sync() -> None:
    fs = disk()
    durable_file(fs, "old", b"1")
    durable_file(fs, "new.tmp", b"2")
    fs.rename(f"{D}/new.tmp", f"{D}/old")
    assert fs.read(f"{D}/old") == b"2"
    fs.crash(lose_all=True)
    assert fs.read(f"{D}/old") == b"1"
    fs.rename(f"{D}/new.tmp", f"{D}/old")
    fs.sync_dir(D)
    fs.crash(lose_all=True)
    assert fs.read(f"{D}/old") == b"2" and not fs.exists(f"{D}/new.tmp")


def test_a_crash_keeps_a_prefix_of_unsynced_appends_torn_at_any_byte() -> None:
    outcomes = set()
    for seed in range(200):
        fs = disk(seed)
        durable_file(fs, "a", b"")
        handle = fs.open_append(f"{D}/a")
        for chunk in (b"aaaa", b"bbbb", b"cccc"):
            handle.append(chunk)
        fs.crash()
        data = fs.read(f"{D}/a")
        assert (b"aaaabbbbcccc").startswith(data)
        outcomes.add(len(data))
    assert outcomes == set(range(13))  # every cut, torn at every byte


def test_in_order_crash_never_keeps_a_later_change_without_an_earlier_one() -> None:
    for seed in range(100):
        fs = disk(seed, torn_writes=False)
        durable_file(fs, "a", b"")
        durable_file(fs, "b", b"")
        fs.open_append(f"{D}/a").append(b"first")
        fs.open_append(f"{D}/b").append(b"second")
        fs.crash()
        assert not (fs.read(f"{D}/b") and not fs.read(f"{D}/a"))


def test_misordered_crash_can_keep_a_later_write_and_lose_an_earlier_one() -> None:
    seen = False
    for seed in range(100):
        fs = disk(seed, torn_writes=False, misorder=1.0)
        durable_file(fs, "a", b"")
        durable_file(fs, "b", b"")
        fs.open_append(f"{D}/a").append(b"first")
        fs.open_append(f"{D}/b").append(b"second")
        fs.crash()
        seen |= fs.read(f"{D}/b") == b"second" and fs.read(f"{D}/a") == b""
    assert seen


def test_misordered_crash_can_lose_a_rename_but_keep_later_data() -> None:
    seen = False
    for seed in range(100):
        fs = disk(seed, torn_writes=False, misorder=1.0)
        durable_file(fs, "log", b"")
        durable_file(fs, "x.tmp", b"new")
        fs.rename(f"{D}/x.tmp", f"{D}/x")
        fs.open_append(f"{D}/log").append(b"later")
        fs.crash()
        seen |= not fs.exists(f"{D}/x") and fs.read(f"{D}/log") == b"later"
    assert seen


def test_lost_write_reads_back_until_a_crash_then_zeros() -> None:
    fs = disk(lost_write=1.0)
    durable_file(fs, "a", b"")  # the first append (empty) is "lost" too: harmless
    handle = fs.open_append(f"{D}/a")
    handle.append(b"data")
    handle.sync()
    assert fs.read(f"{D}/a") == b"data"
    fs.crash()
    assert fs.read(f"{D}/a") == b"\0\0\0\0"
    assert fs.injected["lost_write"] >= 1


def test_bit_flip_reaches_the_media() -> None:
    fs = disk(bit_flip=1.0)
    durable_file(fs, "a", b"\0" * 64)
    fs.crash()
    data = fs.read(f"{D}/a")
    assert sum(bin(byte).count("1") for byte in data) == 1


def test_read_error() -> None:
    fs = disk(read_error=1.0)
    durable_file(fs, "a", b"x")
    with pytest.raises(StorageIOError, match="read"):
        fs.read(f"{D}/a")


def test_failed_fsync_drops_the_data_but_the_cache_still_shows_it() -> None:
    fs = disk(fsync_error=1.0)
    handle = fs.create(f"{D}/a")
    fs.sync_dir(D)
    handle.append(b"data")
    with pytest.raises(StorageIOError, match="fsync"):
        handle.sync()
    assert fs.read(f"{D}/a") == b"data"
    fs.crash()
    assert fs.read(f"{D}/a") == b""


def test_lock_is_exclusive_and_dies_with_the_process() -> None:
    fs = disk()
    lock = fs.lock(D)
    with pytest.raises(LockedError):
        fs.lock(D)
    lock.release()
    fs.lock(D)
    fs.kill()
    fs.lock(D)
    fs.crash()
    fs.lock(D)


def test_handles_go_stale_after_a_crash() -> None:
    fs = disk()
    durable_file(fs, "a", b"")
    handle = fs.open_append(f"{D}/a")
    fs.crash()
    with pytest.raises(StorageIOError, match="outlived a crash"):
        handle.append(b"x")


def test_armed_crash_strikes_before_the_chosen_operation() -> None:
    fs = disk()
    handle = fs.create(f"{D}/a")
    fs.arm_crash(2)
    handle.append(b"1")
    with pytest.raises(SimulatedCrash):
        handle.append(b"2")
    assert fs.read(f"{D}/a") == b"1"


def test_missing_files_are_typed_errors() -> None:
    fs = disk()
    for call in (
        lambda: fs.read(f"{D}/nope"),
        lambda: fs.open_append(f"{D}/nope"),
        lambda: fs.remove(f"{D}/nope"),
        lambda: fs.rename(f"{D}/nope", f"{D}/x"),
        lambda: fs.list_dir("/nowhere"),
        lambda: fs.create("/nowhere/x"),
    ):
        with pytest.raises(StorageIOError):
            call()


def run_workload(seed: int) -> tuple[dict[str, bytes], dict[str, int]]:
    fs = disk(seed, misorder=0.5, lost_write=0.2, bit_flip=0.2)
    rng = random.Random(seed)
    for step in range(40):
        name = f"f{rng.randrange(4)}"
        path = f"{D}/{name}"
        if not fs.exists(path):
            fs.create(path)
        handle = fs.open_append(path)
        handle.append(bytes([step]) * rng.randrange(1, 30))
        if rng.random() < 0.3:
            handle.sync()
        if rng.random() < 0.2:
            fs.sync_dir(D)
        if rng.random() < 0.1:
            fs.crash()
    fs.crash()
    return {name: fs.read(f"{D}/{name}") for name in fs.list_dir(D)}, dict(fs.injected)


def test_deterministic_given_the_seed() -> None:
    assert run_workload(5) == run_workload(5)
    assert run_workload(5) != run_workload(6)


def test_drawn_faults_are_deterministic_and_can_exclude_media_faults() -> None:
    assert DiskFaults.draw(random.Random(3)) == DiskFaults.draw(random.Random(3))
    calm = DiskFaults.draw(random.Random(3), media_faults=False)
    assert calm.lost_write == calm.bit_flip == calm.read_error == calm.fsync_error == 0.0
