"""A writer for the power-loss test: syncs some entries, then writes more without syncing.

Run as ``python -m tests.storage.volatile_writer DIR``. It prints ``synced N``
once entries up to N are durable, then appends entries N+1.. without syncing,
prints ``unsynced M`` and waits to be killed.
"""

from __future__ import annotations

import sys
import time

from herald.raft import Entry, HardState
from herald.storage import WalLogStore
from herald.storage.volatile import VolatileFileSystem


def main(directory: str) -> None:
    store = WalLogStore(VolatileFileSystem(), directory, segment_size=1 << 20)
    store.load()
    store.write(HardState(1, 1, 0), [Entry(1, i, b"s%d" % i) for i in range(1, 51)], None)
    store.sync()
    print(f"synced {store.durable_index}", flush=True)
    store.write(None, [Entry(1, i, b"u%d" % i) for i in range(51, 101)], None)
    # Force the buffered records into the "file" (the volatile page cache) too.
    store._flush()
    print("unsynced 100", flush=True)
    time.sleep(60)


if __name__ == "__main__":
    main(sys.argv[1])
