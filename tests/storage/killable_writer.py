"""A writer for the SIGKILL test: appends and syncs forever, printing each durable index.

Run as ``python -m tests.storage.killable_writer DIR SEED``. Every line it prints
is a promise: entries up to that index were fsynced. Entry ``i`` holds
``payload(i)``, so the test can check content, not only count.
"""

from __future__ import annotations

import random
import sys

from herald.raft import Entry, HardState
from herald.storage import OsFileSystem, WalLogStore
from tests.storage.scripts import load

ENTRY_SIZE = 256


def payload(index: int) -> bytes:
    return index.to_bytes(8, "little") * (ENTRY_SIZE // 8)


def main(directory: str, seed: int) -> None:
    rng = random.Random(seed)
    store = WalLogStore(OsFileSystem(), directory, segment_size=1 << 20)
    state = load(store)
    last = state.entries[-1].index if state.entries else 0
    store.write(HardState(1, 1, 0), [], None)
    out = sys.stdout
    while True:
        count = rng.randint(1, 64)
        batch = [Entry(1, index, payload(index)) for index in range(last + 1, last + 1 + count)]
        store.write(None, batch, None)
        store.sync()
        last = store.durable_index
        out.write(f"{last}\n")
        out.flush()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
