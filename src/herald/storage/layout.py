"""Where a node's data groups keep their logs inside its data directory.

Group 0 lives in the data directory itself (what every node was before groups,
so a directory of a single-group node opens unchanged); group ``g`` > 0 in
``group-<g>/``. Each group's directory is one :class:`~herald.storage.WalLogStore`
(its own segments, hard state, checkpoints and lock). The file ``groups``
records the count the directory was made with, with a checksum: a queue's
group follows from the count, so a directory is never opened with another
(:class:`~herald.errors.GroupCountError`), and a damaged record is refused
(:class:`~herald.errors.CorruptionError`) unless the operator repairs, which
rewrites it when the group directories agree with the count asked for.
"""

from __future__ import annotations

import zlib
from typing import Final

from herald.errors import CorruptionError, GroupCountError

from .files import write_atomically
from .fs import FileSystem, join

__all__ = ["GROUPS_FILE", "claim_group_count", "group_dir"]

GROUPS_FILE: Final = "groups"
_PREFIX: Final = "herald-groups"


def group_dir(data_dir: str, group: int) -> str:
    """The directory of group ``group``'s log store."""
    return data_dir if group == 0 else join(data_dir, f"group-{group}")


def _record(groups: int) -> bytes:
    text = f"{_PREFIX} {groups}"
    return f"{text} {zlib.crc32(text.encode()):08x}\n".encode()


def _parse(path: str, data: bytes) -> int:
    """The count recorded in ``data``; CorruptionError when it does not verify."""
    parts = data.decode("ascii", "replace").split()
    if len(parts) == 3 and parts[0] == _PREFIX and parts[1].isdigit():
        text = f"{parts[0]} {parts[1]}"
        if f"{zlib.crc32(text.encode()):08x}" == parts[2]:
            return int(parts[1])
    raise CorruptionError(path, 0, "the group count record does not verify")


def claim_group_count(fs: FileSystem, data_dir: str, groups: int, *, repair: bool = False) -> None:
    """Check the directory was made for ``groups`` data groups, or record that it is.

    Raises GroupCountError when it holds another count (recorded, or a directory
    of a single-group node: a log and no record, opened with more), CorruptionError
    when the record is damaged (``repair`` rewrites it if the group directories
    are those of ``groups`` groups), StorageIOError when it cannot be read."""
    fs.make_dirs(data_dir)
    path = join(data_dir, GROUPS_FILE)
    names = fs.list_dir(data_dir)
    if GROUPS_FILE in names:
        try:
            recorded = _parse(path, fs.read(path))
        except CorruptionError:
            if not repair or not _layout_agrees(fs, data_dir, groups):
                raise
            recorded = groups
            write_atomically(fs, data_dir, GROUPS_FILE, _record(groups))
        if recorded != groups:
            raise GroupCountError(data_dir, recorded, groups)
        return
    if groups != 1 and any(name.startswith(("wal-", "snap-", "hardstate")) for name in names):
        raise GroupCountError(data_dir, 1, groups)
    write_atomically(fs, data_dir, GROUPS_FILE, _record(groups))


def _layout_agrees(fs: FileSystem, data_dir: str, groups: int) -> bool:
    """Whether the group directories are those of a node of ``groups`` groups.

    A node makes every group's directory at its first start, so a node of ``n``
    groups has group-1 .. group-(n-1) and no group-n: a repair that asked for
    more would move queues to empty groups, one that asked for fewer would hide
    the groups beyond."""
    present = all(fs.exists(group_dir(data_dir, g)) for g in range(1, groups))
    return present and not fs.exists(group_dir(data_dir, groups))
