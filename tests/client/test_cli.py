"""The client commands: publish, consume, queues, dlq, status, bench -- output and exit codes."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from herald import SyncClient
from herald.cli.main import app

from .conftest import ThreadedFake

runner = CliRunner()


def herald(fake: ThreadedFake | None, *args: str, input: str | None = None) -> object:
    url = ["--url", fake.address] if fake is not None else []
    return runner.invoke(app, [*args, *url], input=input)


def test_publish_consume_round_trip(threaded_fake: ThreadedFake) -> None:
    result = herald(threaded_fake, "queues", "create", "jobs", "--lease", "30")
    assert result.exit_code == 0, result.output
    assert "created jobs" in result.stdout

    result = herald(threaded_fake, "publish", "jobs", "one", "two", "-H", "k=v")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == ["jobs 1 durable", "jobs 2 durable"]

    result = herald(threaded_fake, "publish", "jobs", "--stdin", "--json", input="three\nfour\n")
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["sequence"] for line in lines] == [3, 4]

    result = herald(threaded_fake, "publish", "jobs", "one-again", "--key", "K")
    assert result.exit_code == 0
    result = herald(threaded_fake, "publish", "jobs", "one-again", "--key", "K")
    assert result.stdout.strip() == "jobs 5 durable duplicate"

    result = herald(threaded_fake, "consume", "jobs", "--count", "2", "--json")
    assert result.exit_code == 0, result.output
    got = [json.loads(line) for line in result.stdout.splitlines()]
    assert [g["body"] for g in got] == ["one", "two"]
    assert got[0]["headers"] == {"k": "v"} and got[0]["attempt"] == 1

    # --no-ack looks without taking: the message stays for the group, no attempt counted.
    result = herald(threaded_fake, "consume", "jobs", "--count", "1", "--no-ack")
    assert result.stdout == "three\n"
    result = herald(threaded_fake, "consume", "jobs", "--count", "1", "--no-ack", "--json")
    assert json.loads(result.stdout)["attempts"] == 0
    result = herald(threaded_fake, "consume", "jobs", "--count", "3", "--idle", "1")
    assert result.stdout.splitlines() == ["three", "four", "one-again"]
    result = herald(threaded_fake, "consume", "jobs", "--idle", "0.2")
    assert result.exit_code == 0 and result.stdout == ""


def test_queue_commands(threaded_fake: ThreadedFake) -> None:
    assert herald(threaded_fake, "queues", "ls").stdout.strip() == "no queues"
    herald(threaded_fake, "queues", "create", "a", "--max-length", "0", "--dedup-ttl", "0")
    herald(threaded_fake, "publish", "a", "x", "y")
    result = herald(threaded_fake, "queues", "ls", "--json")
    shown = json.loads(result.stdout)
    assert shown.pop("leader_address").startswith("127.0.0.1:")
    assert shown == {
        "queue": "a",
        "length": 2,
        "bytes": 2,
        "groups": [],
        "dead_letters": 0,
        "published": 2,
        "data_group": 0,
    }
    result = herald(threaded_fake, "queues", "ls")
    assert "a" in result.stdout and "Queues" in result.stdout
    result = herald(threaded_fake, "queues", "stats", "a")
    assert result.exit_code == 0 and "length" in result.stdout and "unlimited" in result.stdout
    stats = json.loads(herald(threaded_fake, "queues", "stats", "a", "--json").stdout)
    assert stats["options"]["dedup_ttl"] is None and stats["length"] == 2
    result = herald(threaded_fake, "queues", "purge", "a")
    assert result.stdout.strip() == "purged 2 messages from a"
    assert herald(threaded_fake, "queues", "delete", "a").exit_code == 0
    result = herald(threaded_fake, "queues", "stats", "a")
    assert result.exit_code == 1
    assert "UnknownQueueError" in result.output


def test_dead_letter_commands(threaded_fake: ThreadedFake) -> None:
    herald(threaded_fake, "queues", "create", "q", "--max-deliveries", "1", "--lease", "0.1")
    herald(threaded_fake, "publish", "q", "poison")
    # Looking costs no attempt: nothing is dead-lettered by it.
    assert herald(threaded_fake, "consume", "q", "-g", "g", "--no-ack").stdout == "poison\n"
    assert herald(threaded_fake, "dlq", "ls", "q").stdout.strip() == "no dead letters"
    # One delivery that is never acked: its consumer leaves, and with
    # max-deliveries 1 it is dead-lettered.
    with (
        SyncClient(threaded_fake.address) as client,
        client.consume("q", "g", prefetch=1) as deliveries,
    ):
        assert next(deliveries).body == b"poison"
    result = herald(threaded_fake, "dlq", "ls", "q", "--json")
    letter = json.loads(result.stdout)
    assert (letter["sequence"], letter["reason"], letter["body"]) == (1, "max_deliveries", "poison")
    result = herald(threaded_fake, "dlq", "ls", "q", "--group", "g")
    assert "poison" in result.stdout
    result = herald(threaded_fake, "dlq", "show", "q", "1")
    assert result.exit_code == 0 and "consumer_gone" in result.stdout
    assert herald(threaded_fake, "dlq", "show", "q", "9").exit_code == 1
    result = herald(threaded_fake, "dlq", "redrive", "q", "--group", "g")
    assert result.stdout.strip() == "redrove 1 dead letters of q / g"
    assert herald(threaded_fake, "dlq", "ls", "q").stdout.strip() == "no dead letters"


def test_status(threaded_fake: ThreadedFake) -> None:
    result = herald(threaded_fake, "status")
    assert result.exit_code == 0, result.output
    assert "leader" in result.stdout and threaded_fake.address in result.stdout
    status = json.loads(herald(threaded_fake, "status", "--json").stdout)
    assert status["leader"] == 1 and status["peers"][0]["lag"] == 0


def test_exit_codes(threaded_fake: ThreadedFake, monkeypatch: pytest.MonkeyPatch) -> None:
    # 1: the broker refused.
    result = herald(threaded_fake, "publish", "nowhere", "x")
    assert result.exit_code == 1
    assert "UnknownQueueError" in result.output
    # 2: usage.
    herald(threaded_fake, "queues", "create", "q")
    assert herald(threaded_fake, "publish", "q", "a", "b", "--key", "k").exit_code == 2
    assert herald(threaded_fake, "publish", "q", "a", "-H", "novalue").exit_code == 2
    assert herald(threaded_fake, "consume", "q", "--mode", "twice").exit_code == 2
    # 4: nobody there.
    result = runner.invoke(app, ["status", "--url", "127.0.0.1:1", "--timeout", "0.3"])
    assert result.exit_code == 4
    assert "UnreachableError" in result.output
    # HERALD_URL is the default of --url.
    monkeypatch.setenv("HERALD_URL", threaded_fake.address)
    assert runner.invoke(app, ["queues", "ls", "--json"]).exit_code == 0


def test_bench_against_a_url(threaded_fake: ThreadedFake) -> None:
    result = herald(
        threaded_fake, "bench", "--messages", "300", "--size", "16", "--inflight", "50", "--json"
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert list(report)[:4] == ["publish", "consume", "nodes", "durability"]
    for phase in ("publish", "consume"):
        assert report[phase]["msgs_per_s"] > 0
        assert 0 < report[phase]["p50_ms"] <= report[phase]["p99_ms"]
        assert report[phase]["errors"] == 0
    assert report["nodes"] == 1 and report["durability"] == "durable"
    # The bench queue is deleted afterwards.
    assert herald(threaded_fake, "queues", "ls", "--json").stdout == ""


def test_help_texts() -> None:
    for command in (["publish"], ["consume"], ["queues"], ["dlq"], ["status"], ["bench"]):
        result = runner.invoke(app, [*command, "--help"])
        assert result.exit_code == 0
        assert "--url" in result.stdout or "Commands" in result.stdout
