"""A node as a process: clean SIGTERM, restart on its data, startup refusal, the CLI."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from herald.cli.main import app
from herald.errors import HeraldError
from herald.runtime.launcher import LocalCluster, free_ports
from herald.wire.protocol import CreateQueue, Deliver, Publish, Stats, Subscribe

from .wireclient import WireClient

FAST_ARGS = ["--tick-ms", "5"]


def test_sigterm_exits_cleanly_and_a_restart_keeps_the_data(tmp_path: Path) -> None:
    with LocalCluster(1, data_dir=tmp_path, args=FAST_ARGS) as cluster:
        cluster.start()
        cluster.leader()
        address = cluster.addresses[1]
        with WireClient(address) as client:
            assert client.call(CreateQueue(client.next_id(), "q")).ok
            publishes = [Publish(client.next_id(), "q", b"m%d" % n) for n in range(50)]
            client.send(*publishes)
            assert all(r.ok for r in client.wait_for({p.id for p in publishes}).values())
        assert cluster.terminate(1) == 0
        log = cluster.log_tail(1, lines=50)
        assert f"herald node 1 serving on {address} (cluster of 1, data in " in log
        assert "node 1 stopped" in log

        cluster.restart(1)
        cluster.leader()
        with WireClient(address) as client:
            stats = client.call(Stats(client.next_id(), "q")).value
            assert stats["length"] == 50
            assert client.call(Subscribe(client.next_id(), "q", "g", "c")).ok
            reply = client.call(Deliver(client.next_id(), "q", "g", "c", max_messages=100))
            assert [d[1] for d in reply.value] == [b"m%d" % n for n in range(50)]


def test_corrupt_log_refuses_to_start_until_repaired(tmp_path: Path) -> None:
    with LocalCluster(1, data_dir=tmp_path, args=FAST_ARGS) as cluster:
        cluster.start()
        cluster.leader()
        with WireClient(cluster.addresses[1]) as client:
            assert client.call(CreateQueue(client.next_id(), "q")).ok
            for n in range(60):  # one entry (one log record) each
                assert client.call(Publish(client.next_id(), "q", b"m%d" % n)).ok
        assert cluster.terminate(1) == 0

        (segment,) = sorted((tmp_path / "node-1").glob("wal-*.log"))
        data = bytearray(segment.read_bytes())
        data[len(data) // 2] ^= 0xFF  # damage in the middle: not a torn tail
        segment.write_bytes(bytes(data))

        cluster.start_node(1)
        with pytest.raises(HeraldError, match="exited with status 3"):
            cluster.wait_serving(1, timeout=20)
        refusal = cluster.log_tail(1, lines=5)
        assert "storage refused to start" in refusal
        assert segment.name in refusal and "offset" in refusal and "--repair" in refusal

        cluster.start_node(1, repair=True)
        cluster.wait_serving(1)
        cluster.leader()
        with WireClient(cluster.addresses[1]) as client:
            stats = client.call(Stats(client.next_id(), "q"))
            assert stats.ok  # what came before the damage is still there
            assert 0 < stats.value["length"] < 60


def test_herald_cluster_runs_in_the_foreground_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    base = _two_free_ports()
    herald = Path(sys.executable).with_name("herald")
    command = (
        [str(herald)]
        if herald.exists()
        else [sys.executable, "-c", "from herald.cli.main import main; main()"]
    )
    process = subprocess.Popen(
        [*command, "cluster", "--nodes", "2", "--base-port", str(base)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        assert process.stdout is not None
        lines = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            lines.append(line)
            if line.startswith("clients:") or not line:
                break
        assert any(f"node 1: 127.0.0.1:{base}" in line for line in lines), lines
        assert any(f"node 2: 127.0.0.1:{base + 1}" in line for line in lines), lines
        with WireClient(f"127.0.0.1:{base}") as client:
            assert client.welcome is not None
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=30)
        assert process.returncode == 0, "".join(lines) + output
        assert "stopped" in output
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _two_free_ports() -> int:
    for _ in range(50):
        (port,) = free_ports(1)
        if port < 65000 and _free(port + 1):
            return port
    raise AssertionError("no two consecutive free ports")


def _free(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@pytest.mark.parametrize(
    "args",
    [
        ["serve", "--peers", "1=nowhere"],
        ["serve", "--id", "4", "--peers", "1=127.0.0.1:1,2=127.0.0.1:2"],
        ["serve", "--listen", "localhost"],
        ["serve", "--log-level", "chatty"],
    ],
)
def test_serve_usage_errors_exit_2(args: list[str]) -> None:
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
