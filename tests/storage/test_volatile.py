"""The volatile file system makes SIGKILL lose unsynced writes, as a power cut would."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from herald.storage import OsFileSystem, WalLogStore
from herald.storage.volatile import VolatileFileSystem

from .scripts import load

REPO = Path(__file__).resolve().parents[2]


def test_the_process_sees_its_own_unsynced_writes(tmp_path: Path) -> None:
    fs = VolatileFileSystem()
    path = str(tmp_path / "f")
    handle = fs.create(path)
    handle.append(b"abc")
    assert fs.read(path) == b"abc"
    assert OsFileSystem().read(path) == b""  # not on disk yet
    handle.sync()
    assert OsFileSystem().read(path) == b"abc"
    handle.append(b"def")
    fs.truncate(path, 4)
    assert fs.read(path) == b"abcd"
    fs.rename(path, path + "2")
    assert fs.read(path + "2") == b"abcd"
    assert fs.unsynced_bytes == 1


def test_sigkill_loses_exactly_the_unsynced_entries(tmp_path: Path) -> None:
    directory = str(tmp_path / "data")
    writer = subprocess.Popen(
        [sys.executable, "-m", "tests.storage.volatile_writer", directory],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert writer.stdout is not None
    try:
        assert writer.stdout.readline().split() == ["synced", "50"]
        assert writer.stdout.readline().split() == ["unsynced", "100"]
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.communicate(timeout=10)
    state = load(WalLogStore(OsFileSystem(), directory))
    assert [entry.index for entry in state.entries] == list(range(1, 51))
