"""``herald consume``: looking never costs a delivery attempt, and --count never leases more.

The command alone in a Typer app (so these run whatever the rest of the CLI
imports), against the threaded fake server; the queue is set up and inspected
with a SyncClient.
"""

from __future__ import annotations

import json

import typer
from typer.testing import CliRunner

from herald import SyncClient
from herald.cli import consume as consume_command

from .conftest import ThreadedFake

app = typer.Typer()
app.command(name="consume", help=consume_command.HELP)(consume_command.consume)
app.command(name="unused")(lambda: None)  # (a second command keeps "consume" a subcommand)
runner = CliRunner()


def herald(fake: ThreadedFake, *args: str) -> object:
    return runner.invoke(app, [*args, "--url", fake.address], catch_exceptions=False)


def test_looking_with_no_ack_takes_nothing_and_counts_no_attempt(
    threaded_fake: ThreadedFake,
) -> None:
    with SyncClient(threaded_fake.address) as client:
        client.create_queue("q", max_deliveries=1)
        client.publish("q", b"warm-up")
        assert herald(threaded_fake, "consume", "q", "--count", "1").stdout == "warm-up\n"  # type: ignore[attr-defined]
        client.publish("q", b"poison?")
        client.publish("q", b"second")
        for _ in range(3):  # the documented way to look, again and again
            result = herald(threaded_fake, "consume", "q", "--no-ack", "--count", "1")
            assert result.exit_code == 0, result.output  # type: ignore[attr-defined]
            assert result.stdout == "poison?\n"  # type: ignore[attr-defined]
        result = herald(threaded_fake, "consume", "q", "--no-ack", "--json")
        shown = [json.loads(line) for line in result.stdout.splitlines()]  # type: ignore[attr-defined]
        assert [(m["body"], m["state"], m["attempts"]) for m in shown] == [
            ("poison?", "backlog", 0),
            ("second", "backlog", 0),
        ]
        stats = client.stats("q")
        assert stats.counters.delivered == 1 and stats.dead_letters == 0  # the warm-up
        # Still deliverable, as a first attempt.
        result = herald(threaded_fake, "consume", "q", "--count", "1", "--json")
        (line,) = result.stdout.splitlines()  # type: ignore[attr-defined]
        assert (json.loads(line)["body"], json.loads(line)["attempt"]) == ("poison?", 1)


def test_no_ack_on_a_group_that_does_not_exist_yet_shows_the_queue(
    threaded_fake: ThreadedFake,
) -> None:
    with SyncClient(threaded_fake.address) as client:
        client.create_queue("q")
        client.publish("q", b"m")
    result = herald(threaded_fake, "consume", "q", "-g", "new", "--no-ack")
    assert result.exit_code == 0 and result.stdout == "m\n"  # type: ignore[attr-defined]
    assert "does not exist yet" in result.stderr  # type: ignore[attr-defined]


def test_count_never_leases_more_than_it_takes(threaded_fake: ThreadedFake) -> None:
    with SyncClient(threaded_fake.address) as client:
        client.create_queue("q", max_deliveries=1)
        client.publish_many("q", [f"m{i}".encode() for i in range(10)])
        result = herald(threaded_fake, "consume", "q", "--count", "3", "--prefetch", "100")
        assert result.stdout.splitlines() == ["m0", "m1", "m2"]  # type: ignore[attr-defined]
        stats = client.stats("q")
        assert stats.counters.delivered == 3  # leased exactly what it printed
        assert stats.dead_letters == 0 and stats.groups[0].in_flight == 0
        # The same at most once: nothing settled on delivery beyond the count.
        result = herald(
            threaded_fake, "consume", "q", "-g", "amo", "--mode", "at_most_once", "--count", "2"
        )
        # (A new group starts with what the queue retains: m0..m2 were acked.)
        assert result.stdout.splitlines() == ["m3", "m4"]  # type: ignore[attr-defined]
        assert client.stats("q").counters.delivered == 5
        assert [m.body for m in client.peek("q", "amo", limit=1)] == [b"m5"]
