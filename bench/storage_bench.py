"""Benchmark of the write-ahead log on the real disk: group commit, the fsync limit, recovery.

Prints numbers; asserts nothing. Run::

    .venv/bin/python bench/storage_bench.py            # full: about a minute
    .venv/bin/python bench/storage_bench.py --quick    # a few seconds

What it measures, in a scratch directory under /tmp (removed afterwards):

1. The disk's physical limit: a tight loop of a 256-byte ``os.write`` and an
   ``fdatasync`` on one file (and the same with ``fsync``).
2. Appends through :class:`WalLogStore` of 256-byte entries, with 1, 10, 100
   and 1000 entries per ``sync`` (group commit): entries/s, MB/s, fsyncs/s.
3. Recovery (``load``) of a log of 1,000,000 entries (100,000 with --quick),
   written as 1000 entries per record and as one entry per record (the worst
   case), page cache warm; with a breakdown of where the time goes.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import shutil
import tempfile
import time

from herald.raft import Entry, HardState
from herald.storage import OsFileSystem, WalLogStore
from herald.storage import format as fmt
from herald.storage.wal import scan_records

ENTRY_SIZE = 256


def payload(index: int) -> bytes:
    return index.to_bytes(8, "little") * (ENTRY_SIZE // 8)


def raw_fsync_rate(directory: str, seconds: float, use_fsync: bool) -> float:
    path = os.path.join(directory, "raw")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    sync = os.fsync if use_fsync else os.fdatasync
    data = b"x" * ENTRY_SIZE
    count = 0
    started = time.perf_counter()
    try:
        while time.perf_counter() - started < seconds:
            os.write(fd, data)
            sync(fd)
            count += 1
    finally:
        os.close(fd)
        os.remove(path)
    return count / (time.perf_counter() - started)


def append_rate(directory: str, batch: int, seconds: float) -> tuple[float, float, float]:
    """(entries/s, MB/s of entry data, fsyncs/s) for ``batch`` entries per sync."""
    path = os.path.join(directory, f"append-{batch}")
    store = WalLogStore(OsFileSystem(), path)
    store.load()
    store.write(HardState(1, 1, 0), [], None)
    store.sync()
    index = 0
    syncs = 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        entries = [Entry(1, i, payload(i)) for i in range(index + 1, index + batch + 1)]
        store.write(None, entries, None)
        store.sync()
        index += batch
        syncs += 1
    elapsed = time.perf_counter() - started
    store.close()
    shutil.rmtree(path)
    return index / elapsed, index * ENTRY_SIZE / elapsed / 1e6, syncs / elapsed


def build_log(path: str, total: int, per_record: int) -> int:
    """Write ``total`` entries, ``per_record`` per write() and 1000 per sync; bytes on disk."""
    store = WalLogStore(OsFileSystem(), path)
    store.load()
    store.write(HardState(1, 1, 0), [], None)
    index = 0
    while index < total:
        for _ in range(max(1, 1000 // per_record)):
            entries = [Entry(1, i, payload(i)) for i in range(index + 1, index + per_record + 1)]
            store.write(None, entries, None)
            index += per_record
        store.sync()
    store.close()
    return sum(
        os.path.getsize(os.path.join(path, name))
        for name in os.listdir(path)
        if name.startswith("wal-")
    )


def recover(path: str) -> tuple[float, int]:
    started = time.perf_counter()
    store = WalLogStore(OsFileSystem(), path)
    state = store.load()
    elapsed = time.perf_counter() - started
    store.close()
    return elapsed, len(state.entries)


def breakdown(path: str) -> str:
    """Time the phases of recovery separately: read, scan + checksum, decode."""
    names = sorted(n for n in os.listdir(path) if n.startswith("wal-"))
    started = time.perf_counter()
    datas = []
    for name in names:
        with open(os.path.join(path, name), "rb") as file:
            datas.append(file.read())
    read = time.perf_counter() - started
    started = time.perf_counter()
    scans = [scan_records(data, fmt.SEGMENT_HEADER_SIZE) for data in datas]
    scan = time.perf_counter() - started
    started = time.perf_counter()
    count = 0
    for data, result in zip(datas, scans, strict=True):
        for record_type, offset, end in result.records:
            if record_type == fmt.ENTRIES:
                count += len(fmt.decode_entries(data, offset + 8, end))
    decode = time.perf_counter() - started
    return f"read {read:.2f} s, scan+crc {scan:.2f} s, decode into Entry objects {decode:.2f} s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short runs, 100k-entry recovery")
    parser.add_argument("--dir", default="/tmp", help="where to make the scratch directory")
    parser.add_argument("--profile", action="store_true", help="cProfile the 1M recovery")
    args = parser.parse_args()
    seconds = 0.5 if args.quick else 3.0
    total = 100_000 if args.quick else 1_000_000
    root = tempfile.mkdtemp(prefix="herald-storage-bench-", dir=args.dir)
    try:
        stat = os.statvfs(root)
        print(f"scratch directory {root} (block size {stat.f_bsize})")
        print("\n== the disk's limit: write 256 B + sync, one file, tight loop")
        for use_fsync in (False, True):
            rate = raw_fsync_rate(root, seconds, use_fsync)
            label = "fsync    " if use_fsync else "fdatasync"
            print(f"  {label} {rate:10,.0f} syncs/s")

        print("\n== WalLogStore appends, 256-byte entries, one sync per batch (group commit)")
        print(f"  {'batch':>6} {'entries/s':>12} {'MB/s':>8} {'syncs/s':>9}")
        for batch in (1, 10, 100, 1000):
            entries_per_s, mb_per_s, syncs_per_s = append_rate(root, batch, seconds)
            print(f"  {batch:>6} {entries_per_s:>12,.0f} {mb_per_s:>8.1f} {syncs_per_s:>9,.0f}")

        print(f"\n== recovery (load) of {total:,} entries, page cache warm")
        for per_record in (1000, 1):
            path = os.path.join(root, f"recover-{per_record}")
            started = time.perf_counter()
            size = build_log(path, total, per_record)
            built = time.perf_counter() - started
            elapsed, count = recover(path)
            assert count == total, (count, total)
            print(
                f"  {per_record:>4} entries/record: {elapsed:.2f} s "
                f"({count / elapsed:,.0f} entries/s, {size / 1e6:,.0f} MB of log; "
                f"built in {built:.1f} s)"
            )
            print(f"       where the time goes: {breakdown(path)}")
            if args.profile:
                profiler = cProfile.Profile()
                profiler.runcall(recover, path)
                pstats.Stats(profiler).sort_stats("cumulative").print_stats(12)
            shutil.rmtree(path)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
