"""``herald publish``: publish messages from the command line or standard input."""

from __future__ import annotations

import asyncio
import sys

import typer

from herald.client import Receipt

from ._client import TIMEOUT_OPTION, URL_OPTION, connect, err_console, print_json, run

HELP = """Publish messages to QUEUE and print each receipt.

Each MESSAGE argument is one message (its UTF-8 bytes). With --stdin, or with
no MESSAGE at all, each line of standard input is one message (without its
newline). Messages are pipelined and confirmed: a receipt is printed once the
message is committed on a majority of the cluster.

Exit status: 0 all published; 1 the broker refused one (unknown queue, too
large, full); 2 bad usage; 4 the cluster could not be reached or did not
answer in time (then whether the message was published is unknown).
"""


# Module-level: list-typed defaults must not be built in the signature (ruff B008).
_MESSAGES = typer.Argument(
    None, help="Message bodies; none: read standard input, one message per line."
)
_HEADERS = typer.Option(
    None, "--header", "-H", help="A header NAME=VALUE for every message; repeatable."
)


def _parse_headers(headers: list[str] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in headers or []:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise typer.BadParameter(
                f"a header must be NAME=VALUE, not {item!r}", param_hint="--header"
            )
        if name in out:
            raise typer.BadParameter(f"header {name!r} given twice", param_hint="--header")
        out[name] = value
    return out


def _receipt_line(receipt: Receipt) -> str:
    flag = " duplicate" if receipt.duplicate else ""
    return f"{receipt.queue} {receipt.sequence} {receipt.durability.value}{flag}"


def publish(
    queue: str = typer.Argument(..., help="The queue to publish to."),
    messages: list[str] | None = _MESSAGES,
    key: str | None = typer.Option(
        None,
        "--key",
        "-k",
        help="Idempotency key (message id): a second publish with the same key is not "
        "stored again. Only with a single message.",
    ),
    header: list[str] | None = _HEADERS,
    stdin: bool = typer.Option(
        False, "--stdin", help="Read messages from standard input, one per line."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print each receipt as a JSON line."),
    url: str = URL_OPTION,
    timeout: float = TIMEOUT_OPTION,
) -> None:
    headers = _parse_headers(header)
    bodies = [m.encode() for m in messages or []]
    if stdin or not bodies:
        if stdin and bodies:
            raise typer.BadParameter("give MESSAGE arguments or --stdin, not both")
        bodies = [line.rstrip(b"\r\n") for line in sys.stdin.buffer]
        bodies = [b for b in bodies if b]
    if key is not None and len(bodies) != 1:
        raise typer.BadParameter("--key names one message: publish exactly one", param_hint="--key")
    if not bodies:
        return

    async def main() -> None:
        async with connect(url, timeout) as client:
            futures = [client.publish(queue, b, headers=headers, key=key) for b in bodies]
            results = await asyncio.gather(*futures, return_exceptions=True)
        first: BaseException | None = None
        for result in results:
            if isinstance(result, BaseException):
                first = first or result
                continue
            if as_json:
                print_json(
                    {
                        "queue": result.queue,
                        "sequence": result.sequence,
                        "duplicate": result.duplicate,
                        "durability": result.durability.value,
                    }
                )
            else:
                sys.stdout.write(_receipt_line(result) + "\n")
        if first is not None:
            failed = sum(isinstance(r, BaseException) for r in results)
            if failed > 1:
                err_console.print(f"{failed} of {len(results)} messages failed", highlight=False)
            raise first

    run(main)
