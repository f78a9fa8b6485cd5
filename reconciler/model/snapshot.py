"""Snapshot: the files of one revision, as the loader sees them. Pure value + protocol.

Sources (:mod:`reconciler.sources`) build snapshots from a Git commit or a plain directory;
the loader reads file contents only through :meth:`Snapshot.read`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from reconciler.errors import SourceError


class EntryType(StrEnum):
    FILE = "file"
    SYMLINK = "symlink"


@dataclass(frozen=True, slots=True)
class Entry:
    """One file of a snapshot. ``blob_id`` is Git's blob SHA of the contents (or link text);
    for a working-tree file too large to read, ``oversize:<bytes>``."""

    path: str
    blob_id: str
    type: EntryType = EntryType.FILE
    link_target: str | None = None


class FileTooLarge(SourceError):
    """:meth:`Snapshot.read` refused a file over the loader's size limit without reading it.

    A working tree may hold a file of any size; reading a 1 GiB file only to refuse it
    costs a gigabyte. The loader turns this into a ``file-too-large`` diagnostic.
    """

    def __init__(self, path: str, size: int, limit: int) -> None:
        super().__init__(f"{path} is {size} bytes, over the limit of {limit} bytes")
        self.path, self.size, self.limit = path, size, limit


class Snapshot(Protocol):
    """The files of one revision. ``revision`` is a commit SHA, or None for a working tree.

    :meth:`read` may raise :class:`FileTooLarge` instead of reading a file over the limit.
    """

    @property
    def revision(self) -> str | None: ...

    @property
    def entries(self) -> Mapping[str, Entry]: ...

    def read(self, path: str) -> bytes: ...


def git_blob_id(data: bytes) -> str:
    """The SHA Git gives a blob with these contents (so working trees share the cache)."""
    h = hashlib.sha1(b"blob %d\0" % len(data))
    h.update(data)
    return h.hexdigest()


@dataclass(frozen=True)
class MemorySnapshot:
    """A snapshot held in memory; used by tests and by the plan file."""

    files: Mapping[str, bytes]
    revision: str | None = None
    links: Mapping[str, str] | None = None

    @property
    def entries(self) -> Mapping[str, Entry]:
        out = {p: Entry(p, git_blob_id(d)) for p, d in self.files.items()}
        for p, target in (self.links or {}).items():
            out[p] = Entry(p, git_blob_id(target.encode()), EntryType.SYMLINK, target)
        return out

    def read(self, path: str) -> bytes:
        return self.files[path]
