"""``herald consume``: print messages of a queue as a member of a consumer group, or look."""

from __future__ import annotations

import sys
import time

import typer

from herald.client import Delivery, PeekedMessage
from herald.errors import UnknownGroupError

from ._client import TIMEOUT_OPTION, URL_OPTION, connect, decode_body, err_console, print_json, run

HELP = """Consume messages of QUEUE as a member of a consumer group and print them.

Each message is printed as one line (its body as UTF-8), or with --json as a
JSON object with its sequence, attempt, redelivery reason, headers and body.
Every group receives every message; the consumers of one group share them.

--mode at_least_once (default): each message is acked after it is printed; if
this command dies first, the message comes back. --mode at_most_once: the
broker settles each message as it hands it out; a crash loses it. With
--count N the command never leases more than N messages (--prefetch is capped
at N), so nothing is left leased to it when it exits.

--no-ack looks without taking: it prints the messages the group has not
settled yet (in order, up to --count, or all the server shows), leases
nothing and counts no delivery attempt, so looking never brings a message
closer to the dead letters. With --json each line also has the message's
state in the group (backlog, ready, leased, delayed) and its attempts so far.

Stops after --count messages, after --idle seconds without one, or on Ctrl-C.
Exit status: 0 done; 1 the broker refused (unknown queue, ...); 2 bad usage;
4 the cluster could not be reached or stopped answering.
"""


def _as_dict(delivery: Delivery) -> dict[str, object]:
    return {
        "queue": delivery.queue,
        "group": delivery.group,
        "sequence": delivery.sequence,
        "attempt": delivery.attempt,
        "redelivery": delivery.redelivery,
        "reason": delivery.reason,
        "message_id": delivery.message_id,
        "headers": delivery.headers,
        "body": decode_body(delivery.body),
    }


def _peeked_dict(queue: str, group: str | None, message: PeekedMessage) -> dict[str, object]:
    return {
        "queue": queue,
        "group": group,
        "sequence": message.sequence,
        "state": message.state,
        "attempts": message.attempts,
        "message_id": message.message_id,
        "headers": dict(message.headers),
        "body": decode_body(message.body),
    }


def consume(
    queue: str = typer.Argument(..., help="The queue to consume."),
    group: str = typer.Option("default", "--group", "-g", help="The consumer group."),
    mode: str = typer.Option(
        "at_least_once", "--mode", "-m", help="at_least_once (ack after printing) or at_most_once."
    ),
    count: int = typer.Option(
        0, "--count", "-n", min=0, help="Stop after this many messages (0: no limit)."
    ),
    no_ack: bool = typer.Option(
        False, "--no-ack", help="Look without taking: lease nothing, count no attempt."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print each message as a JSON line."),
    idle: float | None = typer.Option(
        None, "--idle", min=0.0, help="Stop after this many seconds without a message."
    ),
    prefetch: int = typer.Option(100, "--prefetch", min=1, help="Messages leased ahead."),
    url: str = URL_OPTION,
    timeout: float = TIMEOUT_OPTION,
) -> None:
    if mode not in ("at_least_once", "at_most_once"):
        raise typer.BadParameter(
            f"{mode!r}: choose at_least_once or at_most_once", param_hint="--mode"
        )
    if no_ack:
        run(lambda: _look(url, timeout, queue, group, count, as_json))
        return
    window = min(prefetch, count) if count else prefetch

    async def main() -> None:
        async with connect(url, timeout) as client:
            consumer = client.consume(
                queue,
                group,
                mode=mode,  # type: ignore[arg-type]
                prefetch=window,
                limit=count or None,
            )
            seen = 0
            async with consumer:
                last = time.monotonic()
                while not count or seen < count:
                    wait = None if idle is None else max(0.0, idle - (time.monotonic() - last))
                    delivery = await consumer.get(wait)
                    if delivery is None:
                        break
                    last = time.monotonic()
                    if as_json:
                        print_json(_as_dict(delivery))
                    else:
                        sys.stdout.write(decode_body(delivery.body) + "\n")
                        sys.stdout.flush()
                    seen += 1
                    await delivery.ack()

    run(main)


async def _look(
    url: str, timeout: float, queue: str, group: str, count: int, as_json: bool
) -> None:
    async with connect(url, timeout) as client:
        shown: str | None = group
        try:
            messages = await client.peek(queue, group, limit=count)
        except UnknownGroupError:
            # A group that does not exist yet would start with every retained message.
            err_console.print(
                f"group {group!r} of {queue!r} does not exist yet: showing every message "
                "the queue retains",
                highlight=False,
            )
            shown = None
            messages = await client.peek(queue, limit=count)
        for message in messages:
            if as_json:
                print_json(_peeked_dict(queue, shown, message))
            else:
                sys.stdout.write(decode_body(message.body) + "\n")
        sys.stdout.flush()
