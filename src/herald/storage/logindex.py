"""Where each entry of the log is on disk: the index the store keeps instead of the entries.

The log itself stays in its segments. In memory there is, per entry, its term
(8 bytes), and per ENTRIES record its place: the segment, the record's offset and
end, the index of its first entry, and the range of its entries that still
count (a later record may have replaced the rest, or a snapshot covered it).
Recovery builds this index from the records without decoding a single entry,
and :class:`~herald.storage.logstore.WalLogStore` keeps it as it writes.

Records are kept in index order with disjoint ranges, so finding an entry is a
bisection. Everything is held in ``array`` columns: a million records cost
about 48 MB, a million entries in one record 8 MB.
"""

from __future__ import annotations

from array import array
from bisect import bisect_right
from collections.abc import Iterable
from typing import NamedTuple

__all__ = ["LogIndex", "Place"]


class Place(NamedTuple):
    """One record: where it is, the index of its first entry, and the part that counts."""

    segment: int  # the segment's sequence number
    offset: int  # of the record in the segment (its header)
    end: int  # just past the record's body (padding excluded)
    first: int  # the index of the record's first entry
    lo: int  # the entries lo..hi of it are the log's
    hi: int


class LogIndex:
    """The terms of entries ``base + 1 .. last`` and the records that hold them."""

    __slots__ = (
        "_end",
        "_first",
        "_hi",
        "_lo",
        "_offset",
        "_segment",
        "_terms",
        "base",
        "base_term",
    )

    def __init__(self, base: int = 0, base_term: int = 0) -> None:
        self.base = base  # the entry before the first one: a snapshot's, or 0
        self.base_term = base_term
        self._terms = array("q")  # _terms[i]: the term of entry base + 1 + i
        self._segment = array("q")
        self._offset = array("q")
        self._end = array("q")
        self._first = array("q")
        self._lo = array("q")
        self._hi = array("q")

    # -- reads ----------------------------------------------------------------------

    @property
    def last(self) -> int:
        return self.base + len(self._terms)

    def __len__(self) -> int:
        """The number of entries."""
        return len(self._terms)

    @property
    def records(self) -> int:
        return len(self._lo)

    def term(self, index: int) -> int:
        """The term of entry ``index`` (``base`` included). Raises IndexError outside."""
        if index == self.base:
            return self.base_term
        if not self.base < index <= self.last:
            raise IndexError(f"index {index} is outside {self.base + 1}..{self.last}")
        return self._terms[index - self.base - 1]

    def last_term(self) -> int:
        return self._terms[-1] if self._terms else self.base_term

    def place(self, index: int) -> Place:
        """The record holding entry ``index``. Raises IndexError if none does."""
        if not self.base < index <= self.last:
            raise IndexError(f"index {index} is outside {self.base + 1}..{self.last}")
        slot = bisect_right(self._lo, index) - 1
        return Place(
            self._segment[slot],
            self._offset[slot],
            self._end[slot],
            self._first[slot],
            self._lo[slot],
            self._hi[slot],
        )

    # -- changes, in the order the records were written ----------------------------------

    def add(
        self, segment: int, offset: int, end: int, first: int, terms: Iterable[int], count: int
    ) -> None:
        """An ENTRIES record of ``count`` entries from ``first``, with their terms.

        It replaces the entries from ``first`` on. The part at or below ``base``
        is not the log's (a snapshot covers it). Raises ValueError for a record
        that would leave a gap.
        """
        if first > self.last + 1:
            raise ValueError(f"entries jump from index {self.last} to {first}")
        last = first + count - 1
        if first <= self.base:
            self._clear()
            if last <= self.base:
                return
            lo = self.base + 1
            self._terms.extend(terms)
            del self._terms[: lo - first]
        else:
            self.truncate(first - 1)
            lo = first
            self._terms.extend(terms)
        if len(self._terms) != last - self.base:
            raise ValueError("a record's terms disagree with its count")
        self._push(segment, offset, end, first, lo, last)

    def append_one(self, segment: int, offset: int, end: int, index: int, term: int) -> None:
        """A record of the single entry ``last + 1``: the common case, made cheap."""
        if index != self.base + len(self._terms) + 1:
            raise ValueError(f"entry {index} does not follow {self.last}")
        self._terms.append(term)
        self._push(segment, offset, end, index, index, index)

    def truncate(self, after: int) -> None:
        """Forget the entries after ``after`` (never the base)."""
        if after >= self.last:
            return
        after = max(after, self.base)
        del self._terms[after - self.base :]
        lo = self._lo
        while lo and lo[-1] > after:
            self._pop()
        if self._hi and self._hi[-1] > after:
            self._hi[-1] = after

    def reset(self, base: int, base_term: int) -> None:
        """The log now ends at a snapshot: nothing before or after it is left."""
        self._clear()
        self.base = base
        self.base_term = base_term

    def compact(self, through: int) -> None:
        """Forget the entries up to ``through``: a snapshot covers them."""
        if through <= self.base:
            return
        if through > self.last:
            raise ValueError(f"cannot compact through {through}: the log ends at {self.last}")
        if through == self.last:
            self.reset(through, self.term(through))
            return
        base_term = self.term(through)
        del self._terms[: through - self.base]
        drop = bisect_right(self._hi, through)
        for column in self._columns():
            del column[:drop]
        if self._lo and self._lo[0] <= through:
            self._lo[0] = through + 1
        self.base = through
        self.base_term = base_term

    # -- internals ---------------------------------------------------------------------

    def _columns(self) -> tuple[array[int], ...]:
        return (self._segment, self._offset, self._end, self._first, self._lo, self._hi)

    def _push(self, segment: int, offset: int, end: int, first: int, lo: int, hi: int) -> None:
        """One more record, in the order of :meth:`_columns`."""
        self._segment.append(segment)
        self._offset.append(offset)
        self._end.append(end)
        self._first.append(first)
        self._lo.append(lo)
        self._hi.append(hi)

    def _pop(self) -> None:
        for column in self._columns():
            column.pop()

    def _clear(self) -> None:
        del self._terms[:]
        for column in self._columns():
            del column[:]
