"""A local cluster of node processes: start, kill, pause, resume, restart, stop.

``herald cluster`` runs one in the foreground; benchmarks, the demo and the
fault-injection harness drive one from Python::

    with LocalCluster(3) as cluster:          # free ports, a temporary data dir
        cluster.start()                       # returns once every node serves
        leader = cluster.leader()             # the node id that leads
        cluster.kill(leader)                  # SIGKILL: a crash
        cluster.restart(leader)               # same data dir, same port
    # leaving the block stops every node (SIGTERM) and removes the temp dir

Each node runs ``python -m herald.cli.serve`` with its own data directory
``<data_dir>/node-<id>`` and writes its output to ``<data_dir>/node-<id>.log``.
Nodes run in their own process groups, so a Ctrl-C at the terminal reaches
only the launcher, which then stops them in order.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from herald.errors import HeraldError

from .config import format_peers
from .probe import Probe

__all__ = ["LocalCluster", "NodeProcess", "free_ports"]


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """``count`` distinct TCP ports that were free a moment ago."""
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((host, 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


@dataclass
class NodeProcess:
    """One node of a :class:`LocalCluster` and its current process (if any)."""

    id: int
    address: str
    data_dir: Path
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    paused: bool = False
    _log: IO[bytes] | None = field(default=None, repr=False)

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def returncode(self) -> int | None:
        return None if self.process is None else self.process.poll()


class LocalCluster:
    """``nodes`` Herald nodes as child processes of this one.

    ``base_port``: node ``i`` listens on ``base_port + i - 1`` (default: free
    ports). ``data_dir``: the parent of every node's data directory (default: a
    fresh temporary directory, removed by :meth:`stop` unless ``keep_data``).
    ``args``: extra ``herald serve`` flags for every node (``--tick-ms 5``, ...);
    ``node_args``: more for some nodes (``{2: ["--dial", "1=127.0.0.1:9001"]}``),
    changeable between restarts through the :attr:`node_args` dict.
    """

    def __init__(
        self,
        nodes: int = 3,
        *,
        data_dir: str | os.PathLike[str] | None = None,
        base_port: int | None = None,
        host: str = "127.0.0.1",
        cluster: str = "herald-local",
        args: Sequence[str] = (),
        node_args: Mapping[int, Sequence[str]] | None = None,
        python: str = sys.executable,
        env: dict[str, str] | None = None,
        keep_data: bool = False,
    ) -> None:
        if nodes < 1:
            raise ValueError("a cluster needs at least one node")
        self.owns_data = data_dir is None
        self.keep_data = keep_data
        self.data_dir = Path(data_dir or tempfile.mkdtemp(prefix="herald-cluster-")).resolve()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        ports = (
            free_ports(nodes, host) if base_port is None else [base_port + i for i in range(nodes)]
        )
        self.cluster = cluster
        self.args = list(args)
        self.node_args = {node: list(extra) for node, extra in (node_args or {}).items()}
        self.python = python
        self.env = env
        self.nodes: dict[int, NodeProcess] = {}
        for node_id, port in enumerate(ports, start=1):
            self.nodes[node_id] = NodeProcess(
                node_id,
                f"{host}:{port}",
                self.data_dir / f"node-{node_id}",
                self.data_dir / f"node-{node_id}.log",
            )

    # -- addresses ---------------------------------------------------------------------

    @property
    def addresses(self) -> dict[int, str]:
        """Node id -> ``host:port`` (clients and peers use the same address)."""
        return {node.id: node.address for node in self.nodes.values()}

    @property
    def peers(self) -> str:
        """The ``--peers`` value of every node."""
        return format_peers(self.addresses)

    def command(self, node_id: int, *, repair: bool = False) -> list[str]:
        """The command line that runs node ``node_id``."""
        node = self.nodes[node_id]
        command = [
            self.python,
            "-m",
            "herald.cli.serve",
            "--id",
            str(node_id),
            "--peers",
            self.peers,
            "--data-dir",
            str(node.data_dir),
            "--cluster",
            self.cluster,
            # Nodes stop when this process dies, even by SIGKILL.
            "--parent-pid",
            str(os.getpid()),
            *self.args,
            *self.node_args.get(node_id, ()),
        ]
        if repair:
            command.append("--repair")
        return command

    # -- lifecycle ---------------------------------------------------------------------

    def start(self, timeout: float = 30.0) -> None:
        """Start every node that is not running; return once all serve.

        Raises HeraldError (with the end of the node's log) if one exits or does
        not serve within ``timeout``.
        """
        for node_id, node in self.nodes.items():
            if not node.running:
                self.start_node(node_id)
        deadline = time.monotonic() + timeout
        for node_id in self.nodes:
            self.wait_serving(node_id, max(0.1, deadline - time.monotonic()))

    def start_node(self, node_id: int, *, repair: bool = False) -> None:
        """Start one node (without waiting for it to serve)."""
        node = self.nodes[node_id]
        if node.running:
            raise HeraldError(f"node {node_id} is already running (pid {node.pid})")
        if node._log is not None:
            node._log.close()
        node._log = open(node.log_path, "ab")  # noqa: SIM115 - kept open while it runs
        node.process = subprocess.Popen(
            self.command(node_id, repair=repair),
            stdin=subprocess.DEVNULL,
            stdout=node._log,
            stderr=subprocess.STDOUT,
            env=self.env,
            start_new_session=True,
        )
        node.paused = False

    def wait_serving(self, node_id: int, timeout: float = 30.0) -> None:
        """Wait until the node completes a handshake. Raises HeraldError if it exits
        or does not serve in time."""
        node = self.nodes[node_id]
        deadline = time.monotonic() + timeout
        while True:
            if not node.running:
                tail = self.log_tail(node_id)
                raise HeraldError(f"node {node_id} exited with status {node.returncode}:\n{tail}")
            try:
                with Probe(node.address, timeout=1.0, name="launcher"):
                    return
            except (OSError, HeraldError):
                pass
            if time.monotonic() >= deadline:
                raise HeraldError(
                    f"node {node_id} did not serve within {timeout:g} s:\n{self.log_tail(node_id)}"
                )
            time.sleep(0.02)

    def kill(self, node_id: int) -> None:
        """SIGKILL: the process dies at once, as in a crash (the OS keeps what it wrote)."""
        node = self.nodes[node_id]
        if node.process is not None and node.running:
            node.process.kill()
            node.process.wait()
        node.paused = False

    def pause(self, node_id: int) -> None:
        """SIGSTOP: the node freezes (a long GC pause, a stalled VM)."""
        node = self.nodes[node_id]
        if node.process is not None and node.running:
            node.process.send_signal(signal.SIGSTOP)
            node.paused = True

    def resume(self, node_id: int) -> None:
        """SIGCONT: a paused node goes on where it stopped."""
        node = self.nodes[node_id]
        if node.process is not None and node.running:
            node.process.send_signal(signal.SIGCONT)
        node.paused = False

    def terminate(self, node_id: int, timeout: float = 15.0) -> int | None:
        """SIGTERM (graceful shutdown) and wait; SIGKILL after ``timeout``. Returns the
        exit status (None if the node was not running)."""
        node = self.nodes[node_id]
        process = node.process
        if process is None:
            return None
        if process.poll() is None:
            if node.paused:
                self.resume(node_id)
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        return process.returncode

    def restart(self, node_id: int, timeout: float = 30.0, *, repair: bool = False) -> None:
        """Stop the node if it runs (SIGTERM), start it on the same data dir and port,
        and wait until it serves."""
        self.terminate(node_id)
        self.start_node(node_id, repair=repair)
        self.wait_serving(node_id, timeout)

    def stop(self, timeout: float = 15.0) -> dict[int, int | None]:
        """SIGTERM every node, wait (SIGKILL after ``timeout``); exit statuses by node.
        Removes the data directory if the cluster created it and ``keep_data`` is off."""
        for node in self.nodes.values():
            if node.running:
                if node.paused:
                    self.resume(node.id)
                assert node.process is not None
                node.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        statuses: dict[int, int | None] = {}
        for node in self.nodes.values():
            process = node.process
            if process is None:
                statuses[node.id] = None
                continue
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            statuses[node.id] = process.returncode
            if node._log is not None:
                node._log.close()
                node._log = None
        if self.owns_data and not self.keep_data:
            shutil.rmtree(self.data_dir, ignore_errors=True)
        return statuses

    def __enter__(self) -> LocalCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- looking at it -------------------------------------------------------------------

    def status(self, node_id: int, timeout: float = 2.0) -> dict[str, Any]:
        """The node's Status value. Raises OSError or HeraldError if it does not answer."""
        with Probe(self.nodes[node_id].address, timeout, name="launcher") as probe:
            return probe.status()

    def leader(
        self, timeout: float = 10.0, among: Iterable[int] | None = None, *, group: int = 0
    ) -> int:
        """The node that leads data group ``group`` (per the highest term any running
        node reports), once one does. Raises HeraldError after ``timeout``."""
        candidates = list(self.nodes if among is None else among)
        deadline = time.monotonic() + timeout
        while True:
            best: tuple[int, int] | None = None
            for node_id in candidates:
                node = self.nodes[node_id]
                if not node.running or node.paused:
                    continue
                with contextlib.suppress(OSError, HeraldError, LookupError):
                    status = self.status(node_id, timeout=1.0)
                    if group:
                        status = status["groups"][group]
                    if status["role"] == "leader" and (best is None or status["term"] > best[0]):
                        best = (status["term"], node_id)
            if best is not None:
                return best[1]
            if time.monotonic() >= deadline:
                which = f" of group {group}" if group else ""
                raise HeraldError(f"no leader{which} among nodes {candidates} within {timeout:g} s")
            time.sleep(0.05)

    def log_tail(self, node_id: int, lines: int = 20) -> str:
        path = self.nodes[node_id].log_path
        try:
            text = path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])
