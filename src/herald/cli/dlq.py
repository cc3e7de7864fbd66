"""``herald dlq``: list, inspect and redrive a queue's dead letters."""

from __future__ import annotations

import sys
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from herald.client import DeadLetter
from herald.errors import UnknownDeadLetterError

from ._client import TIMEOUT_OPTION, URL_OPTION, connect, decode_body, print_json, run

HELP = """List, inspect and redrive dead letters.

A message becomes a dead letter of a consumer group when its last allowed
delivery ends without an ack (max_deliveries) or when a consumer rejects it.
Redriving moves it back to the group for delivery, with a fresh budget of
deliveries.

Exit status: 0 done; 1 the broker refused (unknown queue or group, no such
dead letter); 2 bad usage; 4 the cluster could not be reached or did not
answer in time.
"""

app = typer.Typer(help=HELP, no_args_is_help=True, add_completion=False)


def _as_dict(letter: DeadLetter) -> dict[str, Any]:
    return {
        "sequence": letter.sequence,
        "attempts": letter.attempts,
        "reason": letter.reason,
        "time": letter.time,
        "message_id": letter.message_id,
        "headers": dict(letter.headers),
        "body": decode_body(letter.body),
        "history": letter.history,
    }


def _preview(body: bytes, width: int = 40) -> str:
    text = decode_body(body)
    return text if len(text) <= width else text[: width - 1] + "…"


@app.command("ls")
def ls(
    queue: str = typer.Argument(..., help="The queue."),
    group: str | None = typer.Option(None, "--group", "-g", help="Only this group's."),
    limit: int = typer.Option(100, "--limit", min=0, help="At most this many (0: all)."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per dead letter."),
    url: str = URL_OPTION,
    timeout: float = TIMEOUT_OPTION,
) -> None:
    """List dead letters, oldest first."""

    async def main() -> list[DeadLetter]:
        async with connect(url, timeout) as client:
            return await client.dead_letters(queue, group, limit=limit)

    letters = run(main)
    if as_json:
        for letter in letters:
            print_json(_as_dict(letter))
        return
    if not letters:
        sys.stdout.write("no dead letters\n")
        return
    table = Table(title=f"Dead letters of {queue}" + (f" / {group}" if group else ""))
    for column in ("sequence", "attempts", "reason", "message id", "body"):
        table.add_column(column, justify="right" if column in ("sequence", "attempts") else "left")
    for letter in letters:
        table.add_row(
            str(letter.sequence),
            str(letter.attempts),
            letter.reason,
            letter.message_id or "-",
            _preview(letter.body),
        )
    Console().print(table)


@app.command("show")
def show(
    queue: str = typer.Argument(..., help="The queue."),
    sequence: int = typer.Argument(..., min=1, help="The dead letter's message sequence."),
    group: str | None = typer.Option(None, "--group", "-g", help="The group it died in."),
    as_json: bool = typer.Option(False, "--json", help="Print it as one JSON object."),
    url: str = URL_OPTION,
    timeout: float = TIMEOUT_OPTION,
) -> None:
    """Show one dead letter with its whole delivery history."""

    async def main() -> DeadLetter:
        async with connect(url, timeout) as client:
            for letter in await client.dead_letters(queue, group, limit=0):
                if letter.sequence == sequence:
                    return letter
        raise UnknownDeadLetterError(queue, group or "*", sequence)

    letter = run(main)
    if as_json:
        print_json(_as_dict(letter))
        return
    console = Console()
    summary = Table(title=f"Dead letter {sequence} of {queue}", show_header=False)
    summary.add_column("field")
    summary.add_column("value")
    summary.add_row("reason", letter.reason)
    summary.add_row("attempts", str(letter.attempts))
    summary.add_row("died at (µs)", str(letter.time))
    summary.add_row("message id", letter.message_id or "-")
    for name, value in letter.headers:
        summary.add_row(f"header {name}", value)
    summary.add_row("body", decode_body(letter.body))
    console.print(summary)
    if letter.history:
        history = Table(title="Deliveries")
        for column in ("attempt", "outcome", "consumer", "lease (s)", "token"):
            history.add_column(column, justify="right" if column != "consumer" else "left")
        for record in letter.history:
            delivered, deadline = record.get("delivered_at"), record.get("deadline")
            lease = (
                f"{(deadline - delivered) / 1_000_000:g}"
                if isinstance(delivered, int) and isinstance(deadline, int)
                else "?"
            )
            history.add_row(
                str(record.get("attempt", "?")),
                str(record.get("outcome", "?")),
                str(record.get("consumer", "?")),
                lease,
                str(record.get("token", "?")),
            )
        console.print(history)


# Module-level: a list-typed default must not be built in the signature (ruff B008).
_SEQUENCES = typer.Argument(None, help="The dead letters to move back (none: all of the group's).")


@app.command("redrive")
def redrive(
    queue: str = typer.Argument(..., help="The queue."),
    sequences: list[int] | None = _SEQUENCES,
    group: str = typer.Option(..., "--group", "-g", help="The group whose dead letters move."),
    url: str = URL_OPTION,
    timeout: float = TIMEOUT_OPTION,
) -> None:
    """Move dead letters back to their group for delivery."""

    async def main() -> int:
        async with connect(url, timeout) as client:
            return await client.redrive(queue, group, sequences or ())

    moved = run(main)
    sys.stdout.write(f"redrove {moved} dead letters of {queue} / {group}\n")
