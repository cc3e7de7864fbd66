"""The settings of one node server: :class:`NodeConfig` lives with the node core
(:mod:`herald.node.config`); the runtime re-exports it with the address helpers."""

from herald.node.config import (
    DEFAULT_ADDRESS,
    DEFAULT_CLUSTER,
    DEFAULT_DATA_DIR,
    DEFAULT_PORT,
    MIB,
    NodeConfig,
    format_peers,
    parse_address,
    parse_peers,
)

__all__ = [
    "DEFAULT_ADDRESS",
    "DEFAULT_CLUSTER",
    "DEFAULT_DATA_DIR",
    "DEFAULT_PORT",
    "MIB",
    "NodeConfig",
    "format_peers",
    "parse_address",
    "parse_peers",
]
