"""The C allocator's tuning for a node process (glibc only; elsewhere nothing).

Why a node fixes glibc's mmap threshold
---------------------------------------

glibc serves an allocation above its *mmap threshold* (128 KiB at start) with
its own ``mmap``, returned to the system when freed. But the threshold is
dynamic: freeing such a block raises it to that block's size, up to 32 MiB.
A node makes a few large, short-lived buffers -- a checkpoint of the broker's
index is 32 MiB at a million retained messages, and a batch entry or a read
of a segment range can be megabytes -- so after the first checkpoint every
buffer below 32 MiB comes from the heap instead, and the holes they leave
between long-lived objects are never given back. Measured with one node
holding 1M retained 256-byte messages (the node process's RSS
before and after the publishes, divided by 1M): 81.6 bytes of RSS per message
with the dynamic threshold, of which only 42.8 were live Python objects;
48.8 with the threshold fixed at 1 MiB. A fixed threshold of 1 MiB keeps the
batch-sized buffers on the fast heap path (3-node ``herald bench`` ratios of
publish and consume rates within noise, 0.87--1.11 over six pairs) and gives
every larger one back when it is freed.

Setting the threshold with ``mallopt`` also turns the dynamic adjustment off.
An operator who set ``MALLOC_MMAP_THRESHOLD_`` in the environment keeps theirs.
"""

from __future__ import annotations

import ctypes
import logging
import os
from typing import Final

__all__ = ["MMAP_THRESHOLD", "tune_allocator"]

log = logging.getLogger("herald.runtime")

#: Allocations above this many bytes get their own mapping, returned when freed.
MMAP_THRESHOLD: Final = 1 << 20
_M_MMAP_THRESHOLD: Final = -3  # glibc's malloc.h


def tune_allocator() -> bool:
    """Fix glibc's mmap threshold at :data:`MMAP_THRESHOLD` (see the module
    docstring). Returns whether it was set: False on another C library, or when
    the environment already sets it."""
    if "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return False
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # noqa: B018 - present only in glibc
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    ok = bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD))
    if ok:
        log.debug("glibc mmap threshold fixed at %d bytes", MMAP_THRESHOLD)
    return ok
