"""Entry point of the ``herald`` command: one typer app, one module per command group."""

from __future__ import annotations

import typer

from herald import __version__

from . import (
    bench,
    check,
    cluster,
    consume,
    demo,
    dlq,
    lab,
    publish,
    queues,
    serve,
    sim,
    status,
    torture,
)

app = typer.Typer(
    name="herald",
    help="Herald: a replicated message queue for Python that is honest about delivery.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command(name="sim", help=sim.HELP)(sim.sim)
app.command(name="demo", help=demo.HELP)(demo.demo)
app.command(name="lab", help=lab.HELP)(lab.lab)
app.command(name="serve", help=serve.HELP)(serve.serve)
app.command(name="cluster", help=cluster.HELP)(cluster.cluster)
app.command(name="check", help=check.HELP)(check.check)
app.command(name="torture", help=torture.HELP)(torture.torture)
app.command(name="publish", help=publish.HELP)(publish.publish)
app.command(name="consume", help=consume.HELP)(consume.consume)
app.add_typer(queues.app, name="queues", help=queues.HELP)
app.add_typer(dlq.app, name="dlq", help=dlq.HELP)
app.command(name="status", help=status.HELP)(status.status)
app.command(name="bench", help=bench.HELP)(bench.bench)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"herald {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Herald: a replicated message queue for Python that is honest about delivery."""


def main() -> None:
    app()
