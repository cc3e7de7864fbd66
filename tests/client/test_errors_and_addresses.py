"""Rebuilding the broker's typed errors from ErrorInfo, and parsing seed addresses."""

from __future__ import annotations

import pytest

from herald.client import RemoteError, error_from_info, parse_seeds, split_address
from herald.errors import (
    BrokerError,
    HeraldError,
    NotLeaderError,
    StaleLeaseError,
    UnknownQueueError,
    UsageError,
)
from herald.wire.protocol import Ack, ErrorInfo, Publish


def test_a_known_code_gives_its_class_with_the_servers_message() -> None:
    error = error_from_info(
        ErrorInfo("UnknownQueueError", "unknown queue 'orders'"), Publish(1, "orders", b"")
    )
    assert type(error) is UnknownQueueError
    assert isinstance(error, BrokerError)
    assert str(error) == "unknown queue 'orders'"
    assert error.queue == "orders"


def test_lease_errors_name_the_delivery_from_the_request() -> None:
    error = error_from_info(ErrorInfo("StaleLeaseError", "lease 9 ..."), Ack(4, "q", "g", 7, 9))
    assert isinstance(error, StaleLeaseError)
    assert (error.queue, error.group, error.sequence, error.token) == ("q", "g", 7, 9)


def test_not_leader_carries_the_leaders_address() -> None:
    error = error_from_info(ErrorInfo("NotLeaderError", "not the leader", "10.0.0.2:7430"))
    assert isinstance(error, NotLeaderError)
    assert error.leader_address == "10.0.0.2:7430"  # type: ignore[attr-defined]


def test_an_unknown_code_is_a_remote_error() -> None:
    error = error_from_info(ErrorInfo("BrandNewError", "something new"))
    assert isinstance(error, RemoteError)
    assert isinstance(error, HeraldError)
    assert error.code == "BrandNewError"
    assert "something new" in str(error)


def test_a_name_in_errors_that_is_not_an_error_class_is_not_trusted() -> None:
    error = error_from_info(ErrorInfo("__all__", "sneaky"))
    assert isinstance(error, RemoteError)


def test_seed_forms() -> None:
    assert parse_seeds("a:1,b:2") == ["a:1", "b:2"]
    assert parse_seeds(["a:1", "b", "c:3,d:4"]) == ["a:1", "b:7430", "c:3", "d:4"]
    assert parse_seeds(" a:1 , a:1 ,") == ["a:1"]
    assert parse_seeds("[::1]:7431") == ["[::1]:7431"]
    assert parse_seeds("herald://h:9/") == ["h:9"]


def test_split_address() -> None:
    assert split_address("127.0.0.1:7431") == ("127.0.0.1", 7431)
    assert split_address("localhost") == ("localhost", 7430)
    assert split_address("[::1]:9") == ("::1", 9)
    assert split_address("::1") == ("::1", 7430)


@pytest.mark.parametrize("bad", ["", " , ", "h:notaport", "h:70000", ":80"])
def test_bad_seeds_are_usage_errors(bad: str) -> None:
    with pytest.raises(UsageError):
        parse_seeds(bad)
