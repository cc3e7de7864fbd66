"""Running one node as a process: event loop, signals, the ready line, exit statuses.

Exit statuses: 0 after a clean shutdown (SIGTERM or SIGINT); 1 when the node
failed while running (a failed fsync poisons the log, a broken invariant) or
could not listen; 3 when storage refused to start (corruption, a locked data
directory, a format this code does not read). Usage errors (2) belong to the CLI.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import sys
from collections.abc import Callable, Coroutine
from typing import Any, Final, TextIO

from herald.errors import (
    BrokerSnapshotError,
    CorruptHardStateError,
    CorruptionError,
    LockedError,
    StorageError,
)

from .allocator import tune_allocator
from .config import NodeConfig
from .node import NodeServer

__all__ = [
    "EXIT_FAILED",
    "EXIT_OK",
    "EXIT_STORAGE",
    "configure_logging",
    "refusal_line",
    "run_loop",
    "serve",
]

EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
EXIT_STORAGE: Final = 3

log = logging.getLogger("herald.runtime")

#: Seconds a thread may hold the GIL while another waits for it (see serve()).
_SWITCH_INTERVAL: Final = 0.0002
#: The cyclic garbage collector's thresholds (the defaults are 700, 10, 10).
_GC_THRESHOLDS: Final = (50_000, 20, 100)


def configure_logging(level: str = "info", stream: TextIO | None = None) -> None:
    """One line per event on stderr: time, level, node, message."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S")
    )
    root = logging.getLogger("herald")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False


def refusal_line(config: NodeConfig, error: BaseException) -> str:
    """The one line an operator reads when storage refuses to start."""
    where = config.data_dir
    if isinstance(error, LockedError):
        return (
            f"herald: data directory {where} is in use by another process "
            "(another node running on it?); stop it first"
        )
    if isinstance(error, CorruptHardStateError):
        return (
            f"herald: storage refused to start: {error.path} at offset {error.offset}: "
            f"{error.reason}. The hard state (term and vote) cannot be repaired: "
            "restore this node's data directory or rebuild the node empty"
        )
    if isinstance(error, CorruptionError):
        return (
            f"herald: storage refused to start: {error.path} at offset {error.offset}: "
            f"{error.reason}. Inspect it; then restart with --repair to discard the "
            "damaged part of the log (this node then catches up from its peers)"
        )
    if isinstance(error, BrokerSnapshotError):
        return (
            f"herald: storage refused to start: the broker snapshot in {where} is damaged: {error}"
        )
    return f"herald: storage refused to start in {where}: {type(error).__name__}: {error}"


def run_loop(main: Callable[[], Coroutine[Any, Any, int]]) -> int:
    """Run ``main`` on uvloop when it is installed, else on asyncio's default loop."""
    factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    try:
        import uvloop

        factory = uvloop.new_event_loop
    except ImportError:  # pragma: no cover - uvloop is a dependency where it exists
        factory = None
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main())


async def _watch_parent(parent_pid: int, stop: asyncio.Event) -> None:
    """Stop (gracefully) once the process that started us is gone: a launcher that
    died without stopping its nodes must not leave them running."""
    while os.getppid() == parent_pid:
        await asyncio.sleep(0.5)
    log.warning("parent process %d is gone; shutting down", parent_pid)
    stop.set()


def serve(config: NodeConfig, *, out: TextIO | None = None, parent_pid: int = 0) -> int:
    """Run a node until SIGTERM/SIGINT (or, with ``parent_pid``, until that process,
    our parent, exits); returns the exit status."""
    out = out or sys.stdout
    # The fsync thread needs the GIL for a moment after each fdatasync to hand
    # its result back. With the default 5 ms switch interval a busy loop thread
    # keeps it that long, and every commit waits: p99 confirm latency went from
    # ~1 ms to ~5 ms, and throughput dropped 15%, in a 3-node benchmark.
    sys.setswitchinterval(_SWITCH_INTERVAL)
    # The broker keeps every retained message as a few Python objects, and the
    # cyclic GC's default thresholds re-scan that heap hundreds of times a second
    # under load: raising them took a 3-node benchmark from ~60k to ~95k publishes
    # per second and consume+ack from ~200k to ~350k. Cycles are still collected.
    gc.set_threshold(*_GC_THRESHOLDS)
    # Large short-lived buffers (checkpoints) must not leave the heap holed for
    # good: RSS per retained message 82 -> 49 bytes (herald.runtime.allocator).
    tune_allocator()
    try:
        server = NodeServer(config)
    except (StorageError, BrokerSnapshotError) as error:
        print(refusal_line(config, error), file=sys.stderr, flush=True)
        return EXIT_STORAGE
    # What recovery rebuilt is long-lived state: keep the collector off it.
    gc.freeze()

    async def main() -> int:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        try:
            await server.start()
        except OSError as error:
            print(
                f"herald: cannot listen on {config.listen_address}: {error.strerror or error}",
                file=sys.stderr,
                flush=True,
            )
            await server.abort()
            return EXIT_FAILED
        watcher = asyncio.ensure_future(_watch_parent(parent_pid, stop)) if parent_pid else None
        voters = len(config.voters)
        print(
            f"herald node {config.node_id} serving on {config.listen_address} "
            f"(cluster of {voters}"
            + (f", {config.groups} groups" if config.groups > 1 else "")
            + f", data in {config.data_dir})",
            file=out,
            flush=True,
        )
        failed = server.failed
        assert failed is not None
        stopping: asyncio.Future[object] = asyncio.ensure_future(stop.wait())
        waiting: list[asyncio.Future[Any]] = [stopping, failed]
        await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        if watcher is not None:
            watcher.cancel()
        if failed.done():
            stopping.cancel()
            failure = failed.result()
            print(
                f"herald: node {config.node_id} failed: {type(failure).__name__}: {failure}",
                file=sys.stderr,
                flush=True,
            )
            await server.abort()
            return EXIT_FAILED
        log.info("node %d shutting down", config.node_id)
        try:
            await server.stop()
        except Exception as error:
            log.exception("shutdown failed")
            print(f"herald: shutdown failed: {error}", file=sys.stderr, flush=True)
            return EXIT_FAILED
        log.info("node %d stopped", config.node_id)
        return EXIT_OK

    return run_loop(main)
