"""``herald status``: the cluster as its leader sees it."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

from herald.client import ClusterStatus

from ._client import TIMEOUT_OPTION, URL_OPTION, connect, print_json, run

HELP = """Show the cluster: its leader, term and commit index, and each node's lag.

A cluster of many data groups (``herald serve --groups``) also gets a table of
its groups, each with its leader, term and commit index.

The view is the leader's (a monitoring view, not linearizable): a node's lag
is how many log entries it is behind the leader's last entry.

Exit status: 0 done; 2 bad usage; 4 no leader could be reached.
"""


def status(
    as_json: bool = typer.Option(False, "--json", help="Print the status as one JSON object."),
    url: str = URL_OPTION,
    timeout: float = TIMEOUT_OPTION,
) -> None:
    async def main() -> ClusterStatus:
        async with connect(url, timeout) as client:
            return await client.status()

    result = run(main)
    if as_json:
        print_json(
            {
                "node": result.node,
                "role": result.role,
                "term": result.term,
                "leader": result.leader,
                "leader_address": result.leader_address,
                "commit": result.commit,
                "applied": result.applied,
                "last_index": result.last_index,
                "loop_lag_ms": result.loop_lag_ms,
                "loop_lag_max_ms": result.loop_lag_max_ms,
                "peers": [
                    {"node": p.node, "address": p.address, "match": p.match, "lag": p.lag}
                    for p in result.peers
                ],
                "groups": [
                    {
                        "group": g.group,
                        "leader": g.leader,
                        "leader_address": g.leader_address,
                        "term": g.term,
                        "commit": g.commit,
                        "applied": g.applied,
                        "last_index": g.last_index,
                    }
                    for g in result.groups
                ],
            }
        )
        return
    console = Console()
    console.print(
        f"leader [bold]{result.leader}[/bold] at {result.leader_address or '?'}  "
        f"term {result.term}  commit {result.commit}  applied {result.applied}  "
        f"last index {result.last_index}",
        highlight=False,
    )
    if result.loop_lag_ms:
        console.print(
            f"longest event-loop pause of node {result.node}: "
            f"{max(result.loop_lag_ms):.1f} ms in the last minute, "
            f"{result.loop_lag_max_ms:.1f} ms since it started",
            highlight=False,
        )
    table = Table(title="Nodes")
    for column in ("node", "address", "role", "match", "lag"):
        table.add_column(column, justify="right" if column in ("node", "match", "lag") else "left")
    peers = sorted(result.peers, key=lambda p: p.node)
    if not any(p.node == result.node for p in peers):
        table.add_row(
            str(result.node), result.leader_address, result.role, str(result.last_index), "0"
        )
    for peer in peers:
        role = "leader" if peer.node == result.leader else "follower"
        table.add_row(
            str(peer.node),
            peer.address or "?",
            role,
            "?" if peer.match is None else str(peer.match),
            "?" if peer.lag is None else str(peer.lag),
        )
    console.print(table)
    if len(result.groups) > 1:
        groups = Table(title=f"Data groups, as node {result.node} sees them")
        for column in ("group", "leader", "address", "term", "commit", "applied"):
            groups.add_column(column, justify="left" if column == "address" else "right")
        for group in result.groups:
            groups.add_row(
                str(group.group),
                str(group.leader or "?"),
                group.leader_address or "?",
                str(group.term),
                str(group.commit),
                str(group.applied),
            )
        console.print(groups)
