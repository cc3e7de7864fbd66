"""``herald cluster``: run a local cluster of node processes in the foreground."""

from __future__ import annotations

import signal
import threading
from types import FrameType

import typer

from herald.errors import HeraldError
from herald.runtime.launcher import LocalCluster

HELP = """Run a local Herald cluster: N node processes on this machine, until Ctrl-C.

Node i listens on 127.0.0.1:(base port + i - 1), 7431.. by default, with its data
in DATA_DIR/node-i (default: a fresh temporary directory, removed at exit) and
its log in DATA_DIR/node-i.log. Prints the client addresses once every node
serves. Ctrl-C or SIGTERM stops every node cleanly; the exit status is 0 when
they all shut down cleanly, 1 otherwise.
"""


def cluster(
    nodes: int = typer.Option(3, "--nodes", "-n", min=1, max=99, help="How many nodes."),
    data_dir: str | None = typer.Option(
        None, "--data-dir", help="Parent of the nodes' data dirs (default: a temporary dir)."
    ),
    base_port: int = typer.Option(
        7431, "--base-port", min=1, max=65000, help="Node 1's port; node i uses base + i - 1."
    ),
    name: str = typer.Option("herald-local", "--cluster", help="The cluster's name."),
    keep_data: bool = typer.Option(False, "--keep-data", help="Keep a temporary data dir."),
    log_level: str = typer.Option("info", "--log-level", help="The nodes' log level."),
    groups: int = typer.Option(
        1, "--groups", min=1, max=64, help="Data groups (Raft groups) per node."
    ),
) -> None:
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    local = LocalCluster(
        nodes,
        data_dir=data_dir,
        base_port=base_port,
        cluster=name,
        args=["--log-level", log_level, *(["--groups", str(groups)] if groups > 1 else [])],
        keep_data=keep_data,
    )
    try:
        try:
            local.start()
        except HeraldError as error:
            typer.echo(f"herald cluster: {error}", err=True)
            local.stop()
            raise typer.Exit(1) from None
        typer.echo(f"herald cluster of {nodes} serving (data in {local.data_dir}):")
        for node_id, address in local.addresses.items():
            typer.echo(f"  node {node_id}: {address}")
        typer.echo(f"clients: {','.join(local.addresses.values())}   (Ctrl-C stops)")
        reported: set[int] = set()
        while not stop.wait(0.5):
            for node in local.nodes.values():
                if not node.running and node.id not in reported:
                    reported.add(node.id)
                    typer.echo(
                        f"node {node.id} exited with status {node.returncode} "
                        f"(see {node.log_path})",
                        err=True,
                    )
        typer.echo("stopping...")
        statuses = local.stop()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    bad = {node: status for node, status in statuses.items() if status not in (0, None)}
    if bad or reported:
        typer.echo(
            f"herald cluster: nodes did not stop cleanly: {bad or sorted(reported)}", err=True
        )
        raise typer.Exit(1)
    typer.echo("stopped")
