"""What the client commands share: the ``--url`` option, running a coroutine, exit codes.

Exit codes of every command that talks to a cluster: 0 done; 1 the broker
refused (an unknown queue, a stale lease, ...); 2 bad usage; 4 the cluster
could not be reached, or did not answer in time (the outcome is then unknown).
The environment is read here, in the CLI, never by the client library:
``HERALD_URL`` is the default of ``--url``.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from typing import Any, Final, TypeVar

import typer
from rich.console import Console

from herald.client import DEFAULT_SEEDS, Client, UnreachableError
from herald.errors import ConnectionClosedError, HeraldError, RequestTimeoutError, UsageError

__all__ = [
    "EXIT_BROKER",
    "EXIT_OK",
    "EXIT_UNREACHABLE",
    "EXIT_USAGE",
    "TIMEOUT_OPTION",
    "URL_OPTION",
    "connect",
    "err_console",
    "print_json",
    "run",
]

EXIT_OK: Final = 0
EXIT_BROKER: Final = 1
EXIT_USAGE: Final = 2
EXIT_UNREACHABLE: Final = 4

T = TypeVar("T")

URL_HELP = (
    "Seed addresses of the cluster, host:port[,host:port...] "
    f"(default {DEFAULT_SEEDS}, or $HERALD_URL)."
)
URL_OPTION: Any = typer.Option(DEFAULT_SEEDS, "--url", "-u", envvar="HERALD_URL", help=URL_HELP)
TIMEOUT_OPTION: Any = typer.Option(
    10.0, "--timeout", min=0.001, help="Seconds to wait for the cluster and for each answer."
)

err_console = Console(stderr=True)


def connect(url: str, timeout: float, **options: Any) -> Client:
    """A client (not yet started) for ``url``."""
    return Client(url, timeout=timeout, connect_timeout=timeout, **options)


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency where it builds
        return None
    return uvloop.new_event_loop


def run(main: Callable[[], Awaitable[T]], *, uvloop: bool = False) -> T:
    """Run ``main`` on a fresh event loop (uvloop's when asked and installed); turn
    Herald's errors into exit codes."""

    async def wrapper() -> T:
        return await main()

    try:
        with asyncio.Runner(loop_factory=_loop_factory() if uvloop else None) as runner:
            return runner.run(wrapper())
    except UsageError as error:
        err_console.print(f"[red]error:[/red] {error}", highlight=False)
        raise typer.Exit(EXIT_USAGE) from None
    except (UnreachableError, RequestTimeoutError, ConnectionClosedError) as error:
        err_console.print(f"[red]error:[/red] {type(error).__name__}: {error}", highlight=False)
        raise typer.Exit(EXIT_UNREACHABLE) from None
    except HeraldError as error:
        err_console.print(f"[red]error:[/red] {type(error).__name__}: {error}", highlight=False)
        raise typer.Exit(EXIT_BROKER) from None
    except KeyboardInterrupt:
        raise typer.Exit(130) from None


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, separators=(",", ":"), default=_default) + "\n")
    sys.stdout.flush()


def _default(value: Any) -> Any:
    if isinstance(value, bytes):
        return decode_body(value)
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def decode_body(body: bytes) -> str:
    """A body as text: UTF-8 when it is, else Python's escaped repr of the bytes."""
    try:
        return body.decode()
    except UnicodeDecodeError:
        return repr(body)
