"""Which of a client's cores a request goes to: one core per data group of the cluster.

A cluster started with ``herald serve --groups N`` keeps queue ``q`` in data
group ``group_of(q, N)`` (:mod:`herald.wire.placement`), and each group has
its own leader. A client keeps one :class:`~herald.client.core.ClientCore` per
group, each with its own connection to its group's leader, and sends a
queue's requests to its group's core. The count is learnt from the first
greeting (group 0's core's Welcome); the cores of groups 1..N-1 are made then.

Sans-IO, like the cores: the shells (:class:`herald.Client`, the simulator's
clients) carry out each core's actions and call :meth:`GroupRouter.grow` after
feeding group 0's core, so both worlds route by the same code.
"""

from __future__ import annotations

from collections.abc import Callable

from herald.wire.placement import group_of

from .core import ClientCore

__all__ = ["GroupRouter"]


class GroupRouter:
    """A client's cores, index = data group, and the rule that picks one.

    ``make_core(group)`` builds the core of ``group`` (> 0) with the client's
    options; the router never connects it (the shell does, as it wires it)."""

    __slots__ = ("_make_core", "cores")

    def __init__(self, first: ClientCore, make_core: Callable[[int], ClientCore]) -> None:
        self.cores: list[ClientCore] = [first]
        self._make_core = make_core

    @property
    def known(self) -> bool:
        """Whether a greeting has told the cluster's group count."""
        return self.cores[0].groups > 0

    def grow(self) -> list[ClientCore]:
        """The cores of the groups the last greeting named and this client lacks
        (none once they are made, or once the client is closed)."""
        cores = self.cores
        groups = cores[0].groups
        if groups <= len(cores) or cores[0].closed:
            return []
        new = [self._make_core(group) for group in range(len(cores), groups)]
        for group, core in enumerate(new, start=len(cores)):
            if core.group != group:
                raise ValueError(f"make_core({group}) built the core of group {core.group}")
        cores.extend(new)
        return new

    def index_for(self, queue: str) -> int:
        """The group (index into :attr:`cores`) of ``queue``'s requests.

        Before the count is known (or while :meth:`grow` has not run), every
        request goes to group 0, which is right for a cluster of one group; the
        shells wait for the first greeting before they route."""
        cores = self.cores
        return 0 if len(cores) == 1 else group_of(queue, len(cores))

    def core_for(self, queue: str) -> ClientCore:
        return self.cores[self.index_for(queue)]
