"""Seed addresses: ``host:port`` strings, parsed and normalised."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from herald.errors import UsageError

__all__ = ["DEFAULT_PORT", "DEFAULT_SEEDS", "parse_seeds", "split_address"]

DEFAULT_PORT: Final = 7430
DEFAULT_SEEDS: Final = "127.0.0.1:7430"


def split_address(address: str) -> tuple[str, int]:
    """``host:port`` (``[v6]:port``; the port defaults to 7430) as a pair.

    Raises :class:`~herald.errors.UsageError` for an empty host or a bad port.
    """
    text = address.strip()
    if text.startswith("herald://"):
        text = text[len("herald://") :]
    text = text.rstrip("/")
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ""
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep or ":" in host:  # no port, or a bare IPv6 address
            host, port_text = text, ""
    if not host:
        raise UsageError(f"bad address {address!r}: no host")
    if not port_text:
        return host, DEFAULT_PORT
    try:
        port = int(port_text)
    except ValueError:
        raise UsageError(f"bad address {address!r}: port {port_text!r} is not a number") from None
    if not 0 < port < 65536:
        raise UsageError(f"bad address {address!r}: port {port} is out of range")
    return host, port


def parse_seeds(seeds: str | Iterable[str]) -> list[str]:
    """Seed addresses from ``"h:p"``, ``"h1:p1,h2:p2"`` or a list of either, normalised
    to ``host:port`` and de-duplicated in order. Raises UsageError if none is given."""
    parts = seeds.split(",") if isinstance(seeds, str) else [p for s in seeds for p in s.split(",")]
    out: list[str] = []
    for part in parts:
        if not part.strip():
            continue
        host, port = split_address(part)
        normal = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        if normal not in out:
            out.append(normal)
    if not out:
        raise UsageError("no seed address given")
    return out
