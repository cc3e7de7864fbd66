"""The server runtime: Herald's cores over real sockets, real files and real time.

The only package with sockets, timers and threads. One process is one node
(:class:`NodeServer`): the node host drives the Raft core with the broker as
its state machine and the write-ahead log in its data directory; clients and
peers share one TCP port. :mod:`herald.runtime.launcher` runs a local cluster
of node processes (for ``herald cluster``, benchmarks and fault injection).

- :mod:`~herald.runtime.config`: :class:`NodeConfig`, address parsing.
- :mod:`~herald.runtime.node`: the Ready loop, batching, replies, reads, long polls.
- :mod:`~herald.runtime.connection`: accepted connections: handshake, flow control.
- :mod:`~herald.runtime.peers`: outbound peer links, the host's Transport.
- :mod:`~herald.runtime.convert`: wire requests to commands, results to replies.
- :mod:`~herald.runtime.run`: one node as a process: loop, signals, exit statuses.
- :mod:`~herald.runtime.probe`: a tiny blocking client for readiness and status checks.
- :mod:`~herald.runtime.launcher`: :class:`LocalCluster` of node processes.
"""

from .config import NodeConfig, parse_address, parse_peers
from .launcher import LocalCluster, NodeProcess
from .node import NodeServer

__all__ = [
    "LocalCluster",
    "NodeConfig",
    "NodeProcess",
    "NodeServer",
    "parse_address",
    "parse_peers",
]
