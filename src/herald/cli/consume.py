"""``herald consume``: print messages of a queue as a member of a consumer group."""

from __future__ import annotations

import sys
import time

import typer

from herald.client import Delivery

from ._client import TIMEOUT_OPTION, URL_OPTION, connect, decode_body, print_json, run

HELP = """Consume messages of QUEUE as a member of a consumer group and print them.

Each message is printed as one line (its body as UTF-8), or with --json as a
JSON object with its sequence, attempt, redelivery reason, headers and body.
Every group receives every message; the consumers of one group share them.

--mode at_least_once (default): each message is acked after it is printed; if
this command dies first, the message comes back. --mode at_most_once: the
broker settles each message as it hands it out; a crash loses it. --no-ack
prints without acking: the messages go back to the group when the command
leaves it (useful to peek).

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
        False, "--no-ack", help="Do not ack: the messages return to the group on exit."
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
    window = min(prefetch, count) if count else prefetch

    async def main() -> None:
        async with connect(url, timeout) as client:
            consumer = client.consume(queue, group, mode=mode, prefetch=window)  # type: ignore[arg-type]
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
                    if not no_ack:
                        await delivery.ack()

    run(main)
