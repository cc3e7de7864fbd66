"""The real file system: OsFileSystem, the flock, real corruption, a writer killed by SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from herald.errors import CorruptLogError, LockedError, StorageIOError
from herald.raft import HardState
from herald.storage import OsFileSystem, WalLogStore
from herald.storage import format as fmt
from herald.storage.wal import scan_records

from .killable_writer import payload
from .scripts import entries, load

REPO = Path(__file__).resolve().parents[2]


def test_os_file_system_operations(tmp_path: Path) -> None:
    fs = OsFileSystem()
    directory = str(tmp_path / "d")
    fs.make_dirs(directory)
    handle = fs.create(f"{directory}/a.tmp")
    handle.append(b"hello ")
    handle.append(b"world")
    handle.sync()
    handle.close()
    fs.rename(f"{directory}/a.tmp", f"{directory}/a")
    fs.sync_dir(directory)
    assert fs.list_dir(directory) == ["a"]
    assert fs.read(f"{directory}/a") == b"hello world"
    appender = fs.open_append(f"{directory}/a")
    appender.append(b"!")
    appender.close()
    fs.truncate(f"{directory}/a", 5)
    assert fs.read(f"{directory}/a") == b"hello"
    fs.remove(f"{directory}/a")
    assert not fs.exists(f"{directory}/a")
    with pytest.raises(StorageIOError, match=r"(read|open) failed"):
        fs.read(f"{directory}/a")
    with pytest.raises(StorageIOError):
        fs.open_append(f"{directory}/missing")


def test_second_store_on_a_directory_is_locked_out(tmp_path: Path) -> None:
    fs = OsFileSystem()
    store = WalLogStore(fs, str(tmp_path))
    with pytest.raises(LockedError):
        WalLogStore(OsFileSystem(), str(tmp_path))
    code = (
        "import sys; from herald.storage import OsFileSystem, WalLogStore\n"
        "from herald.errors import LockedError\n"
        "try:\n    WalLogStore(OsFileSystem(), sys.argv[1])\n"
        "except LockedError:\n    sys.exit(3)\n"
    )
    other = subprocess.run([sys.executable, "-c", code, str(tmp_path)], check=False)
    assert other.returncode == 3
    store.close()
    WalLogStore(fs, str(tmp_path)).close()


def written_store(tmp_path: Path) -> tuple[str, str]:
    store = WalLogStore(OsFileSystem(), str(tmp_path))
    load(store)
    store.write(HardState(1, 1, 0), [], None)
    for first in range(1, 100, 10):
        store.write(None, entries(first, first + 9, 1), None)
        store.sync()
    store.close()
    segment = str(tmp_path / "wal-0000000001.log")
    return str(tmp_path), segment


def flip(path: str, offset: int) -> None:
    with open(path, "r+b") as file:
        file.seek(offset)
        byte = file.read(1)
        file.seek(offset)
        file.write(bytes([byte[0] ^ 0x20]))


def test_real_file_mid_log_corruption_is_refused(tmp_path: Path) -> None:
    directory, segment = written_store(tmp_path)
    offsets = [o for _t, o, _e in scan_records(Path(segment).read_bytes(), 32).records]
    flip(segment, offsets[3] + 50)
    with pytest.raises(CorruptLogError) as caught:
        load(WalLogStore(OsFileSystem(), directory))
    assert caught.value.path == segment and caught.value.offset == offsets[3]


def test_real_file_torn_tail_is_truncated(tmp_path: Path) -> None:
    directory, segment = written_store(tmp_path)
    offsets = [o for _t, o, _e in scan_records(Path(segment).read_bytes(), 32).records]
    os.truncate(segment, offsets[-1] + 100)
    state = load(WalLogStore(OsFileSystem(), directory))
    assert state.entries[-1].index == 90
    assert os.path.getsize(segment) == offsets[-1]
    assert scan_records(Path(segment).read_bytes(), fmt.SEGMENT_HEADER_SIZE).damage is None


def run_and_kill(directory: str, seed: int, after_lines: int) -> int:
    """Start the writer, SIGKILL it mid-stream; the highest index it reported durable."""
    writer = subprocess.Popen(
        [sys.executable, "-m", "tests.storage.killable_writer", directory, str(seed)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert writer.stdout is not None
    reported = 0
    deadline = time.monotonic() + 10
    try:
        for _ in range(after_lines):
            line = writer.stdout.readline()
            if not line:
                break
            reported = int(line)
            if time.monotonic() > deadline:
                break
    finally:
        writer.send_signal(signal.SIGKILL)
        rest, _ = writer.communicate(timeout=10)
    # Lines printed before the kill are promises too.
    for line in rest.split():
        reported = max(reported, int(line))
    assert writer.returncode == -signal.SIGKILL
    return reported


def test_sigkilled_writer_loses_nothing_it_reported_durable(tmp_path: Path) -> None:
    directory = str(tmp_path / "node")
    for round_number, lines in enumerate((150, 40, 300)):
        reported = run_and_kill(directory, seed=round_number, after_lines=lines)
        assert reported > 0, "the writer never reported progress"
        store = WalLogStore(OsFileSystem(), directory)
        state = load(store)
        store.close()
        assert state.entries, "nothing recovered"
        assert state.entries[-1].index >= reported
        for entry in state.entries:
            assert entry.data == payload(entry.index)
        assert [entry.index for entry in state.entries] == list(
            range(1, state.entries[-1].index + 1)
        )
