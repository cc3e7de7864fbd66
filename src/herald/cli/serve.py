"""``herald serve``: run one node of a Herald cluster (or a whole one-node cluster)."""

from __future__ import annotations

import typer

from herald.errors import ConfigError
from herald.node.config import MAX_GROUPS
from herald.runtime.config import (
    DEFAULT_ADDRESS,
    DEFAULT_CLUSTER,
    DEFAULT_DATA_DIR,
    NodeConfig,
    parse_peers,
)
from herald.runtime.run import configure_logging
from herald.runtime.run import serve as run_node

HELP = """Run one Herald node: clients and peers on one TCP port, its log in a data dir.

With no flags: a one-node cluster on 127.0.0.1:7430 with its data in ./herald-data.
A cluster of three, one command per node:

    herald serve --id 1 --peers 1=127.0.0.1:7431,2=127.0.0.1:7432,3=127.0.0.1:7433 --data-dir d1

(and --id 2 / --id 3 with their own data dirs). Prints one line when serving.
SIGTERM or SIGINT shuts down cleanly: a leader hands over leadership, requests in
flight are answered, the log is made durable.

Exit status: 0 clean shutdown; 1 the node failed while running; 2 bad usage;
3 storage refused to start (corruption: the message names the file and offset;
inspect it, then restart with --repair to discard the damaged part of the log).
"""


def serve(
    node_id: int = typer.Option(1, "--id", min=1, help="This node's id (a key of --peers)."),
    peers: str | None = typer.Option(
        None,
        "--peers",
        help="Every node of the cluster: 1=host:port,2=host:port,... (default: this node alone).",
    ),
    listen: str | None = typer.Option(
        None,
        "--listen",
        help=f"host:port to bind (default: this node's --peers address, else {DEFAULT_ADDRESS}).",
    ),
    data_dir: str = typer.Option(DEFAULT_DATA_DIR, "--data-dir", help="The node's data directory."),
    cluster: str = typer.Option(
        DEFAULT_CLUSTER, "--cluster", help="The cluster's name; peers of another are refused."
    ),
    groups: int = typer.Option(
        1,
        "--groups",
        min=1,
        max=MAX_GROUPS,
        help="Data groups (Raft groups) in the cluster; a queue lives in one, by the hash "
        "of its name. Fixed when the cluster is created: every node the same.",
    ),
    repair: bool = typer.Option(
        False, "--repair", help="Discard a damaged part of the log instead of refusing to start."
    ),
    log_level: str = typer.Option("info", "--log-level", help="debug, info, warning or error."),
    tick_ms: float = typer.Option(10.0, "--tick-ms", min=0.1, help="Raft tick interval (ms)."),
    election_tick: int = typer.Option(
        15, "--election-tick", min=2, help="Election timeout, lower bound (ticks)."
    ),
    election_tick_max: int = typer.Option(
        29, "--election-tick-max", min=2, help="Election timeout, upper bound (ticks)."
    ),
    heartbeat_tick: int = typer.Option(3, "--heartbeat-tick", min=1, help="Heartbeat (ticks)."),
    max_in_flight: int = typer.Option(
        4096, "--max-in-flight", min=1, help="Unanswered requests per connection before pausing."
    ),
    max_uncommitted_mb: float = typer.Option(
        64.0, "--max-uncommitted-mb", min=0.001, help="Uncommitted MiB before OverloadedError."
    ),
    snapshot_entries: int = typer.Option(
        10_000,
        "--snapshot-entries",
        min=1,
        help="Checkpoint every N applied entries (the log is compacted up to a checkpoint "
        "below the oldest retained message).",
    ),
    checkpoint_mb: float = typer.Option(
        16.0,
        "--checkpoint-mb",
        min=0.001,
        help="Also checkpoint every this many MiB of applied entries (or a checkpoint's "
        "own size, if larger): a restart after a crash replays at most about this much; "
        "one after a clean stop replays nothing.",
    ),
    log_cache_mb: float = typer.Option(
        8.0, "--log-cache-mb", min=0.0, help="MiB of decoded log records kept in memory."
    ),
    retain_entries: int = typer.Option(
        1_000,
        "--retain-entries",
        min=0,
        help="Entries kept after a snapshot for slow followers (beyond: they get the snapshot).",
    ),
    dial: str | None = typer.Option(
        None,
        "--dial",
        help="Testing: dial these peers here instead (proxies): 2=host:port,3=host:port.",
    ),
    volatile_storage: bool = typer.Option(
        False,
        "--unsafe-volatile-storage",
        help="TESTING ONLY: unsynced writes die with the process, as in a power cut.",
    ),
    parent_pid: int = typer.Option(
        0, "--parent-pid", hidden=True, help="Shut down when this process (our parent) exits."
    ),
) -> None:
    if log_level.lower() not in ("debug", "info", "warning", "error", "critical"):
        raise typer.BadParameter(f"unknown log level {log_level!r}", param_hint="--log-level")
    try:
        if peers is None:
            peer_map = {node_id: listen or DEFAULT_ADDRESS}
        else:
            peer_map = parse_peers(peers)
        config = NodeConfig(
            node_id=node_id,
            peers=peer_map,
            listen=listen or "",
            data_dir=data_dir,
            cluster=cluster,
            groups=groups,
            repair=repair,
            tick_interval=tick_ms / 1000,
            election_tick=election_tick,
            election_tick_max=max(election_tick_max, election_tick),
            heartbeat_tick=heartbeat_tick,
            max_in_flight=max_in_flight,
            max_uncommitted_bytes=int(max_uncommitted_mb * (1 << 20)),
            snapshot_entries=snapshot_entries,
            checkpoint_bytes=int(checkpoint_mb * (1 << 20)),
            log_cache_bytes=int(log_cache_mb * (1 << 20)),
            retain_entries=retain_entries,
            dial=parse_peers(dial) if dial else {},
            volatile_storage=volatile_storage,
        )
    except ConfigError as error:
        typer.echo(f"herald serve: {error}", err=True)
        raise typer.Exit(2) from None
    configure_logging(log_level)
    raise typer.Exit(run_node(config, parent_pid=parent_pid))


def main() -> None:
    """``python -m herald.cli.serve [flags]``: the same as ``herald serve [flags]`` (the
    launcher starts nodes this way, so it needs no console script on the PATH)."""
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    app.command(help=HELP)(serve)
    app()


if __name__ == "__main__":
    main()
