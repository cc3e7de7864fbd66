"""Errors on the client side: rebuilding the broker's typed errors, and the client's own."""

from __future__ import annotations

import herald.errors as _errors_module
from herald.errors import HeraldError, NotLeaderError
from herald.wire.protocol import ErrorInfo

__all__ = ["RemoteError", "UnreachableError", "error_from_info"]


class UnreachableError(HeraldError):
    """No node of the cluster could be reached, or none of them knew a leader, in time.

    Nothing was sent: an operation that raises this surely did not happen.
    """


class RemoteError(HeraldError):
    """The server answered with an error code this client does not know.

    ``code`` is the name the server gave (a newer server's error class, most likely).
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code


def _known_errors() -> dict[str, type[HeraldError]]:
    known: dict[str, type[HeraldError]] = {}
    for name in _errors_module.__all__:
        value = getattr(_errors_module, name, None)
        if isinstance(value, type) and issubclass(value, HeraldError):
            known[name] = value
    return known


_KNOWN = _known_errors()
# The attributes a rebuilt error takes from the request it answers, when the
# request has them (the broker's error classes carry these names).
_CONTEXT = ("queue", "group", "consumer")
_LEASE_CONTEXT = ("sequence", "token")
_LEASE_REQUESTS = frozenset({"Ack", "Nack", "Extend", "Reject"})


def error_from_info(info: ErrorInfo, request: object | None = None) -> HeraldError:
    """The exception the server raised, rebuilt from its :class:`ErrorInfo`.

    The class is looked up by ``info.code`` among :mod:`herald.errors`' exported
    classes, so ``except UnknownQueueError`` works on the client as it does in
    the broker. The message is the server's. Attributes the error class would set
    (``queue``, ``group``, ...) are filled from ``request`` where it has a field
    of that name; a :class:`NotLeaderError` also gets ``leader_address``. An
    unknown code gives a :class:`RemoteError`.
    """
    cls = _KNOWN.get(info.code)
    if cls is None:
        return RemoteError(info.code, info.message)
    # The server's constructor arguments are not on the wire, only its message:
    # build the instance without calling the class's own __init__.
    error = cls.__new__(cls)
    Exception.__init__(error, info.message)
    if cls is NotLeaderError or issubclass(cls, NotLeaderError):
        error.leader = 0  # type: ignore[attr-defined]
        error.term = 0  # type: ignore[attr-defined]
        error.leader_address = info.leader_address  # type: ignore[attr-defined]
    if request is not None:
        for name in _CONTEXT:
            if hasattr(request, name):
                setattr(error, name, getattr(request, name))
        if type(request).__name__ in _LEASE_REQUESTS:
            for name in _LEASE_CONTEXT:
                setattr(error, name, getattr(request, name))
    return error
